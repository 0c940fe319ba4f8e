package revocation_test

// Red-team tests of the revocation promises (issue 13). A failing test here
// is a finding; a passing one is a defence that holds, kept as a
// regression test. Each test is bounded well under 10 s.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/revocation"
)

// FINDING (availability of the fail-closed check): a staleness bound equal
// to the default heartbeat (1 s, the value `ragfence serve
// --revocation-staleness 1s` and the repository's own stale test use) makes
// an idle, perfectly healthy watcher report revocation_state_stale for a
// moment every second: the listener confirms only after a whole heartbeat
// of silence plus a ping, which is always a little more than the bound.
// Nothing derives the heartbeat from the bound or refuses a bound at or
// below it.
func TestRedteamStalenessBoundAtHeartbeatFlapsOnHealthyDB(t *testing.T) {
	dsn, _ := migrated(t)
	w := watch(t, dsn, revocation.WatchConfig{MaxStaleness: revocation.DefaultHeartbeat})
	c := revocation.Caller{Tenant: "acme", Subject: "idle-user"}
	var checks, stale int
	var first error
	for start := time.Now(); time.Since(start) < 3500*time.Millisecond; {
		checks++
		if err := w.Check(c); revocation.CodeOf(err) == revocation.CodeStale {
			stale++
			if first == nil {
				first = err
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	if stale > 0 {
		t.Errorf("healthy database, idle watcher with MaxStaleness = heartbeat (%s): %d of %d checks answered %s (first: %v)",
			revocation.DefaultHeartbeat, stale, checks, revocation.CodeStale, first)
	}
}

// FINDING (clock), fixed: a timed revocation's end is computed on the
// database's clock, and the Watcher now compares it with the database's
// clock too (measured at each heartbeat), not with its own: a server whose
// clock runs ahead cannot skip a revocation. Without an injected clock, the
// Watcher's agrees with the database's.
func TestRedteamServerClockAheadSkipsTimedRevocation(t *testing.T) {
	dsn, pool := migrated(t)
	w := watch(t, dsn, revocation.WatchConfig{})
	var db time.Time
	if err := pool.QueryRow(context.Background(), "SELECT clock_timestamp()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if d := w.Now().Sub(db); d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("the watcher's clock is %s off the database's", d)
	}
	if _, err := revocation.NewStore(pool).Revoke(context.Background(),
		revocation.Request{Tenant: "acme", Subject: "skewed-user", By: "secops", For: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	c := revocation.Caller{Tenant: "acme", Subject: "skewed-user"}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if revocation.CodeOf(w.Check(c)) == revocation.CodeSubjectRevoked {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Error("a 5m revocation made now is not enforced")
}

// DEFENCE: a closed watcher fails closed, for checks and for /v1/access.
func TestRedteamClosedWatcherFailsClosed(t *testing.T) {
	dsn, _ := migrated(t)
	w := watch(t, dsn, revocation.WatchConfig{})
	c := revocation.Caller{Tenant: "acme", Subject: "anyone"}
	if err := w.Check(c); err != nil {
		t.Fatalf("before closing: %v", err)
	}
	w.Close()
	if code := revocation.CodeOf(w.Check(c)); code != revocation.CodeStale {
		t.Errorf("after Close, Check: %q, want %s", code, revocation.CodeStale)
	}
	if _, err := w.Concerning(c); revocation.CodeOf(err) != revocation.CodeStale {
		t.Errorf("after Close, Concerning: %v, want %s", err, revocation.CodeStale)
	}
	if err := w.Fresh(); revocation.CodeOf(err) != revocation.CodeStale {
		t.Errorf("after Close, Fresh: %v", err)
	}
}

// DEFENCE: a watcher cannot start on a database without ragfence's
// tables (it fails instead of serving with an empty set).
func TestRedteamWatchWithoutSchemaFails(t *testing.T) {
	dsn := testdb.Database(t)
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := revocation.Watch(ctx, revocation.WatchConfig{ConnConfig: cc})
	if err == nil {
		w.Close()
		t.Fatal("a watcher started on a database without ragfence.revocations")
	}
}

// DEFENCE: tenants, scopes and tokens without a jti. A revocation matches
// exactly what it names, in its own tenant, and nothing else.
func TestRedteamScopesAndTenants(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	s := revocation.NewStore(pool)
	w := watch(t, dsn, revocation.WatchConfig{})
	mk := func(r revocation.Request) {
		r.By = "secops"
		if _, err := s.Revoke(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mk(revocation.Request{Tenant: "acme", TokenID: "jti-x"})
	mk(revocation.Request{Tenant: "acme", Subject: "sam"})
	mk(revocation.Request{Tenant: "acme", Agent: "summarizer", Subject: "kim"})
	mk(revocation.Request{Tenant: "globex", Agent: "crawler"})
	last := revocation.Caller{Tenant: "globex", Subject: "z", Agent: "crawler"}
	eventually(t, time.Second, "all heard", func() bool { return w.Check(last) != nil })
	for _, tc := range []struct {
		name string
		c    revocation.Caller
		want revocation.Code
	}{
		{"revoked jti", revocation.Caller{Tenant: "acme", Subject: "u", TokenID: "jti-x"}, revocation.CodeTokenRevoked},
		{"revoked jti acting as agent", revocation.Caller{Tenant: "acme", Subject: "u", Agent: "a", TokenID: "jti-x"}, revocation.CodeTokenRevoked},
		{"token without jti", revocation.Caller{Tenant: "acme", Subject: "u"}, ""},
		{"same jti, other tenant", revocation.Caller{Tenant: "globex", Subject: "u", TokenID: "jti-x"}, ""},
		{"revoked subject", revocation.Caller{Tenant: "acme", Subject: "sam"}, revocation.CodeSubjectRevoked},
		{"agent for revoked subject", revocation.Caller{Tenant: "acme", Subject: "sam", Agent: "crawler"}, revocation.CodeSubjectRevoked},
		{"same subject id, other tenant", revocation.Caller{Tenant: "globex", Subject: "sam"}, ""},
		{"agent for the named subject", revocation.Caller{Tenant: "acme", Subject: "kim", Agent: "summarizer"}, revocation.CodeAgentRevoked},
		{"same agent, other subject", revocation.Caller{Tenant: "acme", Subject: "lee", Agent: "summarizer"}, ""},
		{"named subject without the agent", revocation.Caller{Tenant: "acme", Subject: "kim"}, ""},
		{"subject whose id is the agent's", revocation.Caller{Tenant: "acme", Subject: "summarizer"}, ""},
		{"agent everywhere in its tenant", revocation.Caller{Tenant: "globex", Subject: "any", Agent: "crawler"}, revocation.CodeAgentRevoked},
		{"same agent, other tenant", revocation.Caller{Tenant: "acme", Subject: "any", Agent: "crawler"}, ""},
	} {
		if got := revocation.CodeOf(w.Check(tc.c)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// DEFENCE: a notification for a deleted row removes it; forged
// notifications (garbage, an unknown id, a lifted row's id) neither add a
// refusal nor drop one.
func TestRedteamDeletedRowsAndForgedNotifications(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	s := revocation.NewStore(pool)
	w := watch(t, dsn, revocation.WatchConfig{})
	keep, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: "keep", By: "secops"})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: "gone", By: "secops"})
	if err != nil {
		t.Fatal(err)
	}
	lifted, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: "lifted", By: "secops"})
	if err != nil {
		t.Fatal(err)
	}
	who := func(s string) revocation.Caller { return revocation.Caller{Tenant: "acme", Subject: s} }
	eventually(t, time.Second, "heard", func() bool { return w.Check(who("lifted")) != nil })
	if _, err := s.Lift(ctx, lifted.ID, "secops"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "DELETE FROM ragfence.revocations WHERE id = $1", gone.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "deleted row dropped", func() bool { return w.Check(who("gone")) == nil })
	for _, payload := range []string{"not-a-number", "999999999", fmt.Sprint(lifted.ID), "", "-1"} {
		if _, err := pool.Exec(ctx, "SELECT pg_notify($1, $2)", revocation.Channel, payload); err != nil {
			t.Fatal(err)
		}
	}
	// A marker after the forged ones: once it is heard, they were too.
	if _, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: "marker", By: "secops"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "marker heard", func() bool { return w.Check(who("marker")) != nil })
	if revocation.CodeOf(w.Check(who("keep"))) != revocation.CodeSubjectRevoked {
		t.Errorf("revocation %d dropped by forged notifications", keep.ID)
	}
	for _, s := range []string{"gone", "lifted", "nobody"} {
		if err := w.Check(who(s)); err != nil {
			t.Errorf("%s refused after forged notifications: %v", s, err)
		}
	}
}

// DEFENCE: many revocations made and lifted concurrently from several
// connections end with the watcher's set equal to the database's.
func TestRedteamConcurrentChurnConverges(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	s := revocation.NewStore(pool)
	w := watch(t, dsn, revocation.WatchConfig{})
	const n = 60
	ids := make([]int64, n)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: fmt.Sprintf("churn-%d", i), By: "secops"})
			if err != nil {
				failed.Add(1)
				return
			}
			ids[i] = r.ID
			if i%2 == 0 {
				if _, err := s.Lift(ctx, r.ID, "secops"); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d operations failed", failed.Load())
	}
	// Two concurrent lifts of one revocation: exactly one succeeds.
	var ok atomic.Int32
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Lift(ctx, ids[1], "secops"); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d concurrent lifts of one revocation succeeded, want 1", ok.Load())
	}
	want := func(i int) bool { return i%2 == 1 && i != 1 }
	eventually(t, time.Second, "converged", func() bool {
		for i := range n {
			refused := w.Check(revocation.Caller{Tenant: "acme", Subject: fmt.Sprintf("churn-%d", i)}) != nil
			if refused != want(i) {
				return false
			}
		}
		return true
	})
}

// DEFENCE: a revocation whose end would not be after its start (a
// sub-microsecond --for) is refused rather than recorded as one that
// enforces nothing; one that ends in 300ms is enforced, then ends.
func TestRedteamRevocationEndingAtOnce(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	s := revocation.NewStore(pool)
	w := watch(t, dsn, revocation.WatchConfig{})
	if r, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: "instant", By: "secops", For: time.Nanosecond}); err == nil {
		t.Errorf("a 1ns revocation was recorded (id %d, ends %s, created %s): it prints an id and enforces nothing",
			r.ID, r.EndsAt.Format(time.RFC3339Nano), r.CreatedAt.Format(time.RFC3339Nano))
	}
	if _, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", Subject: "brief", By: "secops", For: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	brief := revocation.Caller{Tenant: "acme", Subject: "brief"}
	eventually(t, time.Second, "enforced", func() bool { return w.Check(brief) != nil })
	eventually(t, time.Second, "ended", func() bool { return w.Check(brief) == nil })
}
