package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

// testPolicy protects chunks by owner, by group (an array) and through a
// grants relation, so every kind of index check has something to look at.
const testPolicy = `version: 1
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    relations:
      grants: {table: grants, tenant: tenant_id}
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: group
        when: acl_groups && subject.groups
      - name: shared
        when: EXISTS (SELECT 1 FROM grants g WHERE g.document_id = chunks.document_id AND g.user_id = subject.id)
`

// Autovacuum is off so that "never analyzed" stays true while a test runs.
const (
	createTables = `
CREATE TABLE chunks (id bigint PRIMARY KEY, tenant_id text NOT NULL, owner_id text NOT NULL,
	acl_groups text[] NOT NULL DEFAULT '{}', document_id bigint NOT NULL, content text NOT NULL,
	metadata jsonb NOT NULL DEFAULT '{}', embedding vector(3) NOT NULL) WITH (autovacuum_enabled = false);
CREATE TABLE grants (tenant_id text NOT NULL, document_id bigint NOT NULL, user_id text NOT NULL)
	WITH (autovacuum_enabled = false);
INSERT INTO chunks SELECT g, 't' || g % 3, 'u' || g % 7, ARRAY['g' || g % 5], g / 10, 'chunk ' || g, '{}',
	ARRAY[random(), random(), random()]::vector(3) FROM generate_series(1, 300) g;
INSERT INTO grants SELECT 't' || g % 3, g, 'u' || g % 11 FROM generate_series(1, 30) g;`
	vectorIndex = `
SET max_parallel_maintenance_workers = 0;
CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops);`
	columnIndexes = `
CREATE INDEX chunks_tenant_owner_idx ON chunks (tenant_id, owner_id);
CREATE INDEX chunks_acl_idx ON chunks USING gin (acl_groups);
CREATE INDEX chunks_document_idx ON chunks (document_id);`
	grantIndex = `
CREATE INDEX grants_document_user_idx ON grants (document_id, user_id);`
	analyze = `
ANALYZE chunks; ANALYZE grants;`
)

