package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ragfence/ragfence/retriever"
)

const watchedPolicy = `version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWatchPolicy: a changed file is reloaded, an invalid one keeps the old
// policy and says why, and SIGHUP reloads on demand.
func TestWatchPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(watchedPolicy)
	store, err := retriever.NewPolicyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen; log:\n%s", what, logs.String())
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var reloads atomic.Int32
	watchPolicy(ctx, store, 20*time.Millisecond, logger, func() { reloads.Add(1) })
	v1 := store.Load().Version()
	write(strings.Replace(watchedPolicy, "owner_id = subject.id", "owner_id = subject.id OR 'admin' = ANY (subject.roles)", 1))
	waitFor("reload on change", func() bool { return store.Load().Version() != v1 })
	waitFor("the reload reported to its listener", func() bool { return reloads.Load() > 0 })

	v2 := store.Load().Version()
	write(strings.Replace(watchedPolicy, "owner_id = subject.id", "pg_sleep(1) IS NULL", 1))
	waitFor("a logged failure", func() bool { return strings.Contains(logs.String(), "policy reload failed") })
	if store.Load().Version() != v2 {
		t.Fatal("an invalid policy replaced the valid one")
	}
	cancel()

	// SIGHUP, with polling off.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	watchPolicy(ctx, store, 0, logger, func() {})
	write(watchedPolicy)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("reload on SIGHUP", func() bool { return store.Load().Version() == v1 })
}
