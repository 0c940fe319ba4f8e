package rewrite_test

// The fixture shared by TestNonInterference, TestSemantics and
// TestPolicyConditionFaithful: a policy (pgPolicy) over two protected
// tables, chunks and shares (shares is also the relation chunks' policy
// looks into), hand-written rows whose hidden values make error-raising
// constructs raise, an oracle of the policy written by hand in Go (it calls
// nothing of packages rewrite or filter), and a runner that records what a
// statement shows: its rows as text, or its error with SQLSTATE and text.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/pgcatalog"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// pgPolicy is the policy under test; pgVisibleChunk and pgVisibleShare are
// its Go twins.
const pgPolicy = `
version: 1
subject:
  attributes:
    clearance: integer
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, visibility, level, content, secret, num, code, pos, tags, embedding, feat]
    relations:
      shared: {table: shares, tenant: tenant_id}
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: public
        when: visibility = 'public'
      - name: shared
        when: EXISTS (SELECT 1 FROM shared s WHERE s.chunk_id = chunks.id AND s.user_id = subject.id)
      - name: admin
        when: "'admin' = ANY (subject.roles)"
    deny:
      - name: above-clearance
        when: level > subject.clearance
    mask:
      - column: secret
        unless: "'auditor' = ANY (subject.roles)"
    agents:
      summarizer:
        allow:
          - name: public
            when: visibility = 'public'
  shares:
    table: shares
    tenant: tenant_id
    allow:
      - name: mine
        when: user_id = subject.id
      - name: admin
        when: "'admin' = ANY (subject.roles)"
    agents:
      summarizer:
        allow:
          - name: mine
            when: user_id = subject.id
`

// pgSchema is created in every world's schema. No index and no ANALYZE: on
// one page per table the planner's estimates do not depend on the rows, so
// two worlds that differ only in hidden rows get the same plans.
const pgSchema = `
CREATE TABLE chunks (id text, tenant_id text, owner_id text, visibility text, level int, content text,
	secret text, num int, code text, pos bigint, tags text[], embedding vector(3), feat vector);
CREATE TABLE shares (chunk_id text, tenant_id text, user_id text, note text, n int);
ALTER TABLE chunks SET (autovacuum_enabled = off);
ALTER TABLE shares SET (autovacuum_enabled = off);
`

var pgChunkCols = []string{"id", "tenant_id", "owner_id", "visibility", "level", "content", "secret", "num", "code", "pos", "tags", "embedding", "feat"}

type pgChunk struct {
	id                 string
	tenant, owner, vis *string
	level              *int
	content, secret    *string
	num                *int
	code               *string
	pos                *int64
	tags               []string // nil: NULL
	emb, feat          []float32
}

type pgShare struct {
	chunk, tenant, user, note *string
	n                         *int
}

type pgWorld struct {
	chunks []*pgChunk
	shares []*pgShare
}

func pgS(s string) *string { return &s }
func pgI(n int) *int       { return &n }
func pgL(n int64) *int64   { return &n }

