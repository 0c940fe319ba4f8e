package policy_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ragfence/ragfence/policy"
)

// Files is what Load reads and what serve's watcher stamps: one list, so
// the two never disagree about a file.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "b.yml", "a_test.yaml", "b_test.yml", "notes.txt", "sub/c.yaml", "sub/c_test.yaml"} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("version: 1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := policy.Files(dir, filepath.Join(dir, "a_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i], _ = filepath.Rel(dir, got[i])
	}
	// A test file named on its own is read: it was asked for.
	want := []string{"a.yaml", "b.yml", "sub/c.yaml", "a_test.yaml"}
	if !slices.Equal(got, want) {
		t.Fatalf("Files = %v, want %v", got, want)
	}
	if _, err := policy.Files(filepath.Join(dir, "sub", "nothing")); err == nil {
		t.Fatal("a missing path is no error")
	}
}
