package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

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
