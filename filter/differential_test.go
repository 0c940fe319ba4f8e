package filter_test

// Differential test: for generated rows and requests, the rows a compiled
// fragment selects on the real database must be exactly the rows an
// independent evaluator says are visible. The evaluator below is plain Go
// over the same rows, written by hand from the policy's YAML text and
// PostgreSQL's three-valued logic; it calls nothing of package filter.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

// diffPolicy is the policy under test. Every rule has a hand-written Go twin
// in diffAllow, diffDeny, diffAgents and diffMask below.
const diffPolicy = `
version: 1
subject:
  attributes:
    clearance: integer
context:
  timezone: Europe/Berlin
resources:
  docs:
    table: docs
    tenant: tenant_id
    relations:
      grants: {table: grants, tenant: tenant_id}
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: group-acl
        when: acl_groups && subject.groups
      - name: tenant-admin
        when: "'admin' = ANY (subject.roles)"
      - name: shared-with-me
        when: EXISTS (SELECT 1 FROM grants g WHERE g.doc_id = docs.id AND g.user_id = subject.id)
      - name: public-english
        when: visibility = 'public' AND meta->>'lang' = 'en'
      - name: published-sources
        when: source IN ('wiki', 'handbook') AND visibility <> 'private'
      - name: office-hours
        when: visibility = 'internal' AND context.hour BETWEEN 9 AND 17
      - name: eu-office-network
        when: region = 'eu' AND context.ip << '10.0.0.0/8'::inet
    deny:
      - name: above-clearance
        when: classification > subject.clearance
      - name: embargoed
        when: "meta ? 'embargo'"
    mask:
      - column: contact
        unless: owner_id = subject.id OR ('pii-reader' = ANY (subject.roles) AND region <> 'us')
    agents:
      summarizer:
        allow:
          - name: public-or-wiki
            when: visibility = 'public' OR source = 'wiki'
        deny:
          - name: secret
            when: classification >= 2
      night-bot:
        allow:
          - name: off-hours
            when: context.hour < 9 OR context.hour > 17
`

const diffSchema = `
CREATE TABLE docs (
	id int PRIMARY KEY, tenant_id text, owner_id text, visibility text, acl_groups text[],
	classification int NULL, source text NULL, region text NULL, meta jsonb, contact text);
CREATE TABLE grants (tenant_id text, doc_id int, user_id text);
`

// ---------------------------------------------------------------------------
// The test.

type diffResult struct {
	ran bool
	ids []int
}

func TestDifferential(t *testing.T) {
	t.Parallel()
	start := time.Now()
	pool, _ := testdb.Schema(t)

	set, err := policy.Parse(policy.Source{Name: "differential.yaml", Data: []byte(diffPolicy)})
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	pol, err := filter.Compile(set)
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(20250611, 7))
	docs := genDocs(rng, 500)
	grants := genGrants(rng, docs, 400)
	w := &diffWorld{docs: docs, byID: map[int]*diffDoc{}, grantsOf: map[int][]diffGrant{}}
	for _, d := range docs {
		w.byID[d.ID] = d
	}
	for _, g := range grants {
		w.grantsOf[g.DocID] = append(w.grantsOf[g.DocID], g)
	}
	loadDiffData(t, pool, docs, grants)

	reqs := withVariants(genRequests(rng, 200))
	results := make([]diffResult, len(reqs))
	var queries, comparisons, maskChecks, failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 15 {
			t.Errorf(format, args...)
		}
	}

	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				q := reqs[i]
				ids, ok := runDiffRequest(t, pool, pol, w, berlin, q, &queries, &comparisons, &maskChecks, fail)
				results[i] = diffResult{ran: ok, ids: ids}
			}
		})
	}
	for i := range reqs {
		work <- i
	}
	close(work)
	wg.Wait()

	// Monotonicity: dropping an attribute (or the agent) never shows more.
	var props int
	for i, q := range reqs {
		if q.parent < 0 || !results[i].ran || !results[q.parent].ran {
			continue
		}
		p, c := results[q.parent].ids, results[i].ids
		small, big, what := c, p, "the variant sees rows its parent does not"
		if !q.childIsSubset {
			small, big, what = p, c, "the agent sees rows its user does not"
		}
		props++
		if extra := minus(small, big); len(extra) > 0 {
			fail("%s\n  parent: %s\n  variant: %s\n  extra ids: %v", what, reqs[q.parent], q, extra)
		}
	}

	var refused, empty, seen int
	for _, r := range results {
		switch {
		case !r.ran:
			refused++
		case len(r.ids) == 0:
			empty++
		default:
			seen += len(r.ids)
		}
	}
	t.Logf("%d rows, %d grants, %d requests (%d generated + variants; %d refused, %d empty, %d rows seen in all), %d queries, %d id-set comparisons, %d masked values checked, %d subset properties, in %v",
		len(docs), len(grants), len(reqs), 201, refused, empty, seen, queries.Load(), comparisons.Load(), maskChecks.Load(), props, time.Since(start).Round(time.Millisecond))
	if n := failures.Load(); n > 15 {
		t.Errorf("... and %d more failures", n-15)
	}
}

