package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
)

func TestQueryCommand(t *testing.T) {
	pool, schema := testdb.Schema(t)
	_, err := pool.Exec(context.Background(), `CREATE TABLE docs (id int, tenant_id text, level text, draft bool, body text);
		INSERT INTO docs VALUES (1, 'acme', 'public', false, 'press'), (2, 'acme', 'internal', false, 'roadmap'),
		(3, 'globex', 'public', false, 'other tenant')`)
	if err != nil {
		t.Fatal(err)
	}
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	policyFile := filepath.Join(examples, "rbac.yaml")
	subject := writeJSONFile(t, map[string]any{"id": "gina", "tenant": "acme"})
	run1 := func(extra ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		args := append([]string{"query", "--db", dsn, "--policy", policyFile, "--subject", subject}, extra...)
		code := run(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"SELECT id, body FROM docs ORDER BY id"}, 0, `{"id":1,"body":"press"}` + "\n", ""},
		{[]string{"SELECT count(*) AS n FROM docs d WHERE d.id > $1", "0"}, 0, `{"n":1}` + "\n", ""},
		{[]string{"--untrusted", "SELECT id FROM docs WHERE 1 / (id - 1) = 0"}, exitUsage, "", "error: operator_not_allowed: "},
		{[]string{"DELETE FROM docs"}, exitUsage, "", "error: not_a_query: "},
		{[]string{"SELECT * FROM pg_authid"}, exitUsage, "", "error: system_catalog: "},
		{[]string{"--agent", "bot", "SELECT id FROM docs"}, exitUsage, "", "error: agent_not_granted: "},
		{[]string{"SELECT id FROM docs WHERE id = $2", "1"}, exitUsage, "", "error: param_out_of_range: "},
	} {
		code, out, errOut := run1(tc.args...)
		if code != tc.code || out != tc.out || !strings.HasPrefix(errOut, tc.err) || strings.Count(errOut, "\n") > 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, %q, %q...", tc.args, code, out, errOut, tc.code, tc.out, tc.err)
		}
	}
}

