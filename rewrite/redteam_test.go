package rewrite_test

// Red-team cases for issue 11. Each test fails while the finding it names is
// open. See the red-team report for the analysis.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// rtJudged are expressions the judgment calls safe (so nothing is fenced)
// that raise on a hidden row's data. x06 is t1's, hidden from u1 by the
// allow rules (same tenant); x02 is t2's (another tenant).
var rtJudged = []struct {
	name, subject string
	mode          rewrite.Mode
	sql           string
}{
	// Record comparisons: record_eq/record_cmp check column count and types
	// only as far as the values compare equal, so the error depends on data.
	{"record-eq-case", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN ROW(1) ELSE ROW(2) END = ROW(1, 1)`},
	{"record-distinct", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN ROW(1) ELSE ROW(2) END IS DISTINCT FROM ROW(1, 1)`},
	{"record-between", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN ROW(1) ELSE ROW(2) END BETWEEN ROW(1,1) AND ROW(1,1)`},
	// = ANY of a one-element array costs half an operator: it runs before
	// the tenant predicate, so this reads another tenant's content.
	{"record-any-cross-tenant", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x02' AND COALESCE(ROW(c.content), NULL) = ANY (ARRAY[ROW('tenant two alpha beta'::text, 1)])`},
	{"record-eq-trusted", "t1-member-u1", rewrite.Trusted,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN ROW(1) ELSE ROW(2) END = ROW(1, 1)`},
	// Arrays of a type without equality: array_eq looks the operator up only
	// when the dimensions match; && only on non-NULL input.
	{"json-array-eq", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN ARRAY['{}'::json] ELSE ARRAY['{}'::json, '{}'::json] END = ARRAY['{}'::json]`},
	{"json-array-overlap", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND (CASE WHEN c.content LIKE 'tenant one g%' THEN ARRAY['{}'::json] END && ARRAY['{}'::json]) IS NULL`},
	// A cast of a cast of a literal is a run-time coercion; one with a
	// STABLE input function (regclass, date, timestamptz) is not folded.
	{"chained-cast-regclass", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN 'zzz'::text::regclass IS NULL ELSE true END`},
	{"chained-cast-date", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND CASE WHEN c.content LIKE 'tenant one g%' THEN '2020-13-45'::text::date IS NULL ELSE true END`},
	// ARRAY shapes: an untyped string literal or NULL is not a scalar
	// element, and single-element nesting can exceed 6 dimensions.
	{"array-shape-unknown-literal-cross-tenant", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x02' AND ARRAY['{q}', CASE WHEN c.content LIKE 'tenant two a%' THEN ARRAY['a','b'] ELSE ARRAY['a'] END] IS NOT NULL`},
	{"array-shape-null", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND ARRAY[NULL, CASE WHEN c.content LIKE 'tenant one g%' THEN ARRAY['a'] END] IS NOT NULL`},
	{"array-depth", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND ARRAY[ARRAY[ARRAY[ARRAY[ARRAY[ARRAY[CASE WHEN c.content LIKE 'tenant one g%' THEN ARRAY['a'] END]]]]]] IS NOT NULL`},
	// LIKE ANY of an array literal written as a string: the pattern checked
	// is the literal's text, not its elements. A direct prefix oracle on
	// another tenant's content (runs before the tenant predicate).
	{"like-any-array-string-cross-tenant", "t1-member-u1", rewrite.Strict,
		`SELECT c.id FROM chunks c WHERE c.id = 'x02' AND c.content LIKE ANY ('{"tenant two a\\"}')`},
	// leakproofFunctions is not leakproof: replace (and to_jsonb, concat)
	// raise past 1 GB / 256 MB, which a few occurrences in the data reach.
	{"trusted-replace-size", "t1-member-u1", rewrite.Trusted,
		`SELECT c.id FROM chunks c WHERE c.id = 'x06' AND jsonb_typeof(to_jsonb(replace(replace(CASE WHEN c.content LIKE 'tenant one g%' THEN 'aaa' ELSE '' END, 'a', repeat_a), 'a', repeat_a))) IS NULL`},
}