func loadDiffData(t *testing.T, pool *pgxpool.Pool, docs []*diffDoc, grants []diffGrant) {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, diffSchema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	nullable := func(p any) any {
		switch x := p.(type) {
		case *string:
			if x == nil {
				return nil
			}
			return *x
		case *int64:
			if x == nil {
				return nil
			}
			return int32(*x)
		}
		panic(p)
	}
	rows := make([][]any, 0, len(docs))
	for _, d := range docs {
		var acl, meta any
		if !d.ACLNull {
			acl = d.ACL
		}
		if d.Meta != nil {
			meta = d.Meta.JSON()
		}
		rows = append(rows, []any{int32(d.ID), nullable(d.Tenant), nullable(d.Owner), nullable(d.Visibility), acl,
			nullable(d.Classification), nullable(d.Source), nullable(d.Region), meta, nullable(d.Contact)})
	}
	cols := []string{"id", "tenant_id", "owner_id", "visibility", "acl_groups", "classification", "source", "region", "meta", "contact"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"docs"}, cols, pgx.CopyFromRows(rows)); err != nil {
		t.Fatalf("copy docs: %v", err)
	}
	grows := make([][]any, 0, len(grants))
	for _, g := range grants {
		grows = append(grows, []any{nullable(g.Tenant), int32(g.DocID), nullable(g.User)})
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"grants"}, []string{"tenant_id", "doc_id", "user_id"}, pgx.CopyFromRows(grows)); err != nil {
		t.Fatalf("copy grants: %v", err)
	}
	// The database must agree with the evaluator about the data itself.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM docs WHERE meta ? 'embargo'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, d := range docs {
		if hasKey(d.Meta, "embargo") == tTrue {
			want++
		}
	}
	if n != want {
		t.Fatalf("data check: %d rows have meta ? 'embargo' in the database, the evaluator says %d", n, want)
	}
}

