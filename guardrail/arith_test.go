package guardrail

// Unit tests of the arithmetic, without a database: windows, the lease
// meter, the baseline, and one key's decisions on an injected clock.

import (
	"testing"
	"time"

	"github.com/ragfence/ragfence/policy"
)

func TestWindowOf(t *testing.T) {
	at := time.Date(2026, 3, 9, 12, 34, 56, 789, time.UTC)
	for _, tc := range []struct {
		length     time.Duration
		start, end string
	}{
		{time.Minute, "2026-03-09T12:34:00Z", "2026-03-09T12:35:00Z"},
		{10 * time.Minute, "2026-03-09T12:30:00Z", "2026-03-09T12:40:00Z"},
		{time.Hour, "2026-03-09T12:00:00Z", "2026-03-09T13:00:00Z"},
		{24 * time.Hour, "2026-03-09T00:00:00Z", "2026-03-10T00:00:00Z"},
		{7 * time.Second, "2026-03-09T12:34:54Z", "2026-03-09T12:35:01Z"}, // multiples of 7s since the epoch
	} {
		start, end := WindowOf(at, tc.length)
		if start.Format(time.RFC3339) != tc.start || end.Format(time.RFC3339) != tc.end {
			t.Errorf("%s: %s .. %s, want %s .. %s", tc.length, start.Format(time.RFC3339), end.Format(time.RFC3339), tc.start, tc.end)
		}
	}
	// The same instant in another zone is in the same window.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if a, _ := WindowOf(at.In(berlin), time.Hour); !a.Equal(time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("zone changes the window: %s", a)
	}
	if i := windowIndex(time.Unix(-1, 0), 60); i != -1 {
		t.Errorf("index of 1969-12-31T23:59:59 = %d, want -1", i)
	}
}

func TestSpikeThreshold(t *testing.T) {
	b := policy.Baseline{Windows: 60, Factor: 5, MinRows: 100}
	for _, tc := range []struct {
		rows, windows int64
		want          int64
		ok            bool
	}{
		{1200, 60, 101, true},   // average 20: more than 100 rows
		{1200, 59, 0, false},    // too little history
		{0, 60, 100, true},      // average 0: min_rows decides
		{6000, 600, 501, true},  // average 100: 5x is 500
		{6001, 60, 501, true},   // 5 x 100.0166 = 500.08
		{12000, 60, 1001, true}, // exactly 1000 is not more than 1000
	} {
		got, ok := SpikeThreshold(b, tc.rows, tc.windows)
		if got != tc.want || ok != tc.ok {
			t.Errorf("rows %d over %d windows: %d, %v; want %d, %v", tc.rows, tc.windows, got, ok, tc.want, tc.ok)
		}
	}
}

// The meter's grant is used locally between syncs; a snapshot keeps of it
// what was used since the last (at least keep) and gives back the rest.
func TestMeterLease(t *testing.T) {
	var m meter
	if !m.hasShare(false, 2) {
		t.Fatal("no bootstrap share before the first sync")
	}
	m.used = 2
	if m.hasShare(false, 2) {
		t.Fatal("a bootstrap share of 2 allows a third unit")
	}
	used, release := m.snapshot(2)
	if used != 2 || release != 0 || m.hasShare(false, 2) {
		t.Fatalf("snapshot: used %d release %d", used, release)
	}
	m.synced(10, 100) // 10 used by all, 100 granted to this instance
	if m.view() != 10 || !m.hasShare(true, 2) || m.held != 100 {
		t.Fatalf("after sync: %+v", m)
	}
	m.used = 30
	used, release = m.snapshot(5)
	// Of the 70 unused it keeps 30 (what it used since the last sync): the
	// database takes back 70 of its hold, the 30 used and 40 given back.
	if used != 30 || release != 70 || m.held != 30 || m.view() != 40 {
		t.Fatalf("second snapshot: used %d release %d, %+v", used, release, m)
	}
	m.used = 5 // used during the sync
	m.failed()
	if m.used != 35 || m.held != 100 || m.sending != 0 {
		t.Fatalf("failed sync not undone: %+v", m)
	}
	// Idle: keep only the floor.
	m = meter{held: 50}
	if _, release = m.snapshot(5); release != 45 || m.held != 5 {
		t.Fatalf("idle snapshot: release %d, %+v", release, m)
	}
	// Over the grant (a straddling request): keep nothing, give all back.
	m = meter{held: 10, used: 14}
	if used, release = m.snapshot(5); used != 14 || release != 10 || m.held != 0 {
		t.Fatalf("overdrawn snapshot: used %d release %d, %+v", used, release, m)
	}
}