func TestRedTeamJudgedSafeButRaising(t *testing.T) {
	t.Parallel()
	nw := niSetup(t)
	for _, c := range rtJudged {
		sql := strings.ReplaceAll(c.sql, "repeat_a", "'"+strings.Repeat("a", 10000)+"'")
		r := nw.run(t.Context(), nw.subject(c.subject), c.mode, sql)
		if r.differs {
			a, b := r.a.text, r.b.text
			t.Errorf("%s (%s): LEAK\n  world A: %s\n  world B: %s\n  sql: %.300s", c.name, pgModeName(c.mode), niIndent(a), niIndent(b), c.sql)
		}
	}
}

// rtWorld loads a schema and returns its name; dropped at cleanup.
func rtSchema(t *testing.T, pool *pgxpool.Pool, name, setup string) string {
	t.Helper()
	q := pgx.Identifier{name}.Sanitize()
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+q+" CASCADE") }) //nolint:errcheck
	if _, err := pool.Exec(t.Context(), "DROP SCHEMA IF EXISTS "+q+" CASCADE; CREATE SCHEMA "+q+"; SET search_path = "+q+", public; "+setup+"; RESET search_path"); err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	if _, err := pool.Exec(t.Context(), "VACUUM ANALYZE "+q+".grants"); err != nil {
		t.Fatal(err)
	}
	return name
}

// A policy whose only allow rule is an EXISTS: PostgreSQL pulls it up into
// a semi-join, and with a parallel plan (default settings, a table above
// min_parallel_table_scan_size) sorts the protected table below Gather
// Merge by the ORDER BY expression before the semi-join: a post-position
// expression runs on rows the policy has not admitted.
const rtGrantPolicy = `
version: 1
resources:
  docs:
    table: docs
    tenant: tenant_id
    columns: [id, tenant_id, num, content, feat]
    relations:
      granted: {table: grants, tenant: tenant_id}
    allow:
      - name: granted
        when: EXISTS (SELECT 1 FROM granted g WHERE g.doc_id = docs.id AND g.user_id = subject.id)
`

func rtGrantSetup(hidden string) string {
	return `CREATE TABLE docs (id int, tenant_id text, num int, content text, feat vector);
CREATE TABLE grants (doc_id int, tenant_id text, user_id text, note text);
INSERT INTO docs SELECT g, 't1', 1 + g % 7, repeat('x', 50), '[1,0,0]' FROM generate_series(1, 200000) g;
` + hidden + `;
INSERT INTO grants SELECT g, 't1', 'u1', repeat('n', 1000) FROM generate_series(1, 200000) g WHERE g <> 777;
CREATE INDEX ON grants (doc_id);
ANALYZE docs; ANALYZE grants`
}

func TestRedTeamPostPositionBelowSemiJoin(t *testing.T) {
	t.Parallel()
	pool, base := testdb.Schema(t)
	set, pol := pgNewPolicy(t, "grants.yaml", rtGrantPolicy)
	// Doc 777 is u1's tenant's but not granted to u1: hidden. World A gives
	// it a zero divisor and a 2-dimensional vector; world B does not.
	a := rtSchema(t, pool, base+"_ga", rtGrantSetup(`UPDATE docs SET num = 0, feat = '[1,0]' WHERE id = 777`))
	b := rtSchema(t, pool, base+"_gb", rtGrantSetup(`UPDATE docs SET num = 1 WHERE id = 777`))
	s := &pgSubject{label: "u1", subject: sub1()}
	for _, c := range []struct {
		mode rewrite.Mode
		sql  string
	}{
		{rewrite.Trusted, `SELECT d.id, 10 / d.num AS r FROM docs d ORDER BY 10 / d.num, d.id LIMIT 5`},
		{rewrite.Strict, `SELECT d.id FROM docs d ORDER BY d.feat <-> '[1,2,3]', d.id LIMIT 5`},
	} {
		o := pgRunOpts{ordered: true, timeout: 10 * time.Second}
		oa, ob := o, o
		oa.schema, ob.schema = a, b
		ra := pgRewriteRun(t.Context(), pool, rewrite.New(set, []string{a, "public"}), pol, s, c.mode, c.sql, oa)
		rb := pgRewriteRun(t.Context(), pool, rewrite.New(set, []string{b, "public"}), pol, s, c.mode, c.sql, ob)
		if ra.text != rb.text || ra.refused != rb.refused {
			t.Errorf("%s: LEAK through a post-position expression sorted below the semi-join\n  %s\n  world A: %s\n  world B: %s\n  rewritten: %s",
				pgModeName(c.mode), c.sql, niIndent(ra.text), niIndent(rb.text), ra.sql)
		}
	}
}

