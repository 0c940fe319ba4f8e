package filter_test

import (
	"errors"
	"strings"
	"testing"

	sq "github.com/Masterminds/squirrel"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

const testPolicy = `version: 1
subject:
  attributes:
    clearance: integer
resources:
  docs:
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, level, meta, email]
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: english
        when: meta ? 'lang' AND meta->>'lang' = 'en?'
    deny:
      - name: above-clearance
        when: level > subject.clearance
    mask:
      - column: email
        unless: "'hr' = ANY (subject.roles)"
    agents:
      bot:
        allow:
          - name: low
            when: level = 0
  locked:
    tenant: tenant_id
    deny:
      - name: nothing
        when: "false"
`

func compile(t testing.TB, src string) *filter.Policy {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: "test.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func alice() *policy.Subject {
	return &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"editor"}, Attributes: map[string]any{"clearance": int64(2)}}
}

func TestFragmentErrors(t *testing.T) {
	p := compile(t, testPolicy)
	for _, tc := range []struct {
		name     string
		resource string
		req      filter.Request
		code     filter.Code
		is       error
	}{
		{"unknown resource", "chunks", filter.Request{Subject: alice()}, filter.CodeUnknownResource, filter.ErrUnknownResource},
		{"no subject", "docs", filter.Request{}, filter.CodeNoSubject, filter.ErrNoSubject},
		{"no tenant", "docs", filter.Request{Subject: &policy.Subject{ID: "x"}}, filter.CodeNoSubject, filter.ErrNoSubject},
		{"agent without grant", "docs", filter.Request{Subject: alice(), Agent: "other"}, filter.CodeAgentNotGranted, filter.ErrAgentNotGranted},
		{"agent without grant on locked", "locked", filter.Request{Subject: alice(), Agent: "bot"}, filter.CodeAgentNotGranted, filter.ErrAgentNotGranted},
		{"reserved alias", "docs", filter.Request{Subject: alice(), Alias: "ragfence_r1"}, filter.CodeInvalidAlias, nil},
		{"wrong attribute type", "docs", filter.Request{Subject: &policy.Subject{Tenant: "acme", Attributes: map[string]any{"clearance": "high"}}}, filter.CodeInvalidSubject, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := p.Fragment(tc.resource, tc.req)
			if f != nil || filter.CodeOf(err) != tc.code {
				t.Fatalf("got %v, %v; want code %s", f, err, tc.code)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) is false", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.resource) {
				t.Errorf("message %q does not name the resource", err)
			}
		})
	}
}