// want is one finding a case expects, found by its code and severity and
// a piece of its message or fix.
type want struct {
	sev      Severity
	code     string
	contains []string
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		sql  string
		// want lists every warning and error of resource chunks.
		want []want
	}{
		{
			name: "all good",
			sql:  createTables + vectorIndex + columnIndexes + grantIndex + analyze,
		},
		{
			name: "no vector index",
			sql:  createTables + columnIndexes + grantIndex + analyze,
			want: []want{{Warning, CodeVectorIndex, []string{
				"CREATE INDEX CONCURRENTLY ON chunks USING hnsw (embedding vector_cosine_ops)", "<=>"}}},
		},
		{
			name: "vector index for the wrong distance",
			sql: createTables + columnIndexes + grantIndex + analyze +
				`SET max_parallel_maintenance_workers = 0; CREATE INDEX chunks_l2_idx ON chunks USING hnsw (embedding vector_l2_ops);`,
			want: []want{{Warning, CodeVectorIndex, []string{"chunks_l2_idx uses vector_l2_ops", "vector_cosine_ops"}}},
		},
		{
			name: "partial vector index",
			sql: createTables + columnIndexes + grantIndex + analyze +
				`CREATE INDEX chunks_t1_idx ON chunks USING hnsw (embedding vector_cosine_ops) WHERE tenant_id = 't1';`,
			want: []want{{Warning, CodeVectorIndex, []string{"chunks_t1_idx is partial"}}},
		},
		{
			name: "policy columns without indexes",
			sql: createTables + vectorIndex + grantIndex + analyze +
				// owner_id sits behind a column the policy does not pin.
				`CREATE INDEX chunks_doc_owner_idx ON chunks (document_id, owner_id);`,
			want: []want{
				{Warning, CodeColumnIndex, []string{"column acl_groups", "CREATE INDEX CONCURRENTLY ON chunks USING gin (acl_groups)"}},
				{Warning, CodeColumnIndex, []string{"column owner_id", `allow rule "owner"`, "chunks_doc_owner_idx (btree) holds it behind",
					"CREATE INDEX CONCURRENTLY ON chunks (tenant_id, owner_id)"}},
				{Warning, CodeColumnIndex, []string{"column tenant_id", "the tenant restriction", "CREATE INDEX CONCURRENTLY ON chunks (tenant_id)"}},
			},
		},
		{
			name: "EXISTS columns without indexes",
			sql:  createTables + vectorIndex + `CREATE INDEX chunks_tenant_owner_idx ON chunks (tenant_id, owner_id); CREATE INDEX ON chunks USING gin (acl_groups);` + analyze,
			want: []want{
				{Warning, CodeColumnIndex, []string{"column document_id", "denormalised access column on chunks", "CREATE INDEX CONCURRENTLY ON chunks (tenant_id, document_id)"}},
				{Warning, CodeRelationIndex, []string{"relation grants: column grants.document_id", "denormalised", "CREATE INDEX CONCURRENTLY ON grants (tenant_id, document_id)"}},
				{Warning, CodeRelationIndex, []string{"relation grants: column grants.user_id", "CREATE INDEX CONCURRENTLY ON grants (tenant_id, user_id)"}},
			},
		},
		{
			name: "never analyzed",
			sql:  createTables + vectorIndex + columnIndexes + grantIndex + `ANALYZE grants;`,
			want: []want{{Warning, CodeAnalyze, []string{"table chunks (about 300 rows) has never been analyzed", "ANALYZE chunks"}}},
		},
		{
			name: "missing column",
			sql:  createTables + vectorIndex + columnIndexes + grantIndex + analyze + `ALTER TABLE chunks RENAME COLUMN owner_id TO owner;`,
			want: []want{{Error, CodeCatalog, []string{`table chunks has no column "owner_id"`, `(rule "owner")`}}},
		},
		{
			name: "missing table",
			sql:  `CREATE TABLE grants (tenant_id text, document_id bigint, user_id text);`,
			want: []want{{Error, CodeCatalog, []string{"table chunks does not exist"}}},
		},
		{
			name: "not searchable",
			sql:  createTables + columnIndexes + grantIndex + analyze + `ALTER TABLE chunks DROP COLUMN embedding;`,
			want: []want{{Warning, CodeRetrieverColumns, []string{`no embedding column "embedding"`, "POST /v1/retrieve cannot search"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := checkSchema(t, tc.sql, testPolicy)
			got := problems(rep, "chunks")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tc.want), text(rep))
			}
			for i, w := range tc.want {
				f := got[i]
				if f.Severity != w.sev || f.Code != w.code {
					t.Errorf("problem %d is %s %s, want %s %s:\n%s", i, f.Severity, f.Code, w.sev, w.code, text(rep))
				}
				for _, s := range w.contains {
					if !strings.Contains(f.String(), s) {
						t.Errorf("problem %d does not say %q:\n%s", i, s, f)
					}
				}
			}
		})
	}
}

// TestCheckIndexPrefix: a btree serves a column that follows only pinned
// columns: the tenant for the resource, the compared columns for a relation.
func TestCheckIndexPrefix(t *testing.T) {
	rep := checkSchema(t, createTables+vectorIndex+analyze+`
CREATE INDEX chunks_tenant_owner_doc_idx ON chunks (tenant_id, owner_id, document_id);
CREATE INDEX chunks_meta_acl_idx ON chunks USING gin (metadata, acl_groups);
CREATE INDEX chunks_tenant_doc_idx ON chunks (tenant_id, document_id);
CREATE INDEX grants_tenant_user_doc_idx ON grants (tenant_id, user_id, document_id);`, testPolicy)
	if got := problems(rep, "chunks"); len(got) != 0 {
		t.Fatalf("want no problems:\n%s", text(rep))
	}
	for _, s := range []string{
		"column owner_id (allow rule \"owner\") is served by chunks_tenant_owner_doc_idx (btree)",
		"column acl_groups (allow rule \"group\") is served by chunks_meta_acl_idx (gin)",
		"relation grants: column document_id (compared by allow rule \"shared\") is served by grants_tenant_user_doc_idx (btree)",
	} {
		if !strings.Contains(text(rep), s) {
			t.Errorf("report does not say %q:\n%s", s, text(rep))
		}
	}
}

