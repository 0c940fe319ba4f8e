package rewrite_test

// Red-team cases for issue 11, round 3 (against the fence of every
// protected reference, the conditions moved into it and the moved top-k
// ordering). Each test fails while the finding it names is open.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// rt3Run rewrites sql (whose own parameters are args) for s and runs it in
// schema, binding args followed by the policy's.
func rt3Run(ctx context.Context, pool *pgxpool.Pool, rw *rewrite.Rewriter, pol *filter.Policy, s *pgSubject,
	mode rewrite.Mode, sql string, args []any, schema string,
) pgObs {
	res, err := rw.Rewrite(sql, rewrite.Request{Fragments: pol.Fragments(s.request()), Mode: mode, NArgs: len(args)})
	if err != nil {
		return pgObs{refused: true, text: fmt.Sprintf("refused %s: %v", rewrite.CodeOf(err), err)}
	}
	all := append(append([]any{}, args...), res.Args...)
	return pgExec(ctx, pool, res.SQL, all, pgRunOpts{schema: schema, timeout: 5 * time.Second, ordered: strings.Contains(sql, "ORDER BY")})
}

// rt3Ledger is redteam2's ledger fixture (row 2 is t1's, owned by u2,
// hidden from u1; in world A its amount is 12345e400, beyond float8) with
// rewriters that have the catalog, as filter.Wrap's do.
func rt3Ledger(t *testing.T) (pool *pgxpool.Pool, pol *filter.Policy, a, b string, rwA, rwB *rewrite.Rewriter) {
	pool, set, pol, a, b := rt2Ledger(t)
	rwA = rewrite.New(set, []string{a, "public"}, rewrite.WithColumns(pgColumns(t, pool, a, set)))
	rwB = rewrite.New(set, []string{b, "public"}, rewrite.WithColumns(pgColumns(t, pool, b, set)))
	return pool, pol, a, b, rwA, rwB
}

// Finding 1 (strict, default exec mode). pushConditions moves `column =
// $n` into the fence on the premise that "the value is converted to the
// column's type, never the column". A parameter's type is the first one
// the server infers for it, and the WITH clause is analysed before FROM:
// once $1 is float8, `l.amount = $1` is numeric = float8, which PostgreSQL
// resolves as float8 = float8 with an implicit cast of the column. Inside
// the fence that cast runs beside the policy, on the hidden row 2, and its
// error quotes the hidden value. (The cast of a parameter to float8 is
// accepted by strict mode; the same works with any earlier use of $1.)
func TestRedTeam3ParamTypedBeforeFence(t *testing.T) {
	t.Parallel()
	pool, pol, a, b, rwA, rwB := rt3Ledger(t)
	s := &pgSubject{label: "u1", subject: &policy.Subject{ID: "u1", Tenant: "t1"}}
	for _, c := range []struct {
		mode rewrite.Mode
		sql  string
	}{
		{rewrite.Strict, `WITH p AS (SELECT $1::float8 AS v) SELECT l.id FROM ledger l WHERE l.amount = $1`},
		{rewrite.Strict, `SELECT l.id FROM (SELECT $1::float8 AS v) p, ledger l WHERE l.amount = $1`},
		{rewrite.Strict, `WITH p AS (SELECT $1::float8 AS v) SELECT l.id FROM ledger l WHERE l.amount IN ($1, 2)`},
		{rewrite.Trusted, `WITH p AS (SELECT $1::float8 AS v) SELECT l.id FROM ledger l WHERE l.amount = $1`},
	} {
		args := []any{10.0}
		ra := rt3Run(t.Context(), pool, rwA, pol, s, c.mode, c.sql, args, a)
		rb := rt3Run(t.Context(), pool, rwB, pol, s, c.mode, c.sql, args, b)
		if ra.text != rb.text || ra.refused != rb.refused {
			t.Errorf("%s: LEAK: %s\n  world A: %.200s\n  world B: %s\n  rewritten: %s", pgModeName(c.mode), c.sql, niIndent(ra.text), niIndent(rb.text), ra.sql)
		}
	}
}

// Finding 1, second form (trusted): bigint = oid casts the bigint column to
// oid, which raises "OID out of range" on the hidden rows whose pos is
// 9999999999 (x04 and x15 for u1).
func TestRedTeam3ParamTypedOid(t *testing.T) {
	t.Parallel()
	nw := niSetup(t)
	si := nw.subject("t1-member-u1")
	const sql = `WITH p AS (SELECT $1::oid AS o) SELECT c.id FROM chunks c WHERE c.pos = $1`
	args := []any{uint32(1)}
	ra := rt3Run(t.Context(), nw.pool, nw.rw[nw.a], nw.pol, nw.subjects[si], rewrite.Trusted, sql, args, nw.a)
	rb := rt3Run(t.Context(), nw.pool, nw.rw[nw.b[si]], nw.pol, nw.subjects[si], rewrite.Trusted, sql, args, nw.b[si])
	if ra.text != rb.text {
		t.Errorf("LEAK: %s\n  world A: %s\n  world B: %s\n  rewritten: %s", sql, niIndent(ra.text), niIndent(rb.text), ra.sql)
	}
}

