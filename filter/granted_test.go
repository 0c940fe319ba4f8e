package filter_test

import (
	"context"
	"fmt"
	"testing"

	sq "github.com/Masterminds/squirrel"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

// Granted names the allow rules that let each visible row in, computed in
// the statement that reads the rows, with the fragment's values.
func TestGranted(t *testing.T) {
	pool, _ := testdb.Schema(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE docs (id int, tenant_id text, owner_id text, grp text, level int);
		INSERT INTO docs VALUES (1, 'acme', 'alice', 'eng', 0), (2, 'acme', 'bob', 'eng', 0), (3, 'acme', 'alice', 'ops', 0),
		(4, 'acme', 'bob', 'ops', 0), (5, 'acme', 'alice', 'eng', 9), (6, 'globex', 'alice', 'eng', 0)`); err != nil {
		t.Fatal(err)
	}
	p := compile(t, `version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: "team's"
        when: grp = ANY (subject.groups)
    deny:
      - name: secret
        when: level > 5
    agents:
      bot:
        allow:
          - name: eng-only
            when: grp = 'eng'
`)
	alice := &policy.Subject{ID: "alice", Tenant: "acme", Groups: []string{"eng"}}
	for _, tc := range []struct {
		agent string
		want  string
	}{
		{"", "1:[owner team's] 2:[team's] 3:[owner]"},
		{"bot", "1:[owner team's bot:eng-only] 2:[team's bot:eng-only]"},
	} {
		f, err := p.Fragment("docs", filter.Request{Subject: alice, Agent: tc.agent, Alias: "d"})
		if err != nil {
			t.Fatal(err)
		}
		sql, args, err := sq.Select("d.id").Column(f.Granted()).From("docs d").Where(f).OrderBy("d.id").
			PlaceholderFormat(sq.Dollar).ToSql()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
		var got string
		for rows.Next() {
			var id int
			var rules []string
			if err := rows.Scan(&id, &rules); err != nil {
				t.Fatal(err)
			}
			if got != "" {
				got += " "
			}
			got += fmt.Sprintf("%d:%v", id, rules)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("agent %q: got %s, want %s", tc.agent, got, tc.want)
		}
		if fmt.Sprint(f.GrantedArgs()) != fmt.Sprint(mustArgs(t, f.Granted())) {
			t.Errorf("GrantedArgs %v differ from Granted's", f.GrantedArgs())
		}
	}
}

func mustArgs(t *testing.T, s sq.Sqlizer) []any {
	t.Helper()
	_, args, err := s.ToSql()
	if err != nil {
		t.Fatal(err)
	}
	return args
}
