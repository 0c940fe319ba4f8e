package retriever

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// PolicyStore holds the compiled policy requests use, and swaps it
// atomically on reload: a request sees the old or the new policy, never a
// mix, and an invalid new policy leaves the old one in place.
type PolicyStore struct {
	paths []string
	check func(*policy.Set) error
	cur   atomic.Pointer[filter.Policy]
	mu    sync.Mutex // serialises reloads
}

// NewPolicyStore loads and compiles the policy at paths.
func NewPolicyStore(paths ...string) (*PolicyStore, error) {
	return NewCheckedPolicyStore(nil, paths...)
}

// NewCheckedPolicyStore is NewPolicyStore with a server's own check of
// every policy it loads (a bound the files cannot know, such as the
// longest approval): a policy check refuses is never used, at start or on
// reload.
func NewCheckedPolicyStore(check func(*policy.Set) error, paths ...string) (*PolicyStore, error) {
	s := &PolicyStore{paths: paths, check: check}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// StaticPolicy is a store holding p, for tests and embedding programs.
func StaticPolicy(p *filter.Policy) *PolicyStore {
	s := &PolicyStore{}
	s.cur.Store(p)
	return s
}

// Load returns the current policy.
func (s *PolicyStore) Load() *filter.Policy { return s.cur.Load() }

// Reload reads the files again. On success the new policy replaces the old
// one and changed reports whether its version differs; on error the old
// policy stays.
func (s *PolicyStore) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.paths) == 0 {
		return false, nil
	}
	set, err := policy.Load(s.paths...)
	if err == nil && s.check != nil {
		err = s.check(set)
	}
	if err != nil {
		return false, fmt.Errorf("policy reload: %w", err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		return false, fmt.Errorf("policy reload: %w", err)
	}
	old := s.cur.Swap(p)
	return old == nil || old.Version() != p.Version(), nil
}

// Paths are the files and folders the store loads.
func (s *PolicyStore) Paths() []string { return s.paths }

// Watch reloads the policy when its files change (checked every every; 0:
// never) and whenever a value arrives on now (a SIGHUP, say), until ctx
// ends. A reload that fails keeps the current policy. report, if not nil,
// hears each reload's outcome. Watch takes the files' first stamp before
// it returns, so no change made after it returns is missed.
func (s *PolicyStore) Watch(ctx context.Context, every time.Duration, now <-chan struct{}, report func(changed bool, err error)) {
	last := stamp(s.paths)
	go func() {
		var tick <-chan time.Time
		if every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-now:
			case <-tick:
				st := stamp(s.paths)
				if st == last {
					continue
				}
				last = st
			}
			changed, err := s.Reload()
			if report != nil {
				report(changed, err)
			}
		}
	}()
}

// stamp summarises the policy files' names, sizes and times (the files
// policy.Load reads, so editing a policy test file reloads nothing);
// polling it notices an edit without a file-watching dependency.
func stamp(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	files, err := policy.Files(paths...)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, f := range files {
		if info, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, info.Size(), info.ModTime().UnixNano())
		}
	}
	return b.String()
}
