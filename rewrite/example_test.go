package rewrite_test

import (
	"fmt"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// Rewrite needs no database: it turns a statement into one that reads only
// what the subject may see, or refuses it.
func ExampleRewriter_Rewrite() {
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  notes:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`)})
	if err != nil {
		panic(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		panic(err)
	}
	rw := rewrite.New(set, []string{"public"})
	req := rewrite.Request{
		Fragments: p.Fragments(filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme"}}),
		Mode:      rewrite.Strict, // SQL an agent wrote
		NArgs:     1,              // the statement binds $1 itself
	}
	res, err := rw.Rewrite(`SELECT id, body FROM notes WHERE body LIKE 'meeting%' ORDER BY id LIMIT $1`, req)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.SQL)
	fmt.Println(res.Args) // appended after the caller's $1

	// OFFSET 0 fences the table: the statement's own conditions run only on
	// permitted rows. One that could fail on a row's data is refused in
	// strict mode all the same.
	_, err = rw.Rewrite(`SELECT id FROM notes WHERE length(body) / 0 > 1`, req)
	fmt.Println(rewrite.CodeOf(err))
	// Output:
	// SELECT id, body FROM (SELECT * FROM notes notes WHERE notes.tenant_id = $2::pg_catalog.text AND notes.owner_id = $3::pg_catalog.text OFFSET 0) notes WHERE body LIKE 'meeting%' ORDER BY id LIMIT $1
	// [acme alice]
	// operator_not_allowed
}