func TestFragmentOutcomes(t *testing.T) {
	p := compile(t, testPolicy)
	noClearance := alice()
	noClearance.Attributes = nil
	for _, tc := range []struct {
		name, resource string
		req            filter.Request
		outcome        filter.Outcome
		sql            string // a substring of SQL(1), or the whole when outcome is AlwaysDenied
	}{
		{"no allow rules compile to FALSE, never an empty conjunction", "locked", filter.Request{Subject: alice()}, filter.AlwaysDenied, "FALSE"},
		{"a deny rule lacking an attribute denies everything", "docs", filter.Request{Subject: noClearance}, filter.AlwaysDenied, "FALSE"},
		{"tenant first", "docs", filter.Request{Subject: alice()}, filter.Conditional, `(("docs"."tenant_id" = $1::pg_catalog.text) AND `},
		{"alias", "docs", filter.Request{Subject: alice(), Alias: "D"}, filter.Conditional, `"D"."tenant_id" = $1`},
		{"agent grant is ANDed", "docs", filter.Request{Subject: alice(), Agent: "bot"}, filter.Conditional, `AND ((("docs".level = 0)))`},
		{"jsonb ? stays an operator", "docs", filter.Request{Subject: alice()}, filter.Conditional, `"docs".meta ? 'lang' AND ("docs".meta ->> 'lang') = 'en?'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := p.Fragment(tc.resource, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			got := f.SQL(1)
			if f.Outcome != tc.outcome {
				t.Fatalf("outcome %s, want %s (%s)", f.Outcome, tc.outcome, f.Reason)
			}
			if tc.outcome == filter.AlwaysDenied && (got != tc.sql || len(f.Args()) != 0 || f.Reason == "") {
				t.Fatalf("denied fragment: %q %v reason %q", got, f.Args(), f.Reason)
			}
			if !strings.Contains(got, tc.sql) {
				t.Fatalf("SQL\n%s\ndoes not contain\n%s", got, tc.sql)
			}
		})
	}
}

// TestTextDependsOnShapeOnly: subjects with different values but the same
// shape get the same SQL text, so statements can be cached and prepared.
func TestTextDependsOnShapeOnly(t *testing.T) {
	p := compile(t, testPolicy)
	bob := &policy.Subject{ID: "bob'; DROP TABLE docs; --", Tenant: "globex", Roles: []string{"hr"}, Attributes: map[string]any{"clearance": int64(9)}}
	a, err := p.Fragment("docs", filter.Request{Subject: alice()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Fragment("docs", filter.Request{Subject: bob})
	if err != nil {
		t.Fatal(err)
	}
	if a.SQL(1) != b.SQL(1) {
		t.Fatalf("SQL differs:\n%s\n%s", a.SQL(1), b.SQL(1))
	}
	if strings.Contains(b.SQL(1), "bob") || strings.Contains(b.SQL(1), "globex") {
		t.Fatalf("a value was written into SQL: %s", b.SQL(1))
	}
	want := []any{"globex", "bob'; DROP TABLE docs; --", int64(9)}
	if got := b.Args(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("args %v, want %v", got, want)
	}
}

// TestSquirrel places a fragment into a query that binds $1 itself.
func TestSquirrel(t *testing.T) {
	p := compile(t, testPolicy)
	f, err := p.Fragment("docs", filter.Request{Subject: alice(), Alias: "d"})
	if err != nil {
		t.Fatal(err)
	}
	sql, args, err := sq.Select("d.id").Column(f.Column("email")).From("docs d").
		Where("d.level < ?", 5).Where(f).PlaceholderFormat(sq.Dollar).ToSql()
	if err != nil {
		t.Fatal(err)
	}
	want := `SELECT d.id, CASE WHEN 'hr' = ANY($1::pg_catalog.text[]) THEN "d"."email" END FROM docs d WHERE d.level < $2 AND ` + f.SQL(3)
	if sql != want {
		t.Fatalf("got\n%s\nwant\n%s", sql, want)
	}
	if len(args) != 2+len(f.Args()) || args[1] != 5 {
		t.Fatalf("args %v", args)
	}
}

func TestExplain(t *testing.T) {
	p := compile(t, testPolicy)
	s := alice()
	s.Attributes = nil
	f, err := p.Fragment("docs", filter.Request{Subject: s})
	if err != nil {
		t.Fatal(err)
	}
	e := p.Explain(f)
	if e.Outcome != "always-denied" || e.PolicyVersion != p.Version() || len(e.Rules) != 3 {
		t.Fatalf("%+v", e)
	}
	deny := e.Rules[2]
	if deny.Name != "above-clearance" || deny.Active || len(deny.Missing) != 1 || deny.Missing[0] != "subject.clearance" {
		t.Fatalf("deny rule state %+v", deny)
	}
}

func BenchmarkFragmentCached(b *testing.B) {
	p := compile(b, testPolicy)
	s := alice()
	if _, err := p.Fragment("docs", filter.Request{Subject: s, Alias: "c"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		f, err := p.Fragment("docs", filter.Request{Subject: s, Alias: "c"})
		if err != nil || f.Outcome != filter.Conditional {
			b.Fatal(err)
		}
	}
}

func BenchmarkFragmentCachedToSql(b *testing.B) {
	p := compile(b, testPolicy)
	s := alice()
	b.ReportAllocs()
	for b.Loop() {
		f, err := p.Fragment("docs", filter.Request{Subject: s, Alias: "c"})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := f.ToSql(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	set, err := policy.Parse(policy.Source{Name: "test.yaml", Data: []byte(testPolicy)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := filter.Compile(set); err != nil {
			b.Fatal(err)
		}
	}
}

// A rule whose parentheses pg_query's deparser drops compiles to SQL of the
// rule's meaning: (a OR b) IS NOT NULL AND c, not a OR (b IS NOT NULL AND c),
// which would grant every public row.
func TestFragmentKeepsParentheses(t *testing.T) {
	p := compile(t, `version: 1
resources:
  docs:
    tenant: tenant_id
    allow:
      - name: odd
        when: (visibility = 'public' OR visibility = 'group') IS NOT NULL AND owner_id = subject.id
`)
	f, err := p.Fragment("docs", filter.Request{Subject: alice(), Alias: "d"})
	if err != nil {
		t.Fatal(err)
	}
	sql, _, err := f.ToSql()
	if err != nil {
		t.Fatal(err)
	}
	want := `("d".visibility = 'public' OR "d".visibility = 'group') IS NOT NULL AND "d".owner_id = ?::pg_catalog.text`
	if !strings.Contains(sql, want) {
		t.Errorf("fragment %s\ndoes not contain %s", sql, want)
	}
}