func TestCheckPgvectorInstalled(t *testing.T) {
	pool, _ := testdb.Schema(t)
	rep, err := Check(context.Background(), pool, mustParse(t, testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Findings[0]
	if f.Resource != "" || f.Code != CodePgvector || f.Severity == Error || !strings.HasPrefix(f.Message, "pgvector 0.") {
		t.Fatalf("first finding %+v, want the server's pgvector version", f)
	}
}

func TestCheckPgvectorVersions(t *testing.T) {
	for _, tc := range []struct {
		installed, available string
		sev                  Severity
		fix                  string
		says                 string
	}{
		{"", "", Error, "", "not installed on the server"},
		{"", "0.8.0", Error, "CREATE EXTENSION vector", "not created in this database"},
		{"0.7.4", "0.7.4", Error, "", "no iterative index scans"},
		{"0.7.4", "0.8.2", Error, "ALTER EXTENSION vector UPDATE", "the server has 0.8.2 available"},
		{"0.8.0", "0.8.0", Warning, "", "SET max_parallel_maintenance_workers = 0"},
		{"0.8.1", "0.8.2", Warning, "ALTER EXTENSION vector UPDATE", "pgvector #959"},
		{"0.8.2", "0.8.2", OK, "", "pgvector 0.8.2"},
		{"0.10.0", "0.10.0", OK, "", "pgvector 0.10.0"},
	} {
		f := checkPgvector(pgvector{Installed: tc.installed, Available: tc.available})
		if f.Severity != tc.sev || f.Fix != tc.fix || !strings.Contains(f.Message, tc.says) {
			t.Errorf("installed %q, available %q: %s, want %s with fix %q saying %q", tc.installed, tc.available, f, tc.sev, tc.fix, tc.says)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]version{"0.8.0": {0, 8, 0}, "0.8.2-dev": {0, 8, 2}, "1.0": {1, 0, 0}, "": {0, 0, 0}, "0.10.1": {0, 10, 1}} {
		if got := parseVersion(s); got != want {
			t.Errorf("parseVersion(%q) = %v, want %v", s, got, want)
		}
	}
	if !parseVersion("0.8.1").less(fixedPgvector) || parseVersion("0.10.0").less(fixedPgvector) {
		t.Error("version order is wrong")
	}
}

func TestRuleUses(t *testing.T) {
	set := mustParse(t, `version: 1
resources:
  files:
    table: app.files
    tenant: tenant_id
    relations:
      shares: {table: shares, tenant: tenant_id}
      teams: {table: teams, tenant: tenant_id}
    allow:
      - name: owner
        when: files.owner_id = subject.id
      - name: shared
        when: >-
          EXISTS (SELECT 1 FROM shares s WHERE s.file_id = files.id AND s.expires_at > context.time
                  AND EXISTS (SELECT 1 FROM teams WHERE teams.name = s.team AND teams.member = ANY (subject.groups)))
    agents:
      bot:
        allow:
          - name: small
            when: size_bytes < 1000 AND kind IN ('a', 'b')
`)
	u := ruleUses(set.Resources["files"])
	if want := []string{"id", "kind", "owner_id", "size_bytes", "tenant_id"}; !slices.Equal(u.Columns, want) {
		t.Errorf("columns %v, want %v", u.Columns, want)
	}
	if got := u.Rules["size_bytes"]; !slices.Equal(got, []string{`agent bot allow rule "small"`}) {
		t.Errorf("size_bytes used by %v", got)
	}
	if !u.Correlated["id"] || u.Correlated["owner_id"] {
		t.Errorf("correlated %v, want only id", u.Correlated)
	}
	got := fmt.Sprint(u.Relations)
	if want := `map[shares:map[file_id:[allow rule "shared"] team:[allow rule "shared"]] teams:map[member:[allow rule "shared"] name:[allow rule "shared"]]]`; got != want {
		t.Errorf("relations\n%s, want\n%s", got, want)
	}
}

// checkSchema runs sql in a fresh schema and checks the policy against it.
func checkSchema(t *testing.T, sql, policyYAML string) Report {
	t.Helper()
	pool, _ := testdb.Schema(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, sql); err != nil {
		t.Fatalf("setup: %v", err)
	}
	rep, err := Check(ctx, pool, mustParse(t, policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func mustParse(t *testing.T, src string) *policy.Set {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// problems returns the resource's warnings and errors in report order.
func problems(rep Report, resource string) []Finding {
	var out []Finding
	for _, f := range rep.Findings {
		if f.Resource == resource && f.Severity != OK {
			out = append(out, f)
		}
	}
	return out
}

func text(rep Report) string {
	var b strings.Builder
	_ = rep.WriteText(&b)
	return b.String()
}