// runDiffRequest runs one request through the fragment and the evaluator and
// compares them; it returns the ids the database selected.
func runDiffRequest(t *testing.T, pool *pgxpool.Pool, pol *filter.Policy, w *diffWorld, berlin *time.Location,
	q *diffReq, queries, comparisons, maskChecks *atomic.Int64, fail func(string, ...any)) ([]int, bool) {
	ctx := t.Context()
	req := filter.Request{Subject: q.subject, Context: q.ctx, Agent: q.agent, Alias: "d"}
	f, err := pol.Fragment("docs", req)

	// Errors first.
	_, granted := diffAgents[q.agent]
	noSubject := q.subject == nil || q.subject.Tenant == ""
	switch {
	case noSubject:
		code := filter.CodeOf(err)
		if f != nil || !(code == filter.CodeNoSubject || (!granted && q.agent != "" && code == filter.CodeAgentNotGranted)) {
			fail("%s: want a no_subject error, got fragment %v, err %v", q, f != nil, err)
		}
		if code == filter.CodeNoSubject && !errors.Is(err, filter.ErrNoSubject) {
			fail("%s: errors.Is(err, ErrNoSubject) is false for %v", q, err)
		}
		return nil, false
	case q.agent != "" && !granted:
		if f != nil || filter.CodeOf(err) != filter.CodeAgentNotGranted || !errors.Is(err, filter.ErrAgentNotGranted) {
			fail("%s: want an agent_not_granted error, got fragment %v, err %v", q, f != nil, err)
		}
		return nil, false
	case err != nil:
		fail("%s: Fragment: %v", q, err)
		return nil, false
	}

	e := envOf(q, berlin)
	var want []int
	wantContact := map[int]*string{}
	for _, d := range w.docs {
		if w.visible(d, e) {
			want = append(want, d.ID)
			wantContact[d.ID] = w.contactOf(d, e)
		}
	}
	if staticallyDenied(e) != (f.Outcome == filter.AlwaysDenied) {
		fail("%s: Outcome %v (%s), the evaluator says statically denied = %v", q, f.Outcome, f.Reason, staticallyDenied(e))
	}
	if f.Outcome == filter.AlwaysDenied && len(want) > 0 {
		fail("%s: Outcome AlwaysDenied but the evaluator sees %v", q, want)
	}
	sqlText := f.SQL(1)
	if strings.Contains(sqlText, "'"+q.subject.Tenant+"'") || (q.subject.ID != "" && strings.Contains(sqlText, "'"+q.subject.ID+"'")) {
		fail("%s: a subject value is written into the SQL text: %s", q, sqlText)
	}

	// 1. SQL(1) with $n placeholders.
	stmt := "SELECT id FROM docs d WHERE " + sqlText + " ORDER BY id"
	got, err := queryIDs(ctx, pool, stmt, f.Args())
	queries.Add(1)
	if err != nil {
		fail("%s: query: %v\n  sql: %s\n  args: %v", q, err, stmt, f.Args())
		return nil, false
	}
	compareIDs(w, e, q, stmt, f.Args(), want, got, comparisons, fail)

	// 2. The squirrel path (? placeholders, ?? for jsonb ?), with the masked
	// column and the tenant of every row.
	sb := squirrel.Select("d.id", "d.tenant_id").Column(f.Column("contact")).From("docs d").
		Where(f).OrderBy("d.id").PlaceholderFormat(squirrel.Dollar)
	stmt2, args2, err := sb.ToSql()
	if err != nil {
		fail("%s: squirrel: %v", q, err)
		return got, true
	}
	rows, err := pool.Query(ctx, stmt2, args2...)
	queries.Add(1)
	if err != nil {
		fail("%s: query: %v\n  sql: %s\n  args: %v", q, err, stmt2, args2)
		return got, true
	}
	var got2 []int
	for rows.Next() {
		var id int
		var tenant, contact *string
		if err := rows.Scan(&id, &tenant, &contact); err != nil {
			fail("%s: scan: %v", q, err)
			break
		}
		got2 = append(got2, id)
		if tenant == nil || *tenant != q.subject.Tenant {
			fail("%s: row %d of tenant %v returned to tenant %q\n  sql: %s\n  args: %v", q, id, deref(tenant), q.subject.Tenant, stmt2, args2)
		}
		exp, ok := wantContact[id]
		if !ok {
			continue // reported by the id comparison
		}
		maskChecks.Add(1)
		if (exp == nil) != (contact == nil) || (exp != nil && *exp != *contact) {
			d := w.byID[id]
			fail("%s: row %d: contact reads %v, want %v (mask condition %v, row owner=%v region=%v)\n  sql: %s\n  args: %v",
				q, id, deref(contact), deref(exp), diffMask.eval(w, d, e), deref(d.Owner), deref(d.Region), stmt2, args2)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		fail("%s: rows: %v", q, err)
	}
	compareIDs(w, e, q, stmt2, args2, want, got2, comparisons, fail)

	// 3. The table's own name as alias, after an argument of the query's own.
	if q.withOtherAlias {
		req.Alias = ""
		f3, err := pol.Fragment("docs", req)
		if err != nil {
			fail("%s: Fragment without alias: %v", q, err)
			return got, true
		}
		stmt3 := "SELECT id FROM docs WHERE id >= $1 AND " + f3.SQL(2) + " ORDER BY id"
		args3 := append([]any{int32(0)}, f3.Args()...)
		got3, err := queryIDs(ctx, pool, stmt3, args3)
		queries.Add(1)
		if err != nil {
			fail("%s: query: %v\n  sql: %s\n  args: %v", q, err, stmt3, args3)
			return got, true
		}
		compareIDs(w, e, q, stmt3, args3, want, got3, comparisons, fail)
	}
	return got, true
}

func queryIDs(ctx context.Context, pool *pgxpool.Pool, stmt string, args []any) ([]int, error) {
	rows, err := pool.Query(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

func compareIDs(w *diffWorld, e *diffEnv, q *diffReq, stmt string, args []any, want, got []int, comparisons *atomic.Int64, fail func(string, ...any)) {
	comparisons.Add(1)
	if slices.Equal(want, got) {
		return
	}
	var b strings.Builder
	describe := func(ids []int) {
		for _, id := range ids {
			d := w.byID[id]
			if d == nil {
				fmt.Fprintf(&b, "\n    %d: not a generated row", id)
				continue
			}
			fmt.Fprintf(&b, "\n    %d: %s", id, w.explain(d, e))
		}
	}
	fmt.Fprintf(&b, "%s: the database and the evaluator disagree\n  sql: %s\n  args: %v", q, stmt, args)
	missing, extra := minus(want, got), minus(got, want)
	fmt.Fprintf(&b, "\n  evaluator sees, database does not: %v", missing)
	describe(missing)
	fmt.Fprintf(&b, "\n  database returns, evaluator does not: %v", extra)
	describe(extra)
	fail("%s", b.String())
}

// explain dumps a row and what each rule evaluates to for it.
func (w *diffWorld) explain(d *diffDoc, e *diffEnv) string {
	var b strings.Builder
	meta := "NULL"
	if d.Meta != nil {
		meta = d.Meta.JSON()
	}
	fmt.Fprintf(&b, "tenant=%v owner=%v vis=%v acl=%v(null=%v) class=%v source=%v region=%v meta=%s grants=%v |",
		deref(d.Tenant), deref(d.Owner), deref(d.Visibility), d.ACL, d.ACLNull, derefI(d.Classification),
		deref(d.Source), deref(d.Region), meta, w.grantsOf[d.ID])
	rules := func(kind string, rs []diffRule) {
		for _, r := range rs {
			if e.active(r) {
				fmt.Fprintf(&b, " %s %s=%v", kind, r.name, r.eval(w, d, e))
			} else {
				fmt.Fprintf(&b, " %s %s=inactive", kind, r.name)
			}
		}
	}
	rules("allow", diffAllow)
	rules("deny", diffDeny)
	if e.agent != "" {
		rules("agent-allow", diffAgents[e.agent].allow)
		rules("agent-deny", diffAgents[e.agent].deny)
	}
	return b.String()
}

func (g diffGrant) String() string {
	return fmt.Sprintf("{%v %d %v}", deref(g.Tenant), g.DocID, deref(g.User))
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

func derefI(n *int64) string {
	if n == nil {
		return "NULL"
	}
	return fmt.Sprint(*n)
}

// minus returns the ids of a not in b.
func minus(a, b []int) []int {
	var out []int
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