// The statement runs with JIT off, the statement timeout and strict-order
// iterative scans (read through a view: the rewriter refuses
// current_setting in the SQL itself), and one that runs longer than the
// timeout is cancelled with a message that names the flag.
func TestQueryStatementSettings(t *testing.T) {
	pool, schema := testdb.Schema(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE docs (id int, tenant_id text, body text);
		CREATE VIEW settings AS SELECT current_setting('jit') AS jit, current_setting('statement_timeout') AS timeout,
			current_setting('hnsw.iterative_scan') AS scan, current_setting('transaction_read_only') = 'on' AS read_only;
		CREATE VIEW slow AS SELECT pg_sleep(10)::text AS slept`)
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, policyFile, []byte("version: 1\nunfiltered: [settings, slow]\nresources:\n  docs:\n    tenant: tenant_id\n    allow:\n      - name: all\n        when: \"true\"\n"))
	// What PostgreSQL shows for the library's default, without retyping it.
	var defaultShown string
	if err := pool.QueryRow(ctx, "SELECT set_config('statement_timeout', $1, false)",
		strconv.FormatInt(filter.DefaultStatementTimeout.Milliseconds(), 10)).Scan(&defaultShown); err != nil {
		t.Fatal(err)
	}
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	subject := writeJSONFile(t, map[string]any{"id": "gina", "tenant": "acme"})
	run1 := func(extra ...string) (int, string, string, time.Duration) {
		var out, errOut bytes.Buffer
		args := append([]string{"query", "--db", dsn, "--policy", policyFile, "--subject", subject}, extra...)
		start := time.Now()
		code := run(ctx, args, &out, &errOut)
		return code, out.String(), errOut.String(), time.Since(start)
	}
	const probe = "SELECT jit, timeout, scan, read_only FROM settings"
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{probe}, `{"jit":"off","timeout":"` + defaultShown + `","scan":"strict_order","read_only":true}` + "\n"},
		{[]string{"--statement-timeout", "1500ms", probe}, `{"jit":"off","timeout":"1500ms","scan":"strict_order","read_only":true}` + "\n"},
		{[]string{"--statement-timeout", "0", probe}, `{"jit":"off","timeout":"0","scan":"strict_order","read_only":true}` + "\n"},
	} {
		if code, out, errOut, _ := run1(tc.args...); code != 0 || out != tc.out {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tc.args, code, out, errOut, tc.out)
		}
	}

	code, out, errOut, took := run1("--statement-timeout", "100ms", "SELECT slept FROM slow")
	want := "ragfence query: the statement ran longer than --statement-timeout 100ms and was cancelled (canceling statement due to statement timeout); " +
		"raise --statement-timeout, or pass 0 for the server's statement_timeout\n"
	if code != exitFailure || out != "" || errOut != want || took > 5*time.Second {
		t.Errorf("slow statement: exit %d after %v, stdout %q, stderr %q; want exit 1, %q", code, took, out, errOut, want)
	}
	if code, _, errOut, _ := run1("--statement-timeout", "-1s", probe); code != exitUsage || !strings.Contains(errOut, "--statement-timeout must be 0") {
		t.Errorf("negative timeout: exit %d, stderr %q; want a usage error", code, errOut)
	}
}

// A resource with a mask and no columns list: ragfence query reads the
// table's columns from the catalog and masks them, where the rewriter alone
// has to refuse (missing_columns).
func TestQueryMaskWithoutColumnsList(t *testing.T) {
	pool, schema := testdb.Schema(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE people (id int, tenant_id text, name text, email text);
		INSERT INTO people VALUES (1, 'acme', 'ann', 'ann@acme.test'), (2, 'globex', 'bob', 'bob@globex.test')`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyFile, []byte(`version: 1
resources:
  people:
    tenant: tenant_id
    allow:
      - name: everyone
        when: "true"
    mask:
      - column: email
        unless: "'hr' = ANY (subject.roles)"
`))
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	for _, tc := range []struct {
		roles []string
		want  string
	}{
		{nil, `{"id":1,"tenant_id":"acme","name":"ann","email":null}` + "\n"},
		{[]string{"hr"}, `{"id":1,"tenant_id":"acme","name":"ann","email":"ann@acme.test"}` + "\n"},
	} {
		subject := writeJSONFile(t, map[string]any{"id": "u", "tenant": "acme", "roles": tc.roles})
		out := mustRun(t, context.Background(), "query", "--db", dsn, "--policy", policyFile, "--subject", subject,
			"--untrusted", "SELECT * FROM people ORDER BY id")
		if out != tc.want {
			t.Errorf("roles %v: got %q, want %q", tc.roles, out, tc.want)
		}
	}
}

// --explain-rows names, for each row, the allow rules that let it in.
func TestQueryExplainRows(t *testing.T) {
	pool, schema := testdb.Schema(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE notes (id int, tenant_id text, owner_id text, shared bool);
		INSERT INTO notes VALUES (1, 'acme', 'ann', false), (2, 'acme', 'bob', true), (3, 'acme', 'ann', true), (4, 'acme', 'bob', false)`); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, policyFile, []byte(`version: 1
resources:
  notes:
    tenant: tenant_id
    allow:
      - name: mine
        when: owner_id = subject.id
      - name: shared
        when: shared
`))
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	subject := writeJSONFile(t, map[string]any{"id": "ann", "tenant": "acme"})
	out := mustRun(t, context.Background(), "query", "--db", dsn, "--policy", policyFile, "--subject", subject,
		"--explain-rows", "SELECT id FROM notes ORDER BY id")
	want := `{"id":1,"ragfence_rules":["mine"]}` + "\n" + `{"id":2,"ragfence_rules":["shared"]}` + "\n" + `{"id":3,"ragfence_rules":["mine","shared"]}` + "\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"query", "--db", dsn, "--policy", policyFile, "--subject", subject,
		"--explain-rows", "SELECT count(*) FROM notes"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "explain_unsupported") {
		t.Errorf("an aggregate: exit %d, %s; want %d explain_unsupported", code, stderr.String(), exitUsage)
	}
}
