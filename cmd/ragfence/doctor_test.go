package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/internal/doctor"
	"github.com/ragfence/ragfence/internal/testdb"
)

const doctorSchema = `
CREATE TABLE chunks (id bigint PRIMARY KEY, tenant_id text NOT NULL, owner_id text NOT NULL, visibility text NOT NULL,
	content text NOT NULL, metadata jsonb NOT NULL DEFAULT '{}', embedding vector(3) NOT NULL);
INSERT INTO chunks SELECT g, 't' || g % 2, 'u' || g % 5, 'private', 'c', '{}', '[1, 2, 3]' FROM generate_series(1, 50) g;
CREATE INDEX ON chunks (tenant_id, owner_id);
SET max_parallel_maintenance_workers = 0;
CREATE INDEX ON chunks USING hnsw (embedding vector_cosine_ops);
ANALYZE chunks;`

// doctorPolicy protects table; extra is appended to its allow rules.
func doctorPolicy(t *testing.T, table, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, []byte(`version: 1
resources:
  chunks:
    table: `+table+`
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`+extra))
	return path
}

func TestDoctorCommand(t *testing.T) {
	pool, schema := testdb.Schema(t)
	if _, err := pool.Exec(context.Background(), doctorSchema); err != nil {
		t.Fatal(err)
	}
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	good := doctorPolicy(t, "chunks", "")
	// visibility has no index: a warning whatever the server's pgvector.
	unindexed := doctorPolicy(t, "chunks", "      - name: public\n        when: visibility = 'public'\n")
	missing := doctorPolicy(t, "no_such_table", "")
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		out, err  []string // pieces stdout and stderr must hold
		notStdout string
	}{
		{"healthy", []string{"--db", dsn, "--policy", good}, exitOK,
			[]string{"server:\n  ", "resource chunks:\n", "  ok       vector_index ", "  ok       column_index      column owner_id", "0 error(s)"}, nil, "warning  column_index"},
		{"--url is --db", []string{"--url", dsn, "--policy", good}, exitOK, []string{"0 error(s)"}, nil, ""},
		{"warnings pass", []string{"--db", dsn, "--policy", unindexed}, exitOK,
			[]string{"  warning  column_index      column visibility", "run: CREATE INDEX CONCURRENTLY ON chunks (tenant_id, visibility)"}, nil, ""},
		{"--strict fails on warnings", []string{"--db", dsn, "--policy", unindexed, "--strict"}, exitFailure,
			[]string{"column visibility"}, []string{"warning(s) (--strict)"}, ""},
		{"errors fail", []string{"--db", dsn, "--policy", missing}, exitFailure,
			[]string{"  error    catalog           table no_such_table does not exist"}, []string{"doctor: 1 error(s)"}, "vector_index"},
		{"no policy", []string{"--db", dsn}, exitUsage, nil, []string{"--policy is required"}, ""},
		{"stray argument", []string{"--db", dsn, "--policy", good, "extra"}, exitUsage, nil, []string{`unexpected argument "extra"`}, ""},
		{"no database", []string{"--db", "", "--policy", good}, exitUsage, nil, []string{"no database given"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"doctor"}, tc.args...), &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			for _, s := range tc.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout does not hold %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.err {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr does not hold %q:\n%s", s, errOut.String())
				}
			}
			if tc.notStdout != "" && strings.Contains(out.String(), tc.notStdout) {
				t.Errorf("stdout holds %q:\n%s", tc.notStdout, out.String())
			}
		})
	}
}

func TestDoctorJSON(t *testing.T) {
	pool, schema := testdb.Schema(t)
	if _, err := pool.Exec(context.Background(), doctorSchema); err != nil {
		t.Fatal(err)
	}
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	policyFile := doctorPolicy(t, "chunks", "      - name: public\n        when: visibility = 'public'\n")
	out := mustRun(t, context.Background(), "doctor", "--db", dsn, "--policy", policyFile, "--json")
	var rep doctor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	var found bool
	for _, f := range rep.Findings {
		if f.Resource == "chunks" && f.Code == doctor.CodeColumnIndex && f.Severity == doctor.Warning {
			found = f.Fix == "CREATE INDEX CONCURRENTLY ON chunks (tenant_id, visibility)"
		}
	}
	if !found || !strings.Contains(out, `"severity": "warning"`) {
		t.Fatalf("want the visibility warning with its fix:\n%s", out)
	}
}

// TestLogDoctor: what serve logs at start, and that a failing check only logs.
func TestLogDoctor(t *testing.T) {
	pool, _ := testdb.Schema(t)
	if _, err := pool.Exec(context.Background(), doctorSchema+"DROP INDEX chunks_embedding_idx;"); err != nil {
		t.Fatal(err)
	}
	set, err := loadPolicy(&bytes.Buffer{}, doctorPolicy(t, "chunks", ""))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logDoctor(context.Background(), pool, set, slog.New(slog.NewJSONHandler(&logs, nil)))
	for _, s := range []string{`"level":"WARN","msg":"doctor: no HNSW or IVFFlat index`, `"code":"vector_index"`, `"resource":"chunks"`,
		`"fix":"`, `"msg":"doctor: database checked against the policy"`} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("logs do not hold %s:\n%s", s, logs.String())
		}
	}
	logs.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	logDoctor(ctx, pool, set, slog.New(slog.NewJSONHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "doctor: database checks did not run") {
		t.Errorf("a failing check should be logged:\n%s", logs.String())
	}
}