// pgBase is the data every world starts from. Hidden rows hold values that
// make the probes of TestNonInterference raise: contents that match the
// probing patterns, zero divisors, owner and code values that are not
// relation names or integers ('zed', 'q\' which is also an invalid LIKE
// pattern), subscripts out of integer range, 2-dimensional feat vectors.
func pgBase() *pgWorld {
	c := func(id, tenant, owner, vis string, level int, content, secret string, num int, code string, pos int64, tags []string, emb, feat []float32) *pgChunk {
		ch := &pgChunk{id: id, tags: tags, emb: emb, feat: feat, pos: pgL(pos)}
		opt := func(s string) *string {
			if s == "NULL" {
				return nil
			}
			return pgS(s)
		}
		ch.tenant, ch.owner, ch.vis, ch.content, ch.secret, ch.code = opt(tenant), opt(owner), opt(vis), opt(content), opt(secret), opt(code)
		if level >= 0 {
			ch.level = pgI(level)
		}
		if num >= 0 {
			ch.num = pgI(num)
		}
		return ch
	}
	v := func(xs ...float32) []float32 { return xs }
	s := func(xs ...string) []string { return xs }
	w := &pgWorld{chunks: []*pgChunk{
		// x03 comes first: a qual the planner runs before the policy meets it first.
		c("x03", "t2", "zed", "private", 0, "tenant two gamma", "s-x03", 2, "12", 2, s("b", "c"), v(0, 0, 1), v(0, 1, 0)),
		c("x01", "t1", "u1", "public", 1, "tenant one alpha", "s-x01", 3, "1", 1, s("a", "b"), v(1, 0, 0), v(1, 0, 0)),
		c("x02", "t2", "u5", "group", 1, "tenant two alpha beta", "s-x02", 0, "zz9", 9999999999, s("a"), v(0, 1, 0), v(1, 0)),
		c("x04", "t1", "u2", "private", 3, "tenant one secret plan", "s-x04", 0, "q9", 9999999999, s("c"), v(1, 1, 0), v(1, 1)),
		c("x05", "t1", "u1", "private", 1, "tenant one beta", "NULL", 5, "7", 1, s("a"), v(0, 1, 1), v(0, 0, 1)),
		c("x06", "t1", "u2", "group", 2, "tenant one gamma", "s-x06", 4, "3", 2, s("b"), v(1, 0, 1), v(1, 0, 1)),
		c("x07", "t1", `q\`, "private", 0, "tenant one delta", "s-x07", 0, "x", 1, nil, v(1, 1, 1), v(2, 1)),
		c("x08", "t1", "u3", "public", -1, "tenant one epsilon", "s-x08", 6, "8", 3, s("a", "c"), nil, v(1, 0, 0)),
		c("x09", "t2", "u5", "public", 1, "tenant two delta", "s-x09", 1, "4", 1, s("a"), v(0.5, 0.5, 0), v(0.5, 0.5, 0)),
		c("x10", "t2", "zed", "group", 2, "tenant two alpha gamma", "s-x10", 0, "zz8", 9999999999, s("c"), v(1, 0, 0), v(1, 2)),
		c("x11", "t2", "b1", "private", 0, "tenant two epsilon", "s-x11", 2, "5", 2, s("b"), v(0, 1, 0), v(0, 1, 0)),
		c("x12", "NULL", "u1", "public", 0, "no tenant alpha", "s-x12", 0, "nn", 9999999999, s("a"), v(1, 0, 0), v(1)),
		c("x13", "t3", "u1", "public", 0, "tenant three alpha", "s-x13", 0, "zz7", 1, s("a"), v(0, 0, 1), v(0, 0, 1)),
		c("x14", "t1", "a1", "private", 1, "tenant one zeta", "s-x14", 7, "2", 1, s("a", "b"), v(0, 0, 1), v(0, 0, 1)),
		c("x15", "t1", "u3", "group", 0, "tenant one alpha two", "s-x15", -1, "k", 9999999999, s("a"), v(0, 1, 0), v(3, 3)),
		c("x16", "t1", "u2", "private", 1, "tenant one theta", "s-x16", 1, "9", 1, s("a"), v(1, 0, 0), v(1, 0, 0)),
	}}
	sh := func(chunk, tenant, user, note string, n int) *pgShare {
		return &pgShare{chunk: pgS(chunk), tenant: pgS(tenant), user: pgS(user), note: pgS(note), n: pgI(n)}
	}
	w.shares = []*pgShare{
		sh("x16", "t1", "u1", "for u1", 1),
		sh("x15", "t1", "u2", "for u2", 0),
		sh("x04", "t1", "u3", "tenant one note", 0),
		sh("x03", "t2", "u5", "tenant two note", 0),
		sh("x10", "t2", "u5", "tenant two alpha", 2),
		sh("x06", "t2", "u1", "cross tenant", 0), // another tenant's share grants nothing in t1
		sh("x05", "t1", "u2", "zed", 0),
	}
	return w
}

// ---------------------------------------------------------------------------
// Subjects and the oracle.

type pgSubject struct {
	label   string
	subject *policy.Subject
	agent   string
}

func pgSubjects() []*pgSubject {
	sub := func(id, tenant string, roles []string, clearance any) *policy.Subject {
		s := &policy.Subject{ID: id, Tenant: tenant, Roles: roles, Attributes: map[string]any{}}
		if clearance != nil {
			s.Attributes["clearance"] = clearance
		}
		return s
	}
	return []*pgSubject{
		{label: "t1-member-u1", subject: sub("u1", "t1", nil, 2)},
		{label: "t1-member-u2-no-clearance", subject: sub("u2", "t1", nil, nil)},
		{label: "t1-admin", subject: sub("a1", "t1", []string{"admin"}, 3)},
		{label: "t1-auditor-u3", subject: sub("u3", "t1", []string{"auditor"}, 2)},
		{label: "t1-agent-for-u1", subject: sub("u1", "t1", nil, 3), agent: "summarizer"},
		{label: "t2-member-u5", subject: sub("u5", "t2", nil, 1)},
		{label: "t2-admin-auditor", subject: sub("b1", "t2", []string{"admin", "auditor"}, 1)},
	}
}

func (s *pgSubject) String() string { return s.label }

func (s *pgSubject) request() filter.Request {
	return filter.Request{Subject: s.subject, Agent: s.agent}
}

func (s *pgSubject) clearance() *int {
	switch c := s.subject.Attributes["clearance"].(type) {
	case int:
		return &c
	}
	return nil
}

// Three-valued logic is differential_test.go's (dtAnd, dtOr, ...).

// pgVisibleChunk is pgPolicy's chunks rule for s, by hand: the tenant, some
// allow rule, no deny rule (a deny without its attribute denies every row,
// a NULL deny denies), and for the agent its grant too.
func pgVisibleChunk(w *pgWorld, s *pgSubject, c *pgChunk) bool {
	sub := s.subject
	shared := dtFalse
	for _, sh := range w.shares {
		if dtAnd(dtEqS(sh.tenant, sub.Tenant), dtEqS(sh.chunk, c.id), dtEqS(sh.user, sub.ID)) == dtTrue {
			shared = dtTrue
		}
	}
	allow := dtOr(dtEqS(c.owner, sub.ID), dtEqS(c.vis, "public"), shared, dtOf(slices.Contains(sub.Roles, "admin")))
	deny := dtTrue
	if cl := s.clearance(); cl != nil {
		deny = dtNull
		if c.level != nil {
			deny = dtOf(*c.level > *cl)
		}
	}
	parts := []dtTri{dtEqS(c.tenant, sub.Tenant), allow, dtNot(deny)}
	if s.agent == "summarizer" {
		parts = append(parts, dtEqS(c.vis, "public"))
	}
	return dtAnd(parts...) == dtTrue
}

func pgVisibleShare(s *pgSubject, sh *pgShare) bool {
	sub := s.subject
	parts := []dtTri{dtEqS(sh.tenant, sub.Tenant), dtOr(dtEqS(sh.user, sub.ID), dtOf(slices.Contains(sub.Roles, "admin")))}
	if s.agent == "summarizer" {
		parts = append(parts, dtEqS(sh.user, sub.ID))
	}
	return dtAnd(parts...) == dtTrue
}

func pgSeesSecret(s *pgSubject) bool { return slices.Contains(s.subject.Roles, "auditor") }

// pgView is what s may see of w: the visible chunks (with secret as the
// mask leaves it) and shares, each as text.
func pgView(w *pgWorld, s *pgSubject) (chunks, shares []string) {
	for _, c := range w.chunks {
		if pgVisibleChunk(w, s, c) {
			cc := *c
			if !pgSeesSecret(s) {
				cc.secret = nil
			}
			chunks = append(chunks, fmt.Sprint(cc.row()))
		}
	}
	for _, sh := range w.shares {
		if pgVisibleShare(s, sh) {
			shares = append(shares, fmt.Sprint(sh.row()))
		}
	}
	return chunks, shares
}

func (w *pgWorld) visibleIDs(s *pgSubject) []string {
	var ids []string
	for _, c := range w.chunks {
		if pgVisibleChunk(w, s, c) {
			ids = append(ids, c.id)
		}
	}
	return ids
}

// pgHide returns a copy of w in which only what s may not see differs:
// every other hidden chunk and share is deleted, the rest get values that
// raise nothing (non-zero divisors, integer codes, contents no probe
// matches, 3-dimensional feat, subscripts in range, owner 'yak'), and the
// secret masked from s changes on every row.
func pgHide(w *pgWorld, s *pgSubject) *pgWorld {
	out := &pgWorld{}
	n := 0
	for _, c := range w.chunks {
		cc := *c
		if pgVisibleChunk(w, s, c) {
			if !pgSeesSecret(s) {
				cc.secret = pgS("m-" + c.id)
			}
			out.chunks = append(out.chunks, &cc)
			continue
		}
		n++
		if n%2 == 1 && c.id != "x03" { // x03 is changed, so the trusted example shows another name
			continue
		}
		cc.owner = pgS("yak")
		cc.content = pgS("zz changed " + c.id)
		cc.secret = pgS("h-" + c.id)
		cc.num = pgI(7)
		cc.code = pgS("5")
		cc.pos = pgL(1)
		cc.tags = []string{"z"}
		cc.emb = []float32{0, 0, 1}
		cc.feat = []float32{1, 1, 1}
		out.chunks = append(out.chunks, &cc)
	}
	n = 0
	for _, sh := range w.shares {
		ss := *sh
		if pgVisibleShare(s, sh) {
			out.shares = append(out.shares, &ss)
			continue
		}
		n++
		if n%2 == 1 {
			continue
		}
		// The user stays: another user's share must go on granting nothing to s.
		ss.note = pgS("zz changed")
		ss.n = pgI(9)
		out.shares = append(out.shares, &ss)
	}
	return out
}

func (c *pgChunk) row() []any {
	txt := func(s *string) any {
		if s == nil {
			return nil
		}
		return *s
	}
	var level, num, pos, tags, emb, feat any
	if c.level != nil {
		level = int32(*c.level)
	}
	if c.num != nil {
		num = int32(*c.num)
	}
	if c.pos != nil {
		pos = *c.pos
	}
	if c.tags != nil {
		tags = c.tags
	}
	if c.emb != nil {
		emb = pgvector.NewVector(c.emb)
	}
	if c.feat != nil {
		feat = pgvector.NewVector(c.feat)
	}
	return []any{c.id, txt(c.tenant), txt(c.owner), txt(c.vis), level, txt(c.content), txt(c.secret), num, txt(c.code), pos, tags, emb, feat}
}

func (sh *pgShare) row() []any {
	txt := func(s *string) any {
		if s == nil {
			return nil
		}
		return *s
	}
	var n any
	if sh.n != nil {
		n = int32(*sh.n)
	}
	return []any{txt(sh.chunk), txt(sh.tenant), txt(sh.user), txt(sh.note), n}
}

// pgLoad creates schema and w's tables in it.
func pgLoad(t *testing.T, pool *pgxpool.Pool, schema string, w *pgWorld) {
	t.Helper()
	ctx := t.Context()
	q := pgx.Identifier{schema}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+q+"; SET search_path = "+q+", public;"+pgSchema+"RESET search_path"); err != nil {
		t.Fatalf("schema %s: %v", schema, err)
	}
	var rows [][]any
	for _, c := range w.chunks {
		rows = append(rows, c.row())
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "chunks"}, pgChunkCols, pgx.CopyFromRows(rows)); err != nil {
		t.Fatalf("copy chunks: %v", err)
	}
	rows = nil
	for _, s := range w.shares {
		rows = append(rows, s.row())
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "shares"}, []string{"chunk_id", "tenant_id", "user_id", "note", "n"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatalf("copy shares: %v", err)
	}
}

// pgNewPolicy parses and compiles a policy.
func pgNewPolicy(t *testing.T, name, yaml string) (*policy.Set, *filter.Policy) {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: name, Data: []byte(yaml)})
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	pol, err := filter.Compile(set)
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	return set, pol
}

// ---------------------------------------------------------------------------
// Observations.

// pgObs is everything a subject observes of one statement, as text:
// the rewriter's refusal, or the rows, or the error (SQLSTATE, message,
// detail, hint, position).
type pgObs struct {
	refused bool
	err     bool
	rows    int
	text    string
	sql     string // the rewritten statement, for messages
}

// pgRunOpts says how to run a statement.
type pgRunOpts struct {
	schema  string // the world: search_path for the statement
	ordered bool   // keep the row order (the statement has ORDER BY)
	timeout time.Duration
}

// pgExec runs sql with args inside a read-only transaction with a statement
// timeout, JIT off and search_path set to the world's schema, and records
// what it shows.
func pgExec(ctx context.Context, pool *pgxpool.Pool, sql string, args []any, o pgRunOpts) pgObs {
	obs := pgObs{sql: sql}
	fail := func(err error) pgObs {
		obs.err = true
		obs.text = pgErrText(err)
		return obs
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fail(fmt.Errorf("acquire: %w", err))
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fail(fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	set := fmt.Sprintf("SET LOCAL search_path = %s, public; SET LOCAL statement_timeout = %d; SET LOCAL jit = off",
		pgx.Identifier{o.schema}.Sanitize(), o.timeout.Milliseconds())
	if _, err := tx.Exec(ctx, set); err != nil {
		return fail(fmt.Errorf("set: %w", err))
	}
	qargs := append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)
	rows, err := tx.Query(ctx, sql, qargs...)
	if err != nil {
		return fail(err)
	}
	var lines []string
	for rows.Next() {
		raw := rows.RawValues()
		cells := make([]string, len(raw))
		for i, b := range raw {
			if b == nil {
				cells[i] = "NULL"
			} else {
				cells[i] = strconv.Quote(string(b))
			}
		}
		lines = append(lines, strings.Join(cells, ","))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if !o.ordered {
		sort.Strings(lines)
	}
	obs.rows = len(lines)
	obs.text = fmt.Sprintf("%d rows\n%s", len(lines), strings.Join(lines, "\n"))
	return obs
}

func pgErrText(err error) string {
	if pe, ok := err.(*pgconn.PgError); ok {
		return fmt.Sprintf("ERROR %s: %s | detail=%q hint=%q position=%d", pe.Code, pe.Message, pe.Detail, pe.Hint, pe.Position)
	}
	return "ERROR (client): " + err.Error()
}

// pgRewriteRun rewrites sql for s with rw and runs it in the world schema.
func pgRewriteRun(ctx context.Context, pool *pgxpool.Pool, rw *rewrite.Rewriter, pol *filter.Policy, s *pgSubject,
	mode rewrite.Mode, sql string, o pgRunOpts,
) pgObs {
	res, err := rw.Rewrite(sql, rewrite.Request{Fragments: pol.Fragments(s.request()), Mode: mode})
	if err != nil {
		return pgObs{refused: true, text: fmt.Sprintf("refused %s: %v", rewrite.CodeOf(err), err)}
	}
	return pgExec(ctx, pool, res.SQL, res.Args, o)
}

func pgModeName(m rewrite.Mode) string {
	if m == rewrite.Trusted {
		return "trusted"
	}
	return "strict"
}

func pgPick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// pgParen wraps s in parentheses with probability p.
func pgParen(r *rand.Rand, p float64, s string) string {
	if r.Float64() < p {
		return "(" + s + ")"
	}
	return s
}

// pgColumns reads the catalog's columns of set's tables in schema, as
// filter.Wrap does on its first statement, for rewrite.WithColumns.
func pgColumns(t *testing.T, pool *pgxpool.Pool, schema string, set *policy.Set) map[string][]rewrite.Column {
	t.Helper()
	var cols map[string][]rewrite.Column
	err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "SELECT set_config('search_path', $1, true)", pgx.Identifier{schema}.Sanitize()+", public"); err != nil {
			return err
		}
		var err error
		cols, err = pgcatalog.Resources(t.Context(), tx, set)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) == 0 {
		t.Fatalf("no columns in the catalog for schema %s", schema)
	}
	return cols
}