// fakeClock is an injectable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time         { return c.t }
func (c *fakeClock) add(d time.Duration)    { c.t = c.t.Add(d) }
func noSuspend(*counter, *rule) *Suspension { return &Suspension{done: make(chan struct{})} }

func ruleFor(t *testing.T, guardrail string) *rule {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte("version: 1\nresources:\n  docs:\n    tenant: t\n    document: doc\n    allow: [{name: all, when: \"true\"}]\nguardrails:\n  - " + guardrail + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	return compile(set)[0]
}

// joinedCounter is a counter that has synced once, with a grant.
func joinedCounter(r *rule, now time.Time, grant [budgets]int64) *counter {
	c := &counter{key: counterKey{guardrail: r.g.Name, windowSec: r.windowSec}, rule: r, window: windowIndex(now, r.windowSec), joined: true, touched: true}
	for b := range c.meters {
		c.meters[b].held = grant[b]
	}
	return c
}

// A throttle triggers once the window's rows already reached max_rows
// before the request: the request that crosses it is served in full.
func TestThrottleTriggersAtTheBudget(t *testing.T) {
	r := ruleFor(t, "{name: bulk, who: agents, window: 1m, max_rows: 10, action: throttle}")
	clock := &fakeClock{t: time.Date(2026, 3, 9, 12, 0, 15, 0, time.UTC)}
	c := joinedCounter(r, clock.now(), [budgets]int64{10})
	check := func() decision {
		d, ok := c.check(r, clock.now(), 1, time.Second, noSuspend)
		if !ok {
			t.Fatal("counter dead")
		}
		return d
	}
	if d := check(); d.action != Allow {
		t.Fatalf("first request: %+v", d)
	}
	c.record(clock.now(), 9, nil)
	if d := check(); d.action != Allow {
		t.Fatalf("at 9 of 10: %+v", d)
	}
	c.record(clock.now(), 4, nil) // straddles: 13 served
	d := check()
	if d.action != Throttle || d.pending || d.retryAfter != 45*time.Second || d.observed != 13 || d.limit != 10 || !d.fire {
		t.Fatalf("over budget: %+v", d)
	}
	if d := check(); !(d.action == Throttle && !d.fire) {
		t.Fatalf("a second trigger in the window fires again: %+v", d)
	}
	clock.add(45 * time.Second) // the next window
	if d := check(); d.action != Allow {
		t.Fatalf("next window, before a sync (bootstrap): %+v", d)
	}
	if c.joined || c.tail == nil || c.tail.used[rowsBudget] != 13 {
		t.Fatalf("rolled: joined %v tail %+v", c.joined, c.tail)
	}
}

// Without a share of the budget, a leased guardrail waits for a sync
// (Pending) rather than deciding on a budget it cannot see; a cap stays
// a cap, and an alert never waits.
func TestPendingWithoutAShare(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		guardrail string
		want      decision
	}{
		{"{name: g, who: agents, window: 1m, max_rows: 100, action: throttle}", decision{action: Throttle, pending: true, retryAfter: time.Second, needSync: true}},
		{"{name: g, who: agents, window: 1m, max_rows: 100, action: suspend, suspend_for: 1m}", decision{action: Throttle, pending: true, retryAfter: time.Second, needSync: true}},
		{"{name: g, who: agents, window: 1m, max_rows: 100, action: cap, cap_k: 2}", decision{action: Cap, capK: 2, pending: true, needSync: true}},
		{"{name: g, who: agents, window: 1m, max_rows: 100, action: alert}", decision{}},
	} {
		r := ruleFor(t, tc.guardrail)
		c := joinedCounter(r, now, [budgets]int64{5})
		c.record(now, 5, nil)
		d, _ := c.check(r, now, 1, time.Second, noSuspend)
		if d != tc.want {
			t.Errorf("%s: %+v, want %+v", r.g.Action, d, tc.want)
		}
	}
}