// The top-k ordering moved into the fence names the table's column, but a
// FROM alias with a column list renames the columns: c.embedding below is
// the table's feat. PostgreSQL orders by feat (and fails: t1-admin may see
// rows whose feat has 2 dimensions); the rewrite orders by embedding.
func TestRedTeamFenceOrderColumnAlias(t *testing.T) {
	t.Parallel()
	nw := niSetup(t)
	const cols = `(id, tenant_id, owner_id, visibility, level, content, secret, num, code, pos, tags, feat, embedding)`
	const tail = ` WHERE c.feat <-> '[1,0,0]' >= 0 OR c.id IS NOT NULL ORDER BY c.embedding <-> '[1,0,0]' LIMIT 3`
	s := nw.subjects[nw.subject("t1-admin")]
	got := pgRewriteRun(t.Context(), nw.pool, nw.rw[nw.a], nw.pol, s, rewrite.Strict, "SELECT c.id FROM chunks AS c"+cols+tail,
		pgRunOpts{schema: nw.a, ordered: true, timeout: 5 * time.Second})
	// PostgreSQL's own answer: the same statement over the permitted rows.
	var ids []string
	for _, id := range pgBase().visibleIDs(s) {
		ids = append(ids, "'"+id+"'")
	}
	want := pgExec(t.Context(), nw.pool, "SELECT c.id FROM (SELECT * FROM chunks WHERE id IN ("+strings.Join(ids, ",")+")) AS c"+cols+tail, nil,
		pgRunOpts{schema: nw.a, ordered: true, timeout: 5 * time.Second})
	if got.text != want.text {
		t.Errorf("ORDER BY over a renamed column, moved into the fence, orders by another column:\n  ragfence:   %s\n  PostgreSQL: %s\n  rewritten: %s",
			niIndent(got.text), niIndent(want.text), got.sql)
	}
}

// The ordering moved into the fence reads the raw column even when the
// policy masks it: ORDER BY an output alias passes the masked-column check
// (it is in the select list), and inside the fence t.embedding is unmasked.
const rtMaskedEmbeddingPolicy = `
version: 1
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, visibility, level, content, secret, num, code, pos, tags, embedding, feat]
    allow:
      - name: all
        when: "true"
    mask:
      - column: embedding
        unless: "'auditor' = ANY (subject.roles)"
`

func TestRedTeamFenceOrderMaskedColumn(t *testing.T) {
	t.Parallel()
	pool, base := testdb.Schema(t)
	set, pol := pgNewPolicy(t, "masked.yaml", rtMaskedEmbeddingPolicy)
	wa := pgBase()
	wb := pgBase()
	// Only the masked embeddings of two visible rows differ.
	for _, c := range wb.chunks {
		switch c.id {
		case "x01":
			c.emb = []float32{0, 1, 1}
		case "x05":
			c.emb = []float32{1, 0, 0}
		}
	}
	a, b := base+"_ma", base+"_mb"
	for name, w := range map[string]*pgWorld{a: wa, b: wb} {
		t.Cleanup(func() {
			pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		}) //nolint:errcheck
		pgLoad(t, pool, name, w)
	}
	s := &pgSubject{label: "u1", subject: sub1()}
	const sql = `SELECT c.id, c.embedding <-> '[0,1,1]' AS d FROM chunks c WHERE c.tenant_id = 't1' AND c.feat <-> '[1,0,0]' < 100 ORDER BY d LIMIT 1`
	o := pgRunOpts{ordered: true, timeout: 5 * time.Second}
	oa, ob := o, o
	oa.schema, ob.schema = a, b
	ra := pgRewriteRun(t.Context(), pool, rewrite.New(set, []string{a, "public"}), pol, s, rewrite.Strict, sql, oa)
	rb := pgRewriteRun(t.Context(), pool, rewrite.New(set, []string{b, "public"}), pol, s, rewrite.Strict, sql, ob)
	if ra.text != rb.text {
		t.Errorf("LEAK of a masked vector through the ordering moved into the fence\n  world A: %s\n  world B: %s\n  rewritten: %s", niIndent(ra.text), niIndent(rb.text), ra.sql)
	}
}

func sub1() *policy.Subject {
	return &policy.Subject{ID: "u1", Tenant: "t1", Attributes: map[string]any{"clearance": 2}}
}
