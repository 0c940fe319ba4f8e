package guardrail_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/sqlc/migrations"
)

// migrated is a fresh database with ragfence's schema.
func migrated(t testing.TB) string {
	t.Helper()
	dsn := testdb.Database(t)
	ctx := context.Background()
	p := pool(t, dsn)
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := migrations.Apply(ctx, conn.Conn(), migrations.Options{}); err != nil {
		t.Fatal(err)
	}
	return dsn
}

func pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// clock is an injectable clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// policyWith is a policy with one resource, docs, and the guardrails.
func policyWith(t testing.TB, guardrails string) *policy.Set {
	t.Helper()
	doc := "version: 1\nresources:\n  docs:\n    tenant: tenant_id\n    document: doc_id\n    allow: [{name: all, when: \"true\"}]\n"
	if guardrails != "" {
		doc += "guardrails:\n" + guardrails
	}
	set, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// testWriter logs through t.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// manual makes an engine on a fresh pool that syncs only when told to
// (its SyncEvery is an hour).
func manual(t testing.TB, dsn string, set *policy.Set, c *clock, onEvent func(guardrail.Event)) *guardrail.Engine {
	return engine(t, dsn, set, c, time.Hour, onEvent)
}

func engine(t testing.TB, dsn string, set *policy.Set, c *clock, every time.Duration, onEvent func(guardrail.Event)) *guardrail.Engine {
	t.Helper()
	e, err := guardrail.New(context.Background(), guardrail.Config{
		Pool: pool(t, dsn), Set: set, Now: c.Now, SyncEvery: every, OnEvent: onEvent,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func syncNow(t testing.TB, engines ...*guardrail.Engine) {
	t.Helper()
	for _, e := range engines {
		if err := e.SyncNow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	bot   = guardrail.Who{Tenant: "acme", Subject: "alice", Agent: "bot"}
	noon  = time.Date(2026, 3, 9, 12, 0, 10, 0, time.UTC)
	noReq = guardrail.Request{}
)

// serve checks and, when served, records rows: what a server does.
func serve(e *guardrail.Engine, who guardrail.Who, rows int, docs ...string) guardrail.Verdict {
	v := e.Check(who, "docs", noReq)
	if v.Action.Serves() {
		e.Record(v, rows, docs)
	}
	return v
}

func TestNewNeedsTheSchema(t *testing.T) {
	dsn := testdb.Database(t) // not migrated
	_, err := guardrail.New(context.Background(), guardrail.Config{Pool: pool(t, dsn), Set: policyWith(t, "")})
	if err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Fatalf("New on a database without the migration: %v", err)
	}
	if _, err := guardrail.New(context.Background(), guardrail.Config{}); guardrail.CodeOf(err) != guardrail.CodeConfig {
		t.Fatalf("New without a pool: %v", err)
	}
}

// One instance, stepped by hand: the bootstrap share, the wait for a
// grant, the grant, the trigger and the next window.
func TestThrottleLifecycle(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	var events []guardrail.Event
	e := manual(t, dsn, policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_rows: 100, action: throttle}\n"), c,
		func(ev guardrail.Event) { events = append(events, ev) })

	// Before its first sync it may use 100/16 = 6 rows.
	if v := serve(e, bot, 5); v.Action != guardrail.Allow {
		t.Fatalf("first request: %+v", v)
	}
	if v := serve(e, bot, 5); v.Action != guardrail.Allow {
		t.Fatalf("at 5 of a bootstrap of 6: %+v", v)
	}
	if v := serve(e, bot, 5); v.Action != guardrail.Throttle || !v.Pending || v.Guardrail != "bulk" || v.RetryAfter != time.Hour {
		t.Fatalf("without a grant: %+v", v)
	}
	syncNow(t, e) // reports 10, is granted the other 90
	if v := serve(e, bot, 85); v.Action != guardrail.Allow {
		t.Fatalf("within the grant: %+v", v)
	}
	if v := serve(e, bot, 10); v.Action != guardrail.Allow {
		t.Fatalf("at 95 of 100 (it straddles the budget): %+v", v)
	}
	v := serve(e, bot, 1)
	if v.Action != guardrail.Throttle || v.Pending || v.RetryAfter != 50*time.Second {
		t.Fatalf("at 105 of 100: %+v", v)
	}
	if len(events) != 1 || events[0].Observed != 105 || events[0].Limit != 100 || events[0].Action != guardrail.Throttle {
		t.Fatalf("events %+v", events)
	}
	if v := e.Check(guardrail.Who{Tenant: "acme", Subject: "bob", Agent: "bot"}, "docs", noReq); v.Action != guardrail.Allow {
		t.Fatalf("another subject has its own budget: %+v", v)
	}
	if v := e.Check(guardrail.Who{Tenant: "acme", Subject: "alice"}, "docs", noReq); v.Action != guardrail.Allow || v.Guardrail != "" {
		t.Fatalf("the user calling directly is not an agent: %+v", v)
	}
	c.Add(time.Minute)
	if v := serve(e, bot, 1); v.Action != guardrail.Allow {
		t.Fatalf("next window: %+v", v)
	}
	syncNow(t, e)
	got := counts(t, dsn, "bulk")
	if got[noon.Truncate(time.Minute)] != 105 || got[noon.Truncate(time.Minute).Add(time.Minute)] != 1 {
		t.Fatalf("stored rows per window %v", got)
	}
}

// counts reads the rows stored per window of a guardrail, all keys summed.
func counts(t testing.TB, dsn, guardrail string) map[time.Time]int64 {
	t.Helper()
	rows, err := pool(t, dsn).Query(context.Background(),
		`SELECT window_start, sum(row_count)::bigint FROM ragfence.guardrail_counters WHERE guardrail = $1 GROUP BY 1`, guardrail)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[time.Time]int64{}
	for rows.Next() {
		var w time.Time
		var n int64
		if err := rows.Scan(&w, &n); err != nil {
			t.Fatal(err)
		}
		out[w.UTC()] = n
	}
	return out
}

// Two instances, stepped by hand: the second gets a share once the first
// gives back what it does not use, and neither can spend the other's.
func TestTwoInstancesShareABudget(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	set := policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_rows: 100, action: throttle}\n")
	a, b := manual(t, dsn, set, c, nil), manual(t, dsn, set, c, nil)
	served := map[*guardrail.Engine]int{}
	drain := func(e *guardrail.Engine) guardrail.Verdict {
		for {
			v := serve(e, bot, 1)
			if !v.Action.Serves() {
				return v
			}
			served[e]++
		}
	}
	drain(a)
	syncNow(t, a) // a alone: granted all that is left
	for range 24 {
		serve(a, bot, 1)
	}
	served[a] += 24
	if v := drain(b); !v.Pending || served[b] != 6 {
		t.Fatalf("b before its first sync: served %d, %+v", served[b], v)
	}
	for range 8 {
		syncNow(t, a, b) // a, idle now, gives back all but its floor; b takes shares
		drain(b)
	}
	total := served[a] + served[b]
	// a keeps a floor of 6 it does not use; b may have used a bootstrap
	// share no grant backed.
	if served[a] != 30 || total < 100-6 || total > 100+6 {
		t.Fatalf("served a %d + b %d = %d", served[a], served[b], total)
	}
	syncNow(t, a, b)
	if got := counts(t, dsn, "bulk")[noon.Truncate(time.Minute)]; got != int64(total) {
		t.Fatalf("stored %d rows, served %d", got, total)
	}
}

// hammer runs goroutines per engine that serve as fast as they can, each
// request up to 10 rows, and returns the rows served and, of the
// refusals, a few of each action.
func hammer(engines []*guardrail.Engine, perEngine int, d time.Duration, who guardrail.Who) (rows int64, verdicts []guardrail.Verdict) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for i, e := range engines {
		for g := range perEngine {
			wg.Go(func() {
				var n int64
				var mine []guardrail.Verdict
				kept := map[guardrail.Action]int{}
				for k := 1; time.Now().Before(stop); k++ {
					v := e.Check(who, "docs", noReq)
					if v.Action.Serves() {
						rowsNow := 1 + (k+g+i)%10
						e.Record(v, rowsNow, nil)
						n += int64(rowsNow)
					} else if kept[v.Action] < 10 {
						kept[v.Action]++
						mine = append(mine, v)
					}
				}
				mu.Lock()
				rows += n
				verdicts = append(verdicts, mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return rows, verdicts
}

// Two instances under an agent hammering them as fast as they answer
// serve at most 1.25x max_rows in a window between them, window after
// window, and count exactly what they served.
func TestTwoInstancesUnderHammering(t *testing.T) {
	dsn := migrated(t)
	start := time.Date(2026, 3, 9, 12, 0, 1, 0, time.UTC)
	c := newClock(start)
	const maxRows = 500
	set := policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_rows: 500, action: throttle}\n")
	a := engine(t, dsn, set, c, 20*time.Millisecond, nil)
	b := engine(t, dsn, set, c, 20*time.Millisecond, nil)
	for w := range 3 {
		window := start.Truncate(time.Minute).Add(time.Duration(w) * time.Minute)
		c.Set(window.Add(time.Second))
		rows, _ := hammer([]*guardrail.Engine{a, b}, 4, 400*time.Millisecond, bot)
		t.Logf("window %d: served %d rows of %d", w, rows, maxRows)
		if rows > maxRows*5/4 {
			t.Errorf("window %d: served %d rows, over 1.25 x %d", w, rows, maxRows)
		}
		if rows < maxRows*3/4 {
			t.Errorf("window %d: served only %d rows of %d: the budget is not shared out", w, rows, maxRows)
		}
		syncNow(t, a, b)
		if got := counts(t, dsn, "bulk")[window]; got != rows {
			t.Errorf("window %d: stored %d rows, served %d", w, got, rows)
		}
	}
}

// Two instances suspending an agent make one revocation between them,
// however many requests find the budget spent.
func TestSuspendMakesOneRevocation(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	set := policyWith(t, "  - {name: burst, who: agents, window: 1m, max_rows: 50, action: suspend, suspend_for: 30m}\n")
	a := engine(t, dsn, set, c, 10*time.Millisecond, nil)
	b := engine(t, dsn, set, c, 10*time.Millisecond, nil)
	_, verdicts := hammer([]*guardrail.Engine{a, b}, 4, 300*time.Millisecond, bot)
	ids := map[int64]bool{}
	for _, v := range verdicts {
		if v.Action != guardrail.Suspend {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, err := v.Suspension.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if len(ids) != 1 {
		t.Fatalf("suspensions made revocations %v, want one", ids)
	}
	var n int
	var kind, agent, subject string
	var lasts time.Duration
	err := pool(t, dsn).QueryRow(context.Background(), `
		SELECT count(*) OVER (), kind, agent, subject, (ends_at - created_at)::interval
		FROM ragfence.revocations WHERE created_by = 'guardrail:burst'`).Scan(&n, &kind, &agent, &subject, &lasts)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || kind != "agent" || agent != "bot" || subject != "alice" || lasts != 30*time.Minute {
		t.Fatalf("revocations: %d, %s %s for %s lasting %s", n, kind, agent, subject, lasts)
	}
	// A later window, still over budget, finds the revocation in force.
	c.Add(time.Minute)
	_, verdicts = hammer([]*guardrail.Engine{a}, 2, 200*time.Millisecond, bot)
	for _, v := range verdicts {
		if v.Action == guardrail.Suspend {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			id, err := v.Suspension.Wait(ctx)
			cancel()
			if err != nil || !ids[id] {
				t.Fatalf("next window's suspension %d, %v", id, err)
			}
			break
		}
	}
}

// A user calling directly is suspended as a subject.
func TestSuspendSubject(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	e := manual(t, dsn, policyWith(t, "  - {name: people, who: subjects, window: 1m, max_requests: 2, action: suspend, suspend_for: 1h}\n"), c, nil)
	alice := guardrail.Who{Tenant: "acme", Subject: "alice"}
	serve(e, alice, 1)
	syncNow(t, e)
	serve(e, alice, 1)
	v := serve(e, alice, 1)
	if v.Action != guardrail.Suspend || v.Suspension.Request.Agent != "" || v.Suspension.Request.By != "guardrail:people" {
		t.Fatalf("third request: %+v", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := v.Suspension.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kind string
	if err := pool(t, dsn).QueryRow(context.Background(), `SELECT kind FROM ragfence.revocations WHERE id = $1`, id).Scan(&kind); err != nil || kind != "subject" {
		t.Fatalf("revocation %d: kind %q, %v", id, kind, err)
	}
}

// Distinct documents are counted once across instances.
func TestDocumentsAcrossInstances(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	set := policyWith(t, "  - {name: docs, who: agents, window: 1m, max_documents: 5, action: throttle}\n")
	a, b := manual(t, dsn, set, c, nil), manual(t, dsn, set, c, nil)
	serve(a, bot, 3, "d1", "d2", "d1")
	serve(b, bot, 2, "d2", "d3")
	syncNow(t, a, b, a)
	var docs int64
	if err := pool(t, dsn).QueryRow(context.Background(),
		`SELECT document_count FROM ragfence.guardrail_counters WHERE guardrail = 'docs'`).Scan(&docs); err != nil || docs != 3 {
		t.Fatalf("document_count %d, %v", docs, err)
	}
	serve(a, bot, 2, "d4", "d5")
	if v := a.Check(bot, "docs", noReq); v.Action != guardrail.Throttle || v.Pending {
		t.Fatalf("at 5 distinct documents: %+v", v)
	}
}

// Events carry the request's decision and serialise to the webhook's
// fields; a cap serves with the lowest cap_k.
func TestCapAndEvents(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	var events []guardrail.Event
	e := manual(t, dsn, policyWith(t, `  - {name: small, who: agents, window: 1m, max_requests: 1, action: cap, cap_k: 3}
  - {name: smaller, who: {agent: bot}, collections: [docs], window: 10m, max_requests: 1, action: cap, cap_k: 2}
  - {name: watch, who: everyone, window: 1h, max_rows: 1, action: alert}
`), c, func(ev guardrail.Event) { events = append(events, ev) })
	syncNow(t, e)
	req := guardrail.Request{DecisionID: "dec-1"}
	if v := e.Check(bot, "docs", req); v.Action != guardrail.Allow {
		t.Fatalf("first: %+v", v)
	}
	v := e.Check(bot, "docs", req)
	if v.Action != guardrail.Cap || v.CapK != 2 || len(events) != 2 {
		t.Fatalf("second: %+v, %d events", v, len(events))
	}
	e.Record(v, 2, nil)
	if v := e.Check(bot, "docs", req); v.Action != guardrail.Cap || len(events) != 3 || events[2].Action != guardrail.Alert {
		t.Fatalf("third: %+v, events %+v", v, events)
	}
	b, err := json.Marshal(events[1])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"guardrail":"smaller","action":"cap","tenant":"acme","subject":"alice","agent":"bot","collection":"docs","observed":1,"limit":1,"window":"10m","decision_id":"dec-1","time":"2026-03-09T12:00:10Z"}`
	if string(b) != want {
		t.Fatalf("event JSON\n%s\nwant\n%s", b, want)
	}
}

// A guardrail's when picks the requests it counts; one it cannot decide
// counts the request.
func TestWhenSelectsRequests(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	e := manual(t, dsn, policyWith(t, "  - {name: night, who: agents, when: context.hour NOT BETWEEN 7 AND 19, window: 1m, max_requests: 1, action: throttle}\n"), c, nil)
	syncNow(t, e)
	at := func(h int) guardrail.Request {
		return guardrail.Request{Context: policy.Context{Time: time.Date(2026, 3, 9, h, 0, 10, 0, time.UTC)}}
	}
	for range 3 {
		if v := e.Check(bot, "docs", at(12)); v.Action != guardrail.Allow || len(v.Guardrail) > 0 {
			t.Fatalf("at noon: %+v", v)
		}
	}
	if v := e.Check(bot, "docs", noReq); v.Action != guardrail.Allow {
		t.Fatalf("without a time, first: %+v", v)
	}
	if v := e.Check(bot, "docs", at(23)); v.Action != guardrail.Throttle {
		t.Fatalf("at 23:00 after a request without a time: %+v", v)
	}
}

// The baseline triggers on a window over factor x the average of the
// previous windows, once there are that many.
func TestBaselineAcrossWindows(t *testing.T) {
	dsn := migrated(t)
	start := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	c := newClock(start)
	var events []guardrail.Event
	e := manual(t, dsn, policyWith(t, "  - {name: spike, who: agents, window: 1m, baseline: {windows: 3, factor: 2, min_rows: 10}, action: alert}\n"), c,
		func(ev guardrail.Event) { events = append(events, ev) })
	for w := range 4 {
		c.Set(start.Add(time.Duration(w)*time.Minute + time.Second))
		rows := 10
		switch w {
		case 2:
			rows = 40 // a spike, but with 2 windows of history, not 3
		case 3:
			rows = 45
		}
		serve(e, bot, rows)
		syncNow(t, e)
		v := e.Check(bot, "docs", noReq)
		if want := w == 3; (v.Action == guardrail.Alert) != want {
			t.Fatalf("window %d: %+v", w, v)
		}
	}
	// Windows 0..2 hold 10 + 10 + 40 rows: average 20, so 41 rows trigger.
	if len(events) != 1 || events[0].Limit != 41 || events[0].Observed != 45 {
		t.Fatalf("events %+v", events)
	}
}

// Windows no one reads are pruned.
func TestPrune(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	e := manual(t, dsn, policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_rows: 100, max_documents: 9, action: throttle}\n"), c, nil)
	serve(e, bot, 1, "d1")
	syncNow(t, e)
	c.Add(10 * time.Minute)
	if err := e.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool(t, dsn).QueryRow(context.Background(), `SELECT (SELECT count(*) FROM ragfence.guardrail_counters) + (SELECT count(*) FROM ragfence.guardrail_documents)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows left, %v", n, err)
	}
}

// Close reports what was counted since the last sync.
func TestCloseReports(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	e := manual(t, dsn, policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_rows: 100, action: throttle}\n"), c, nil)
	serve(e, bot, 4)
	e.Close()
	if got := counts(t, dsn, "bulk")[noon.Truncate(time.Minute)]; got != 4 {
		t.Fatalf("stored %d rows after Close", got)
	}
}

// While the database is unreachable an instance enforces on what it
// knows, and reports its counts, of this window and the last, once it
// is back.
func TestSyncFailureKeepsCounts(t *testing.T) {
	dsn := migrated(t)
	proxy := testdb.NewProxy(t, dsn)
	c := newClock(noon)
	e := manual(t, proxy.DSN(dsn), policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_rows: 100, max_documents: 50, action: throttle}\n"), c, nil)
	serve(e, bot, 3, "d1")
	syncNow(t, e)
	serve(e, bot, 4, "d2")
	proxy.Cut()
	if err := e.SyncNow(context.Background()); err == nil {
		t.Fatal("a sync through a cut connection succeeded")
	}
	serve(e, bot, 5, "d3")
	c.Add(time.Minute) // the window ends while the database is away
	serve(e, bot, 6, "d4")
	if err := e.SyncNow(context.Background()); err == nil {
		t.Fatal("a second sync through a cut connection succeeded")
	}
	for range 20 {
		serve(e, bot, 1) // the bootstrap share runs out; then it waits
	}
	if v := e.Check(bot, "docs", noReq); v.Action != guardrail.Throttle || !v.Pending {
		t.Fatalf("out of its share with the database away: %+v", v)
	}
	proxy.Restore()
	syncNow(t, e)
	first := noon.Truncate(time.Minute)
	got := counts(t, dsn, "bulk")
	if got[first] != 12 || got[first.Add(time.Minute)] != 6 {
		t.Fatalf("stored rows per window %v", got)
	}
	var docs int64
	if err := pool(t, dsn).QueryRow(context.Background(), `SELECT document_count FROM ragfence.guardrail_counters WHERE window_start = $1`, first).Scan(&docs); err != nil || docs != 3 {
		t.Fatalf("documents of the first window: %d, %v", docs, err)
	}
}

// SetPolicy replaces the guardrails enforced; counts carry over for a
// guardrail that keeps its name and window.
func TestSetPolicy(t *testing.T) {
	dsn := migrated(t)
	c := newClock(noon)
	e := manual(t, dsn, policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_requests: 2, action: throttle}\n"), c, nil)
	serve(e, bot, 1)
	syncNow(t, e)
	serve(e, bot, 1)
	if v := e.Check(bot, "docs", noReq); v.Action != guardrail.Throttle {
		t.Fatalf("third request: %+v", v)
	}
	e.SetPolicy(policyWith(t, ""))
	if v := e.Check(bot, "docs", noReq); v.Action != guardrail.Allow {
		t.Fatalf("without guardrails: %+v", v)
	}
	e.SetPolicy(policyWith(t, "  - {name: bulk, who: agents, window: 1m, max_requests: 5, action: throttle}\n"))
	// Its grant was of the old budget: it asks for a share of the new one.
	if v := e.Check(bot, "docs", noReq); !v.Pending {
		t.Fatalf("before a sync under the raised budget: %+v", v)
	}
	syncNow(t, e)
	for i := range 3 {
		if v := serve(e, bot, 1); v.Action != guardrail.Allow {
			t.Fatalf("request %d of a raised budget: %+v", i+3, v)
		}
	}
	if v := e.Check(bot, "docs", noReq); v.Action != guardrail.Throttle {
		t.Fatalf("sixth request: %+v", v)
	}
}
