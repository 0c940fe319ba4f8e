package revocation_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/revocation"
	"github.com/ragfence/ragfence/sqlc/migrations"
)

// migrated is a fresh database with ragfence's schema, and a pool on it.
func migrated(t *testing.T) (string, *pgxpool.Pool) { return migratedTB(t) }

func migratedTB(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := testdb.Database(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := migrations.Apply(ctx, conn.Conn(), migrations.Options{}); err != nil {
		t.Fatal(err)
	}
	return dsn, pool
}

func watch(t *testing.T, dsn string, cfg revocation.WatchConfig) *revocation.Watcher {
	return watchTB(t, dsn, cfg)
}

func watchTB(t testing.TB, dsn string, cfg revocation.WatchConfig) *revocation.Watcher {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig = cc
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := revocation.Watch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// eventually polls cond until it holds or d passes, and says how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestRequestValidation(t *testing.T) {
	_, pool := migrated(t)
	s := revocation.NewStore(pool)
	for _, tc := range []struct {
		name string
		req  revocation.Request
	}{
		{"no tenant", revocation.Request{Subject: "alice", By: "ops"}},
		{"no by", revocation.Request{Tenant: "acme", Subject: "alice"}},
		{"nothing", revocation.Request{Tenant: "acme", By: "ops"}},
		{"token and subject", revocation.Request{Tenant: "acme", TokenID: "t1", Subject: "alice", By: "ops"}},
		{"negative", revocation.Request{Tenant: "acme", Subject: "alice", By: "ops", For: -time.Second}},
		{"expiry on subject", revocation.Request{Tenant: "acme", Subject: "alice", By: "ops", TokenExpiresAt: time.Now()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Revoke(context.Background(), tc.req)
			if revocation.CodeOf(err) != revocation.CodeInvalid {
				t.Fatalf("err = %v, want code %s", err, revocation.CodeInvalid)
			}
		})
	}
}

func TestWatcherMatches(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	s := revocation.NewStore(pool)
	w := watch(t, dsn, revocation.WatchConfig{})
	mk := func(r revocation.Request) revocation.Revocation {
		r.Tenant, r.By = "acme", "ops"
		rev, err := s.Revoke(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	tok := mk(revocation.Request{TokenID: "tok-1", Reason: "leaked"})
	sub := mk(revocation.Request{Subject: "bob"})
	agentFor := mk(revocation.Request{Agent: "summarizer", Subject: "carol"})
	agent := mk(revocation.Request{Agent: "crawler"})
	cases := []struct {
		name   string
		caller revocation.Caller
		code   revocation.Code
		id     int64
	}{
		{"revoked token", revocation.Caller{Tenant: "acme", Subject: "alice", TokenID: "tok-1"}, revocation.CodeTokenRevoked, tok.ID},
		{"other token", revocation.Caller{Tenant: "acme", Subject: "alice", TokenID: "tok-2"}, "", 0},
		{"token id in another tenant", revocation.Caller{Tenant: "globex", Subject: "alice", TokenID: "tok-1"}, "", 0},
		{"revoked subject", revocation.Caller{Tenant: "acme", Subject: "bob"}, revocation.CodeSubjectRevoked, sub.ID},
		{"agent acting for revoked subject", revocation.Caller{Tenant: "acme", Subject: "bob", Agent: "summarizer"}, revocation.CodeSubjectRevoked, sub.ID},
		{"subject in another tenant", revocation.Caller{Tenant: "globex", Subject: "bob"}, "", 0},
		{"agent for the named user", revocation.Caller{Tenant: "acme", Subject: "carol", Agent: "summarizer"}, revocation.CodeAgentRevoked, agentFor.ID},
		{"agent for another user", revocation.Caller{Tenant: "acme", Subject: "alice", Agent: "summarizer"}, "", 0},
		{"the user without the agent", revocation.Caller{Tenant: "acme", Subject: "carol"}, "", 0},
		{"agent for anyone", revocation.Caller{Tenant: "acme", Subject: "alice", Agent: "crawler"}, revocation.CodeAgentRevoked, agent.ID},
		{"a user named like the agent", revocation.Caller{Tenant: "acme", Subject: "crawler"}, "", 0},
	}
	eventually(t, time.Second, "the watcher hears the last revocation", func() bool {
		return w.Check(cases[len(cases)-2].caller) != nil
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Check(tc.caller)
			if got := revocation.CodeOf(err); got != tc.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tc.code)
			}
			if tc.code == "" {
				return
			}
			var e *revocation.Error
			errors.As(err, &e)
			if e.Revocation.ID != tc.id {
				t.Errorf("revocation %d, want %d", e.Revocation.ID, tc.id)
			}
			if msg := err.Error(); strings.Contains(msg, "leaked") {
				t.Errorf("the message shows the reason: %s", msg)
			}
		})
	}
	// Lifting restores access, on the next check.
	if _, err := s.Lift(ctx, sub.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "lift heard", func() bool {
		return w.Check(revocation.Caller{Tenant: "acme", Subject: "bob"}) == nil
	})
	if _, err := s.Lift(ctx, sub.ID, "ops"); revocation.CodeOf(err) != revocation.CodeNotFound {
		t.Errorf("lifting twice: %v, want %s", err, revocation.CodeNotFound)
	}
	inForce, err := s.InForce(ctx, "acme")
	if err != nil || len(inForce) != 3 {
		t.Errorf("in force: %d (%v), want 3", len(inForce), err)
	}
}

