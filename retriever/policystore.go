package retriever

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// PolicyStore holds the compiled policy requests use, and swaps it
// atomically on reload: a request sees the old or the new policy, never a
// mix, and an invalid new policy leaves the old one in place.
type PolicyStore struct {
	paths []string
	cur   atomic.Pointer[filter.Policy]
	mu    sync.Mutex // serialises reloads
}

// NewPolicyStore loads and compiles the policy at paths.
func NewPolicyStore(paths ...string) (*PolicyStore, error) {
	s := &PolicyStore{paths: paths}
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
