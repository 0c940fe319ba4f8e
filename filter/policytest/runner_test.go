package policytest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/filter/policytest"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

const examples = "../../testdata/policies"

// TestExamples runs every example policy's test file, as
// `ragfence policy test` does: each must pass.
func TestExamples(t *testing.T) {
	pool, _ := testdb.Schema(t)
	tests, err := filepath.Glob(filepath.Join(examples, "*"+policy.TestFileSuffix))
	if err != nil || len(tests) < 5 {
		t.Fatalf("want the five example test files under %s, found %v (%v)", examples, tests, err)
	}
	for _, testFile := range tests {
		name := strings.TrimSuffix(filepath.Base(testFile), policy.TestFileSuffix)
		t.Run(name, func(t *testing.T) {
			results := run(t, pool, filepath.Join(examples, name+".yaml"), testFile)
			for _, r := range results {
				if !r.Pass {
					t.Error(r.String())
				}
			}
		})
	}
}

// TestFailuresAreReported checks that a wrong expectation fails with the
// ids on each side, so a passing example proves something.
func TestFailuresAreReported(t *testing.T) {
	pool, _ := testdb.Schema(t)
	src, err := os.ReadFile(filepath.Join(examples, "rbac_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(string(src), "see: [1, 2]", "see: [1, 3]", 1)
	if wrong == string(src) {
		t.Fatal("rbac_test.yaml changed; update this test")
	}
	path := filepath.Join(t.TempDir(), "wrong_test.yaml")
	if err := os.WriteFile(path, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	results := run(t, pool, filepath.Join(examples, "rbac.yaml"), path)
	var failed []string
	for _, r := range results {
		if !r.Pass {
			failed = append(failed, r.String())
		}
	}
	want := "FAIL " + path + ":21: staff read internal documents but not drafts or secrets: seen but not expected: 2 (allowed by staff-internal); expected but not seen: 3"
	if len(failed) != 1 || failed[0] != want {
		t.Fatalf("failures:\n%s\nwant:\n%s", strings.Join(failed, "\n"), want)
	}
}

// TestNothingIsLeftBehind checks the transaction is rolled back.
func TestNothingIsLeftBehind(t *testing.T) {
	pool, schema := testdb.Schema(t)
	run(t, pool, filepath.Join(examples, "rbac.yaml"), filepath.Join(examples, "rbac_test.yaml"))
	var n int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ragfence_policytest_%'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	var tables int
	err = pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_tables WHERE tablename = 'docs' AND schemaname = $1`, schema).Scan(&tables)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 || tables != 0 {
		t.Fatalf("left behind: %d scratch schemas, %d docs tables", n, tables)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"no cases", "fixtures: {}\n", "no cases"},
		{"unknown key", "cases: []\nfixturez: {}\n", "field fixturez not found"},
		{"see and error", "cases:\n  - name: x\n    see: []\n    error: no_subject\n", "exactly one of see"},
		{"neither", "cases:\n  - name: x\n", "exactly one of see"},
		{"unknown subject", "cases:\n  - name: x\n    subject: nobody\n    see: []\n", `subject "nobody" is not defined`},
		{"unknown code", "cases:\n  - name: x\n    error: oops\n", `error "oops" is not one of`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policytest.Parse("t_test.yaml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func run(t *testing.T, db policytest.Beginner, policyFile, testFile string) []policytest.Result {
	t.Helper()
	set, err := policy.Load(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := policytest.NewRunner(set)
	if err != nil {
		t.Fatal(err)
	}
	r.Now = func() time.Time { return time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) }
	f, err := policytest.ReadFile(testFile)
	if err != nil {
		t.Fatal(err)
	}
	results, err := r.Run(context.Background(), db, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(f.Cases) {
		t.Fatalf("%d results for %d cases", len(results), len(f.Cases))
	}
	return results
}
