package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/filter/policytest"
	"github.com/ragfence/ragfence/internal/testdb"
)

var update = flag.Bool("update", false, "rewrite golden files")

const examples = "../../testdata/policies"

// TestExplainGolden runs `policy explain` for every case of every example
// policy's test file and compares the output byte for byte with
// testdata/policies/explain/<example>/<case>.txt (go test -update rewrites).
func TestExplainGolden(t *testing.T) {
	defer func(old func() time.Time) { now = old }(now)
	now = func() time.Time { return time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) }
	tests, _ := filepath.Glob(filepath.Join(examples, "*_test.yaml"))
	if len(tests) == 0 {
		t.Fatal("no example test files")
	}
	for _, testFile := range tests {
		example := strings.TrimSuffix(filepath.Base(testFile), "_test.yaml")
		f, err := policytest.ReadFile(testFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range f.Cases {
			if c.Subject.Kind == 0 || c.Error != "" {
				continue
			}
			args := []string{"policy", "explain", "--policy", filepath.Join(examples, example+".yaml"),
				"--subject", writeJSONFile(t, f.Subjects[c.Subject.Value])}
			if c.Resource != "" {
				args = append(args, "--resource", c.Resource)
			} else {
				args = append(args, "--resource", onlyResource(t, filepath.Join(examples, example+".yaml")))
			}
			if c.Agent != "" {
				args = append(args, "--agent", c.Agent)
			}
			if c.Context != nil {
				ctx := map[string]string{"time": now().Format(time.RFC3339)}
				if c.Context.Time != "" {
					ctx["time"] = c.Context.Time
				}
				if c.Context.IP != "" {
					ctx["ip"] = c.Context.IP
				}
				args = append(args, "--context", writeJSONFile(t, ctx))
			}
			golden := filepath.Join(examples, "explain", example, slug(c.Name)+".txt")
			compareGolden(t, golden, mustRun(t, context.Background(), args...))
		}
	}
}

func TestPolicyCheckReportsEveryError(t *testing.T) {
	dir := t.TempDir()
	broken := `version: 1
resources:
  docs:
    table: docs
    columns: [id, tenant_id, owner_id]
    allow:
      - name: owner
        when: ownr_id = subject.id
      - name: exfiltrate
        when: pg_read_file('/etc/passwd') = 'x'
      - name: sneaky
        when: EXISTS (SELECT 1 FROM secrets s WHERE s.id = docs.id)
`
	path := filepath.Join(dir, "broken.yaml")
	writeFile(t, path, []byte(broken))
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"policy", "check", path}, &out, &errOut)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailure, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 4 errors and a summary, got:\n%s", errOut.String())
	}
	for i, wantPrefix := range []string{path + ":3:3: ", path + ":8:15: ", path + ":10:15: ", path + ":12:"} {
		if !strings.HasPrefix(lines[i], wantPrefix) {
			t.Errorf("line %d: %q, want prefix %q", i+1, lines[i], wantPrefix)
		}
	}
	for i, word := range []string{"tenant", "owner_id", "pg_read_file", "secrets"} {
		if !strings.Contains(lines[i], word) {
			t.Errorf("line %d: %q should mention %q", i+1, lines[i], word)
		}
	}
}

func TestPolicyCheckCatalog(t *testing.T) {
	pool, schema := testdb.Schema(t)
	_, err := pool.Exec(context.Background(), `CREATE TABLE docs (id int, tenant_id text, level text, draft bool, body text)`)
	if err != nil {
		t.Fatal(err)
	}
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	policyFile := filepath.Join(examples, "rbac.yaml")
	mustRun(t, context.Background(), "policy", "check", "--db", dsn, policyFile)

	// The same policy against a table without the level column.
	if _, err := pool.Exec(context.Background(), `ALTER TABLE docs DROP COLUMN level`); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"policy", "check", "--db", dsn, policyFile}, &out, &errOut)
	if code != exitFailure || !strings.Contains(errOut.String(), `table docs has no column "level"`) {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
}

func TestPolicyTestExitCodes(t *testing.T) {
	dsn := testdb.URL(t)
	policyFile := filepath.Join(examples, "agents.yaml")
	out := mustRun(t, context.Background(), "policy", "test", "--db", dsn, "--policy", policyFile, filepath.Join(examples, "agents_test.yaml"))
	if !strings.Contains(out, "3 passed, 0 failed") {
		t.Fatalf("output:\n%s", out)
	}
	src, _ := os.ReadFile(filepath.Join(examples, "agents_test.yaml"))
	wrong := filepath.Join(t.TempDir(), "wrong_test.yaml")
	writeFile(t, wrong, bytes.Replace(src, []byte("see: [1]"), []byte("see: [1, 3]"), 1))
	var o, e bytes.Buffer
	code := run(context.Background(), []string{"policy", "test", "--db", dsn, "--policy", policyFile, wrong}, &o, &e)
	if code != exitFailure || !strings.Contains(o.String(), "expected but not seen: 3") || !strings.Contains(o.String(), "2 passed, 1 failed") {
		t.Fatalf("exit %d, output:\n%s%s", code, o.String(), e.String())
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, []byte(got))
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/ragfence -run Golden -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func writeJSONFile(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "in.json")
	writeFile(t, path, b)
	return path
}

func onlyResource(t *testing.T, policyFile string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "check", policyFile}, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	b, _ := os.ReadFile(policyFile)
	m := regexp.MustCompile(`(?m)^resources:\n  ([a-z_0-9]+):`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no resource found", policyFile)
	}
	return string(m[1])
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(nonWord.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
