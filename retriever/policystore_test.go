package retriever_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/retriever"
)

const storePolicy = `version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`

func TestPolicyStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(storePolicy)
	store, err := retriever.NewPolicyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	v1 := store.Load().Version()

	if changed, err := store.Reload(); err != nil || changed {
		t.Fatalf("reload of the same file: changed=%v err=%v", changed, err)
	}

	write(strings.Replace(storePolicy, "owner_id = subject.id", "ownr_id = subject.id AND pg_sleep(1)", 1))
	changed, err := store.Reload()
	if err == nil || changed || store.Load().Version() != v1 {
		t.Fatalf("an invalid policy must keep the old one: changed=%v err=%v", changed, err)
	}

	write(strings.Replace(storePolicy, "owner_id = subject.id", "owner_id = subject.id OR 'admin' = ANY (subject.roles)", 1))
	changed, err = store.Reload()
	if err != nil || !changed || store.Load().Version() == v1 {
		t.Fatalf("a valid change must swap: changed=%v err=%v", changed, err)
	}
}

func TestNewPolicyStoreRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nresources: {docs: {}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := retriever.NewPolicyStore(path); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Fatalf("got %v", err)
	}
}
