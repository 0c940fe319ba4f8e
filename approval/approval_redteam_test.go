package approval_test

// Red-team tests of the approval promises (issue 13). A failing test is a
// finding; a passing one is a defence that holds, kept as a regression
// test. Each test is bounded well under 10 s.

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

func redteamWatch(t *testing.T, dsn string) *approval.Watcher {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	w, err := approval.Watch(context.Background(), approval.WatchConfig{ConnConfig: cc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// FINDING (fail open, low): TRUNCATE fires no row trigger, so every server
// keeps the approvals it had in force, and keeps lifting their rules until
// each one's window ends or the server happens to reconnect. An operator
// who empties the table to withdraw every approval at once (there is no
// API to withdraw one) is not heard.
func TestRedteamTruncatedApprovalsStayInForce(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	w := redteamWatch(t, dsn)
	target := approval.Target{Tenant: "acme", Subject: "trunc-user", Agent: "summarizer", Resource: "chunks", Rule: "classified"}
	if _, err := approval.NewStore(pool).Grant(ctx, target, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "ops", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the grant is heard", func() bool { _, ok := w.InForce(target, time.Now()); return ok })
	if _, err := pool.Exec(ctx, "TRUNCATE ragfence.approvals"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	f, err := w.For(target.Tenant, target.Subject, target.Agent)
	if err != nil {
		t.Fatal(err)
	}
	if f(target.Resource, target.Rule) {
		t.Error("1.5 s after TRUNCATE ragfence.approvals the watcher still lifts the rule: approvals removed from the table stay in force")
	}
}

// DEFENCE: concurrent approve and deny of one request: exactly one wins;
// a decided request can be decided no more; another tenant's user with the
// same subject id gets not found.
func TestRedteamConcurrentDecisions(t *testing.T) {
	_, pool := migrated(t)
	ctx := context.Background()
	s := approval.NewStore(pool)
	target := approval.Target{Tenant: "acme", Subject: "race-user", Agent: "summarizer", Resource: "chunks", Rule: "classified"}
	req, err := s.Request(ctx, target, "", time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decide(ctx, req.ID, true, approval.Decider{Tenant: "globex", Subject: "race-user", By: "race-user"}); approval.CodeOf(err) != approval.CodeNotFound {
		t.Fatalf("the same subject id of another tenant decided: %v", err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Decide(ctx, req.ID, i%2 == 0, approval.Decider{Tenant: "acme", Subject: "race-user", By: "race-user"}); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d decisions of one request succeeded, want 1", wins.Load())
	}
}

// DEFENCE: a closed watcher answers stale, never "nothing approved" nor
// the last state.
func TestRedteamClosedApprovalWatcherFailsClosed(t *testing.T) {
	dsn, _ := migrated(t)
	w := redteamWatch(t, dsn)
	if _, err := w.For("acme", "u", "summarizer"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := w.For("acme", "u", "summarizer"); approval.CodeOf(err) != approval.CodeStale {
		t.Errorf("after Close: %v, want %s", err, approval.CodeStale)
	}
}

// DEFENCE: without ragfence's tables the watcher does not start and the
// one-off lookup (ragfence query) is an error, not "nothing approved"
// silently mixed with "everything".
func TestRedteamApprovalsWithoutSchemaFail(t *testing.T) {
	dsn := testdb.Database(t)
	cc, _ := pgx.ParseConfig(dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w, err := approval.Watch(ctx, approval.WatchConfig{ConnConfig: cc}); err == nil {
		w.Close()
		t.Error("an approval watcher started without ragfence.approvals")
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if f, err := approval.NewStore(pool).InForceFor(ctx, "acme", "u", "summarizer"); err == nil || f != nil {
		t.Error("InForceFor without the table answered a lookup")
	}
}

const twoResourcePolicy = `version: 1
resources:
  docs_a:
    table: docs_a
    tenant: tenant_id
    allow:
      - name: all
        when: "true"
    agents:
      summarizer:
        allow:
          - name: all
            when: "true"
        approval:
          - name: classified
            when: classification >= 2
            ttl: 30m
  docs_b:
    table: docs_b
    tenant: tenant_id
    allow:
      - name: all
        when: "true"
    agents:
      summarizer:
        allow:
          - name: all
            when: "true"
        approval:
          - name: classified
            when: classification >= 2
            ttl: 30m
`

// DEFENCE (rewrite path, filter.Wrap): an approval granted for resource A's
// rule lifts only A's, not B's rule of the same name, nor another user's
// or agent's; a NULL condition withholds its row; a statement joining A and
// B is filtered per table.
func TestRedteamRewritePathApprovalScope(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		CREATE TABLE docs_a (id int, tenant_id text, classification int);
		CREATE TABLE docs_b (id int, tenant_id text, classification int);
		INSERT INTO docs_a VALUES (1, 'acme', 0), (2, 'acme', 3), (3, 'acme', NULL), (4, 'globex', 3);
		INSERT INTO docs_b VALUES (1, 'acme', 0), (2, 'acme', 3), (3, 'acme', NULL), (4, 'globex', 3);`); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Parse(policy.Source{Name: "two.yaml", Data: []byte(twoResourcePolicy)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	w := redteamWatch(t, dsn)
	s := approval.NewStore(pool)
	a := approval.Target{Tenant: "acme", Subject: "ann", Agent: "summarizer", Resource: "docs_a", Rule: "classified"}
	if _, err := s.Grant(ctx, a, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "ops", ""); err != nil {
		t.Fatal(err)
	}
	// Decoys: the same rule for another user, another tenant's ann, docs_b
	// for another agent.
	for _, d := range []approval.Target{
		{Tenant: "acme", Subject: "bob", Agent: "summarizer", Resource: "docs_b", Rule: "classified"},
		{Tenant: "globex", Subject: "ann", Agent: "summarizer", Resource: "docs_b", Rule: "classified"},
		{Tenant: "acme", Subject: "ann", Agent: "crawler", Resource: "docs_b", Rule: "classified"},
	} {
		if _, err := s.Grant(ctx, d, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "ops", ""); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "grants heard", func() bool { _, ok := w.InForce(a, time.Now()); return ok })
	time.Sleep(50 * time.Millisecond)
	approved, err := w.For("acme", "ann", "summarizer")
	if err != nil {
		t.Fatal(err)
	}
	db := filter.Wrap(pool, p)
	qctx := filter.WithApproved(filter.WithAgent(filter.WithSubject(ctx, &policy.Subject{ID: "ann", Tenant: "acme"}), "summarizer"), approved)
	ids := func(sql string) []int {
		t.Helper()
		rows, err := db.Query(qctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		return got
	}
	if got := ids("SELECT id FROM docs_a"); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("docs_a with its rule approved: %v, want [1 2 3] (the approval lifts the rule, NULL rows included; never globex's 4)", got)
	}
	if got := ids("SELECT id FROM docs_b"); !slices.Equal(got, []int{1}) {
		t.Errorf("docs_b, whose rule of the same name is not approved: %v, want [1] (row 3's NULL condition withholds it)", got)
	}
	if got := ids("SELECT b.id FROM docs_a a JOIN docs_b b USING (id)"); !slices.Equal(got, []int{1}) {
		t.Errorf("join: %v, want [1]", got)
	}
	// The SQL text is the same approved or not.
	sqlOn, _, err := db.Rewrite(qctx, "SELECT id FROM docs_a")
	if err != nil {
		t.Fatal(err)
	}
	off := filter.WithApproved(qctx, func(string, string) bool { return false })
	sqlOff, _, err := db.Rewrite(off, "SELECT id FROM docs_a")
	if err != nil {
		t.Fatal(err)
	}
	if sqlOn != sqlOff {
		t.Errorf("the statement text depends on the approval state:\n%s\n%s", sqlOn, sqlOff)
	}
}

// FINDING (rewrite path, ttl): Watcher.For, which filter.WithApproved
// documents as what a server passes, freezes the clock at the call: the
// function it returns keeps answering "approved" after the approval's
// window has ended, and after the watcher is closed (stale). A context
// built once for an agent's session (filter.WithApproved) keeps the rows
// visible past the ttl, for every statement run on it.
func TestRedteamForClosureOutlivesTTL(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE docs_a (id int, tenant_id text, classification int);
		INSERT INTO docs_a VALUES (1, 'acme', 0), (2, 'acme', 3);`); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Parse(policy.Source{Name: "two.yaml", Data: []byte(twoResourcePolicy)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	w := redteamWatch(t, dsn)
	target := approval.Target{Tenant: "acme", Subject: "sess", Agent: "summarizer", Resource: "docs_a", Rule: "classified"}
	end := time.Now().Add(time.Second)
	if _, err := approval.NewStore(pool).Grant(ctx, target, time.Now().Add(-time.Minute), end, "ops", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "grant heard", func() bool { _, ok := w.InForce(target, time.Now()); return ok })
	approved, err := w.For("acme", "sess", "summarizer")
	if err != nil {
		t.Fatal(err)
	}
	db := filter.Wrap(pool, p)
	session := filter.WithApproved(filter.WithAgent(filter.WithSubject(ctx, &policy.Subject{ID: "sess", Tenant: "acme"}), "summarizer"), approved)
	count := func() (n int) {
		if err := db.QueryRow(session, "SELECT count(*) FROM docs_a").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 2 {
		t.Fatalf("within the window: %d rows, want 2", n)
	}
	time.Sleep(time.Until(end) + 300*time.Millisecond)
	if approved(target.Resource, target.Rule) {
		t.Errorf("the function For returned still says approved %s after the window ended", time.Since(end).Round(time.Millisecond))
	}
	if n := count(); n != 1 {
		t.Errorf("after the window: the session still reads %d rows, want 1 (the classified row withheld again)", n)
	}
	w.Close()
	if approved(target.Resource, target.Rule) {
		t.Error("the function For returned still says approved after its watcher closed (stale state)")
	}
}
