package rewrite_test

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

var update = flag.Bool("update", false, "rewrite golden files")

const goldenDir = "../testdata/rewrite"

// goldenSubject is who every golden statement runs for, with one argument
// of the caller's ($1), in strict mode unless the file starts with
// "-- mode: trusted".
func goldenSubject() filter.Request {
	return filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"editor"},
		Groups: []string{"eng"}, Attributes: map[string]any{"clearance": int64(2)}}}
}

// TestGolden rewrites testdata/rewrite/NAME.sql and compares with
// NAME.golden: the rewritten SQL and its policy arguments, or the error.
func TestGolden(t *testing.T) {
	set, err := policy.Load(filepath.Join(goldenDir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	rw := rewrite.New(set, []string{"public"}, rewrite.WithColumns(goldenColumns(set)))
	inputs, _ := filepath.Glob(filepath.Join(goldenDir, "*.sql"))
	if len(inputs) < 30 {
		t.Fatalf("only %d golden inputs", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".sql")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, rw, p, strings.TrimSpace(string(src)))
			golden := strings.TrimSuffix(in, ".sql") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./rewrite -run Golden -update creates it)", err)
			}
			if string(want) != got {
				t.Errorf("%s differs (-update rewrites it):\n--- want\n%s--- got\n%s", golden, want, got)
			}
		})
	}
}

func render(t *testing.T, rw *rewrite.Rewriter, p *filter.Policy, sql string) string {
	t.Helper()
	mode := rewrite.Strict
	if strings.HasPrefix(sql, "-- mode: trusted") {
		mode = rewrite.Trusted
	}
	res, err := rw.Rewrite(sql, rewrite.Request{Fragments: p.Fragments(goldenSubject()), NArgs: 1, Mode: mode})
	if err != nil {
		code := rewrite.CodeOf(err)
		if code == "" {
			t.Fatalf("an error without a code: %v", err)
		}
		return "error: " + err.Error() + "\n"
	}
	if _, err := pg.Parse(res.SQL); err != nil {
		t.Fatalf("the rewritten statement does not parse: %v\n%s", err, res.SQL)
	}
	var b strings.Builder
	b.WriteString(res.SQL + "\n")
	for i, a := range res.Args {
		b.WriteString("-- $" + strconv.Itoa(i+2) + " = " + filter.FormatArg(a) + "\n")
	}
	return b.String()
}

// TestSearchPath: an unqualified name is found along the search path, and
// an unfiltered table found in a later schema is qualified so that no
// undeclared table of the same name earlier on the path is read instead.
func TestSearchPath(t *testing.T) {
	set, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte(`version: 1
unfiltered: [ref.labels]
resources:
  docs:
    table: kb.docs
    tenant: tenant_id
    allow:
      - name: all
        when: "true"
`)})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := filter.Compile(set)
	req := rewrite.Request{Fragments: p.Fragments(goldenSubject()), Mode: rewrite.Strict}
	for _, tc := range []struct {
		path []string
		sql  string
		want string // a substring of the output, or an error code
	}{
		{[]string{"public", "kb", "ref"}, "SELECT id FROM docs", "FROM kb.docs docs WHERE"},
		{[]string{"public", "kb", "ref"}, "SELECT label FROM labels", "FROM ref.labels"},
		{[]string{"ref"}, "SELECT label FROM labels", "FROM labels"},
		{[]string{"public"}, "SELECT id FROM docs", string(rewrite.CodeUndeclared)},
		{[]string{"public", "kb"}, "SELECT label FROM labels", string(rewrite.CodeUndeclared)},
	} {
		res, err := rewrite.New(set, tc.path).Rewrite(tc.sql, req)
		got := string(rewrite.CodeOf(err))
		if err == nil {
			got = res.SQL
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("path %v: %s\n  got  %s\n  want %s", tc.path, tc.sql, got, tc.want)
		}
	}
}

// goldenColumns stands for a catalog in which the policy's column lists are
// the tables' columns, all of scalar types, so the goldens show conditions
// moved into fences.
func goldenColumns(set *policy.Set) map[string][]rewrite.Column {
	out := map[string][]rewrite.Column{}
	for name, res := range set.Resources {
		for _, c := range res.Columns {
			out[name] = append(out[name], rewrite.Column{Name: c, Comparable: true})
		}
	}
	return out
}
