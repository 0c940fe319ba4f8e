package retriever_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/retriever"
)

const watchedDoc = `version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`

// Watch notices an edit of a policy file, ignores its test files, keeps the
// policy when a reload fails, and reloads on demand.
func TestPolicyStoreWatch(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("docs.yaml", watchedDoc)
	store, err := retriever.NewPolicyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan error, 16)
	now := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store.Watch(ctx, 10*time.Millisecond, now, func(_ bool, err error) { reports <- err })
	next := func(what string) error {
		t.Helper()
		select {
		case err := <-reports:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("no reload after %s", what)
			return nil
		}
	}
	v1 := store.Load().Version()
	write("docs_test.yaml", "not a policy: [")
	write("docs.yaml", strings.Replace(watchedDoc, "owner_id = subject.id", "owner_id = subject.id OR false", 1))
	if err := next("an edit"); err != nil || store.Load().Version() == v1 {
		t.Fatalf("edit: err %v, version unchanged %v", err, store.Load().Version() == v1)
	}
	v2 := store.Load().Version()
	write("docs.yaml", "version: 1\nresources: [")
	if err := next("a broken edit"); err == nil || store.Load().Version() != v2 {
		t.Fatalf("broken edit: err %v, version kept %v", err, store.Load().Version() == v2)
	}
	write("docs.yaml", watchedDoc)
	_ = next("the fix") // polled
	now <- struct{}{}
	if err := next("a reload on demand"); err != nil || store.Load().Version() != v1 {
		t.Fatalf("on demand: err %v", err)
	}
}
