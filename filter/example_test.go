package filter_test

import (
	"errors"
	"fmt"

	sq "github.com/Masterminds/squirrel"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// A fragment is a squirrel.Sqlizer: AND it into any query on the table.
func ExamplePolicy_Fragment() {
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  docs:
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
	frag, err := p.Fragment("docs", filter.Request{
		Subject: &policy.Subject{ID: "alice", Tenant: "acme"},
		Alias:   "d",
	})
	if err != nil {
		panic(err)
	}
	sql, args, err := sq.Select("d.id", "d.title").From("docs d").Where(frag).
		OrderBy("d.id").PlaceholderFormat(sq.Dollar).ToSql()
	if err != nil {
		panic(err)
	}
	fmt.Println(sql)
	fmt.Println(args)

	_, err = p.Fragment("docs", filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme"}, Agent: "summarizer"})
	fmt.Println(errors.Is(err, filter.ErrAgentNotGranted))
	// Output:
	// SELECT d.id, d.title FROM docs d WHERE (("d"."tenant_id" = $1::pg_catalog.text) AND ((("d".owner_id = $2::pg_catalog.text)))) ORDER BY d.id
	// [acme alice]
	// true
}