// A revocation with an end stops applying at its end, on the watcher's
// clock, without any notification.
func TestTimedRevocationEnds(t *testing.T) {
	dsn, pool := migrated(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w := watch(t, dsn, revocation.WatchConfig{Now: clock})
	r, err := revocation.NewStore(pool).Revoke(context.Background(),
		revocation.Request{Tenant: "acme", Subject: "dave", By: "ops", For: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.EndsAt.Sub(r.CreatedAt); d != 2*time.Hour {
		t.Fatalf("ends %s after it starts, want 2h", d)
	}
	dave := revocation.Caller{Tenant: "acme", Subject: "dave"}
	eventually(t, time.Second, "revocation heard", func() bool { return w.Check(dave) != nil })
	mu.Lock()
	now = r.EndsAt.Add(time.Second)
	mu.Unlock()
	if err := w.Check(dave); err != nil {
		t.Fatalf("after its end: %v", err)
	}
}

// With the notification connection cut, the watcher fails closed within
// its bound; once it can reconnect it reloads what changed meanwhile.
func TestWatcherStaleAndRecovers(t *testing.T) {
	dsn, pool := migrated(t)
	proxy := testdb.NewProxy(t, dsn)
	const bound = 500 * time.Millisecond
	w := watch(t, proxy.DSN(dsn), revocation.WatchConfig{MaxStaleness: bound, Heartbeat: 100 * time.Millisecond})
	erin := revocation.Caller{Tenant: "acme", Subject: "erin"}
	if err := w.Check(erin); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	cutAt := time.Now()
	eventually(t, bound+time.Second, "stale after the cut", func() bool {
		return revocation.CodeOf(w.Check(erin)) == revocation.CodeStale
	})
	if d := time.Since(cutAt); d < bound/2 {
		t.Errorf("stale %s after the cut, before the bound %s", d, bound)
	}
	// Made while the watcher cannot hear it.
	if _, err := revocation.NewStore(pool).Revoke(context.Background(),
		revocation.Request{Tenant: "acme", Subject: "erin", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	eventually(t, 3*time.Second, "reloaded after reconnecting", func() bool {
		return revocation.CodeOf(w.Check(erin)) == revocation.CodeSubjectRevoked
	})
}

// A watcher whose connection is terminated by the server reconnects at
// once: no stale window when the database is there.
func TestWatcherReconnectsAfterTerminate(t *testing.T) {
	dsn, pool := migrated(t)
	w := watch(t, dsn, revocation.WatchConfig{})
	pid := w.ConnPID()
	if _, err := pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "a new connection", func() bool {
		p := w.ConnPID()
		return p != 0 && p != pid
	})
	if err := w.Check(revocation.Caller{Tenant: "acme", Subject: "x"}); err != nil {
		t.Fatalf("after reconnecting: %v", err)
	}
}

func TestPrune(t *testing.T) {
	_, pool := migrated(t)
	ctx := context.Background()
	s := revocation.NewStore(pool)
	for _, exp := range []time.Time{time.Now().Add(-time.Minute), time.Now().Add(time.Hour)} {
		if _, err := s.Revoke(ctx, revocation.Request{Tenant: "acme", TokenID: exp.String(), By: "ops", TokenExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Prune(ctx)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
}