// Finding 2 (strict, no parameter, no cast): pgcatalog calls every range
// type comparable, whatever its subtype. A range over a composite type
// compares its bounds with record_cmp, which looks up the comparison of
// each field only when the fields before it are equal: a field of type json
// raises "could not identify a comparison function for type json" exactly
// when a row's lower bound starts like the literal's. Moved into the
// fence, that runs on hidden rows: an equality oracle on another user's
// value.
const rt3SlotsPolicy = `
version: 1
resources:
  slots:
    table: slots
    tenant: tenant_id
    relations:
      shared: {table: slot_shares, tenant: tenant_id}
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: shared
        when: EXISTS (SELECT 1 FROM shared s WHERE s.slot_id = slots.id AND s.user_id = subject.id)
`

func rt3SlotsSetup(hidden string) string {
	return `CREATE TYPE comp AS (a int, b json);
CREATE TYPE comprange AS RANGE (subtype = comp);
CREATE TABLE slots (id int, tenant_id text, owner_id text, r comprange);
INSERT INTO slots VALUES (1, 't1', 'u1', comprange(ROW(1, '{}')::comp, ROW(2, '{}')::comp));
INSERT INTO slots VALUES (2, 't1', 'u2', comprange(ROW(` + hidden + `, '{}')::comp, ROW(9, '{}')::comp));
CREATE TABLE slot_shares (slot_id int, tenant_id text, user_id text);
CREATE TABLE grants (x int)`
}

func TestRedTeam3RangeOverComposite(t *testing.T) {
	t.Parallel()
	pool, base := testdb.Schema(t)
	set, pol := pgNewPolicy(t, "slots.yaml", rt3SlotsPolicy)
	a := rtSchema(t, pool, base+"_sa", rt3SlotsSetup("5"))
	b := rtSchema(t, pool, base+"_sb", rt3SlotsSetup("6"))
	rwA := rewrite.New(set, []string{a, "public"}, rewrite.WithColumns(pgColumns(t, pool, a, set)))
	rwB := rewrite.New(set, []string{b, "public"}, rewrite.WithColumns(pgColumns(t, pool, b, set)))
	s := &pgSubject{label: "u1", subject: &policy.Subject{ID: "u1", Tenant: "t1"}}
	for _, mode := range []rewrite.Mode{rewrite.Strict, rewrite.Trusted} {
		const sql = `SELECT id FROM slots WHERE r = '["(5,{})","(7,{})"]'`
		ra := rt3Run(t.Context(), pool, rwA, pol, s, mode, sql, nil, a)
		rb := rt3Run(t.Context(), pool, rwB, pol, s, mode, sql, nil, b)
		if ra.text != rb.text || ra.refused != rb.refused {
			t.Errorf("%s: LEAK: %s\n  world A: %s\n  world B: %s\n  rewritten: %s", pgModeName(mode), sql, niIndent(ra.text), niIndent(rb.text), ra.sql)
		}
	}
}

// Finding 3 (meaning): intoFence follows a FROM item named like a CTE
// into that CTE whenever one of that name was noted anywhere in the
// statement, without asking whether the name refers to it. Here the CTE
// is defined in a scalar subquery and never read; the FROM item is the
// unfiltered table notes. The ordering moves into the unread CTE's fence
// and the statement loses its ORDER BY: LIMIT 2 returns the first two
// notes in heap order, not the two nearest.
const rt3NotesPolicy = `
version: 1
resources:
  docs:
    table: docs
    tenant: tenant_id
    allow:
      - name: mine
        when: owner_id = subject.id
unfiltered: [notes]
`

const rt3NotesSetup = `CREATE TABLE docs (id int, tenant_id text, owner_id text, content text, embedding vector(3));
INSERT INTO docs VALUES (1, 't1', 'u1', 'a', '[1,0,0]');
CREATE TABLE notes (id int, embedding vector(3));
INSERT INTO notes VALUES (1, '[0,0,9]'), (2, '[0,9,0]'), (3, '[1,0,0]'), (4, '[1,0,0.1]');
CREATE TABLE grants (x int)`

