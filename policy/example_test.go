package policy_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ragfence/ragfence/policy"
)

// Parse validates policy documents given as bytes, each condition with
// PostgreSQL's own parser.
func ExampleParse() {
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: public
        when: visibility = 'public'
`)})
	if err != nil {
		panic(err)
	}
	docs := set.Resources["docs"]
	for _, r := range docs.Allow {
		fmt.Println(r.Name, "uses", r.When.Columns)
	}
	// Output:
	// owner uses [owner_id]
	// public uses [visibility]
}

// Every error in a set of documents comes back at once, each at its file,
// line and column, with a stable code.
func ExampleParse_errors() {
	_, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.idd
      - name: broken
        when: visibility = = 'public'
`)})
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Println(e.Code, e.Line)
		}
	}
	// Output:
	// unknown_name 8
	// syntax 10
}

// Load reads policy files and folders (every *.yaml but *_test.yaml).
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "policy")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	doc := []byte("version: 1\nresources:\n  docs:\n    tenant: tenant_id\n    allow:\n      - name: all\n        when: \"true\"\n")
	if err := os.WriteFile(filepath.Join(dir, "docs.yaml"), doc, 0o600); err != nil {
		panic(err)
	}
	set, err := policy.Load(dir)
	if err != nil {
		panic(err)
	}
	fmt.Println(set.Names)
	// Output:
	// [docs]
}
