package filter_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	sq "github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

const approvalPolicy = `version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: team
        when: grp = ANY (subject.groups)
    agents:
      summarizer:
        allow:
          - name: wiki
            when: source = 'wiki'
        approval:
          - name: classified
            when: classification >= 2
            ttl: 30m
          - name: unknown-level
            when: classification IS NULL
            ttl: 5m
      other:
        allow:
          - name: all
            when: "true"
`

// An approval rule withholds its rows from the agent until the rule is
// approved, then lifts only that rule: never beyond the user's rights or
// the agent's allow rules. The text is the same approved or not.
func TestApprovalRules(t *testing.T) {
	pool, _ := testdb.Schema(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE docs (id int, tenant_id text, grp text, source text, classification int);
		INSERT INTO docs VALUES
		(1, 'acme', 'eng', 'wiki', 0), (2, 'acme', 'eng', 'wiki', 2), (3, 'acme', 'eng', 'wiki', NULL),
		(4, 'acme', 'eng', 'drive', 3), (5, 'acme', 'ops', 'wiki', 3), (6, 'globex', 'eng', 'wiki', 3)`); err != nil {
		t.Fatal(err)
	}
	p := compile(t, approvalPolicy)
	alice := &policy.Subject{ID: "alice", Tenant: "acme", Groups: []string{"eng"}}
	approved := func(rules ...string) func(string, string) bool {
		return func(res, rule string) bool { return res == "docs" && slices.Contains(rules, rule) }
	}
	var texts []string
	for _, tc := range []struct {
		name     string
		agent    string
		approved func(string, string) bool
		want     []int
		required []string
	}{
		{"user alone", "", nil, []int{1, 2, 3, 4}, nil},
		{"agent, nothing approved", "summarizer", nil, []int{1}, []string{"classified", "unknown-level"}},
		{"agent, classified approved", "summarizer", approved("classified"), []int{1, 2}, []string{"unknown-level"}},
		{"agent, both approved", "summarizer", approved("classified", "unknown-level"), []int{1, 2, 3}, nil},
		{"approval of another resource", "summarizer", func(string, string) bool { return false }, []int{1}, []string{"classified", "unknown-level"}},
		{"another agent's rules are not its", "other", approved(), []int{1, 2, 3, 4}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := p.Fragment("docs", filter.Request{Subject: alice, Agent: tc.agent, Alias: "d", Approved: tc.approved})
			if err != nil {
				t.Fatal(err)
			}
			if tc.agent == "summarizer" {
				texts = append(texts, f.SQL(1))
			}
			sql, args, err := sq.Select("d.id").From("docs d").Where(f).OrderBy("d.id").PlaceholderFormat(sq.Dollar).ToSql()
			if err != nil {
				t.Fatal(err)
			}
			rows, err := pool.Query(ctx, sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[int])
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("rows %v, want %v", got, tc.want)
			}
			if r := f.ApprovalRequired(); fmt.Sprint(r) != fmt.Sprint(tc.required) && !(len(r) == 0 && len(tc.required) == 0) {
				t.Errorf("approval required %v, want %v", r, tc.required)
			}
		})
	}
	for _, txt := range texts[1:] {
		if txt != texts[0] {
			t.Fatalf("the SQL changes with the approval state:\n%s\n%s", texts[0], txt)
		}
	}
}

func TestApprovalRuleErrors(t *testing.T) {
	for _, tc := range []struct{ name, rule, want string }{
		{"no ttl", "{name: c, when: \"x > 1\"}", "ttl"},
		{"bad ttl", "{name: c, when: \"x > 1\", ttl: soon}", "not a duration"},
		{"negative ttl", "{name: c, when: \"x > 1\", ttl: -5m}", "positive"},
		{"too long", "{name: c, when: \"x > 1\", ttl: 1000h}", "exceeds"},
		{"unknown field", "{name: c, when: \"x > 1\", ttl: 5m, for: 2}", "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "version: 1\nresources:\n  docs:\n    tenant: tenant_id\n    allow: [{name: a, when: \"true\"}]\n" +
				"    agents:\n      bot:\n        allow: [{name: b, when: \"true\"}]\n        approval:\n          - " + tc.rule + "\n"
			_, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte(src)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