func TestRedTeam3OrderMovedIntoShadowedCTE(t *testing.T) {
	t.Parallel()
	pool, base := testdb.Schema(t)
	set, pol := pgNewPolicy(t, "notes.yaml", rt3NotesPolicy)
	a := rtSchema(t, pool, base+"_na", rt3NotesSetup)
	rw := rewrite.New(set, []string{a, "public"}, rewrite.WithColumns(pgColumns(t, pool, a, set)))
	s := &pgSubject{label: "u1", subject: &policy.Subject{ID: "u1", Tenant: "t1"}}
	const sql = `SELECT n.id, (WITH notes AS (SELECT id, embedding FROM docs) SELECT 1) AS one FROM notes n ORDER BY n.embedding <-> '[1,0,0]' LIMIT 2`
	want := pgExec(t.Context(), pool, sql, nil, pgRunOpts{schema: a, timeout: 5 * time.Second, ordered: true})
	for _, mode := range []rewrite.Mode{rewrite.Strict, rewrite.Trusted} {
		got := rt3Run(t.Context(), pool, rw, pol, s, mode, sql, nil, a)
		if got.text != want.text {
			t.Errorf("%s: %s\n  ragfence:   %s\n  PostgreSQL: %s\n  rewritten: %s", pgModeName(mode), sql, niIndent(got.text), niIndent(want.text), got.sql)
		}
	}
}

// Finding 4 (meaning; an unlisted column becomes a filter): when the policy
// lists the columns and masks one, the fence selects only the listed
// columns, so PostgreSQL would refuse a condition on an unlisted column
// (column "code" does not exist). pushConditions checks the name against
// the catalog, not against what the fence selects, and moves it inside,
// where it reads the table's column: the subject filters on a column its
// view does not have.
func TestRedTeam3UnlistedColumnPushed(t *testing.T) {
	t.Parallel()
	nw := niSetup(t)
	set, pol := pgNewPolicy(t, "unlisted.yaml", strings.Replace(pgPolicy, "num, code, pos", "num, pos", 1))
	rw := rewrite.New(set, []string{nw.a, "public"}, rewrite.WithColumns(pgColumns(t, nw.pool, nw.a, set)))
	s := nw.subjects[nw.subject("t1-member-u1")]
	for _, mode := range []rewrite.Mode{rewrite.Strict, rewrite.Trusted} {
		for _, tc := range []struct{ sql, view string }{
			{`SELECT id FROM chunks WHERE code = '1'`, "SELECT id FROM (%s) v WHERE code = '1'"},
			{`SELECT c.id FROM chunks c WHERE c.code = '1'`, "SELECT c.id FROM (%s) c WHERE c.code = '1'"},
		} {
			sql := tc.sql
			got := rt3Run(t.Context(), nw.pool, rw, pol, s, mode, sql, nil, nw.a)
			// PostgreSQL over the subject's view: what SELECT * shows it.
			res, err := rw.Rewrite("SELECT * FROM chunks", rewrite.Request{Fragments: pol.Fragments(s.request()), Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			// The same statement over the view, qualified as it was written,
			// so PostgreSQL's message names the column the same way.
			want := pgExec(t.Context(), nw.pool, fmt.Sprintf(tc.view, res.SQL), res.Args, pgRunOpts{schema: nw.a, timeout: 5 * time.Second})
			if got.text != want.text {
				t.Errorf("%s: %s\n  ragfence:   %s\n  PostgreSQL over the view: %s\n  rewritten: %s", pgModeName(mode), sql, niIndent(got.text), niIndent(want.text), got.sql)
			}
		}
	}
}

// Finding 5 (meaning): moving `column = $n` into the fence also moves the
// place where the server first infers $n's type, from after the select list
// to before it. Written so, `$1::float8` in the select list makes $1 float8
// and `l.amount = $1` compares as float8 (10.0000000000000000001 equals
// 10); rewritten, the fence types $1 numeric first and the comparison is
// exact: the permitted row disappears.
func TestRedTeam3ParamTypeInferenceMoves(t *testing.T) {
	t.Parallel()
	pool, base := testdb.Schema(t)
	set, pol := pgNewPolicy(t, "ledger.yaml", rt2LedgerPolicy)
	a := rtSchema(t, pool, base+"_lp", rt2LedgerSetup(`UPDATE ledger SET amount = 10.0000000000000000001 WHERE id = 1`))
	rw := rewrite.New(set, []string{a, "public"}, rewrite.WithColumns(pgColumns(t, pool, a, set)))
	s := &pgSubject{label: "u1", subject: &policy.Subject{ID: "u1", Tenant: "t1"}}
	const sql = `SELECT l.id, $1::float8 AS v FROM ledger l WHERE l.amount = $1`
	args := []any{10.0}
	want := pgExec(t.Context(), pool, strings.Replace(sql, "FROM ledger l", "FROM (SELECT * FROM ledger WHERE id = 1) l", 1), args,
		pgRunOpts{schema: a, timeout: 5 * time.Second})
	for _, mode := range []rewrite.Mode{rewrite.Strict, rewrite.Trusted} {
		got := rt3Run(t.Context(), pool, rw, pol, s, mode, sql, args, a)
		if got.text != want.text {
			t.Errorf("%s: %s\n  ragfence:   %s\n  PostgreSQL: %s\n  rewritten: %s", pgModeName(mode), sql, niIndent(got.text), niIndent(want.text), got.sql)
		}
	}
}