// Before its first sync of a window an instance may use 1/16 of an equal
// share of the budget among the live instances.
func TestBootstrapShare(t *testing.T) {
	r := ruleFor(t, "{name: g, who: agents, window: 1m, max_rows: 320, action: throttle}")
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	c := &counter{key: counterKey{windowSec: 60}, rule: r, window: windowIndex(now, 60)}
	c.record(now, 9, nil)
	if d, _ := c.check(r, now, 2, time.Second, noSuspend); d.action != Allow || !d.needSync {
		t.Fatalf("9 of a bootstrap of 10: %+v", d)
	}
	c.record(now, 1, nil)
	if d, _ := c.check(r, now, 2, time.Second, noSuspend); !d.pending {
		t.Fatalf("10 of a bootstrap of 10: %+v", d)
	}
}

func TestDocumentsCountOnce(t *testing.T) {
	r := ruleFor(t, "{name: g, who: agents, window: 1m, max_documents: 3, action: throttle}")
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	c := joinedCounter(r, now, [budgets]int64{0, 0, 3})
	c.record(now, 4, []string{"a", "b", "a", "b"})
	if d, _ := c.check(r, now, 1, time.Second, noSuspend); d.action != Allow || c.meters[documentsBudget].used != 2 {
		t.Fatalf("2 distinct documents: %+v, %+v", d, c.meters[documentsBudget])
	}
	c.record(now, 2, []string{"b", "c"})
	if d, _ := c.check(r, now, 1, time.Second, noSuspend); d.action != Throttle || d.observed != 3 {
		t.Fatalf("3 distinct documents: %+v", d)
	}
	if len(c.newDocs) != 3 {
		t.Fatalf("documents to report: %v", c.newDocs)
	}
}

// The baseline compares the window's rows with the history the last sync
// reported, and stays silent without enough of it.
func TestBaselineDecision(t *testing.T) {
	r := ruleFor(t, "{name: spike, who: agents, window: 1m, baseline: {windows: 10, factor: 3, min_rows: 50}, action: alert}")
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	c := joinedCounter(r, now, [budgets]int64{})
	c.record(now, 1000, nil)
	if d, _ := c.check(r, now, 1, time.Second, noSuspend); d.action != Allow {
		t.Fatalf("no history known: %+v", d)
	}
	c.hist = history{known: true, rows: 300, windows: 9}
	if d, _ := c.check(r, now, 1, time.Second, noSuspend); d.action != Allow {
		t.Fatalf("9 windows of history for a baseline of 10: %+v", d)
	}
	c.hist = history{known: true, rows: 300, windows: 10} // average 30: over 90 rows, and at least 50
	d, _ := c.check(r, now, 1, time.Second, noSuspend)
	if d.action != Alert || d.limit != 91 || d.observed != 1000 || !d.fire {
		t.Fatalf("spike: %+v", d)
	}
}

func TestVerdictMerge(t *testing.T) {
	var v Verdict
	v.merge(decision{action: Alert}, "a")
	v.merge(decision{action: Cap, capK: 5}, "c5")
	v.merge(decision{action: Cap, capK: 3}, "c3")
	if v.Action != Cap || v.CapK != 3 || v.Guardrail != "c5" {
		t.Fatalf("caps: %+v", v)
	}
	v.merge(decision{action: Throttle, pending: true, retryAfter: time.Second}, "wait")
	if v.Action != Throttle || !v.Pending || v.Guardrail != "wait" {
		t.Fatalf("pending: %+v", v)
	}
	v.merge(decision{action: Throttle, retryAfter: time.Minute}, "spent")
	if v.Pending || v.Guardrail != "spent" || v.RetryAfter != time.Minute {
		t.Fatalf("spent: %+v", v)
	}
	v.merge(decision{action: Throttle, pending: true, retryAfter: time.Second}, "wait2")
	if v.Pending || v.Guardrail != "spent" {
		t.Fatalf("a pending throttle after a spent one: %+v", v)
	}
	v.merge(decision{action: Suspend}, "s")
	if v.Action != Suspend || v.Guardrail != "s" || v.Action.Serves() {
		t.Fatalf("suspend: %+v", v)
	}
}
