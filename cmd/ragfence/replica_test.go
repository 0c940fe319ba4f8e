package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
)

// onReplica is dsn's database on the streaming replica make test starts
// (scripts/replica.sh); the test skips without one, except in CI.
func onReplica(t *testing.T, dsn string) string {
	t.Helper()
	r := os.Getenv("RAGFENCE_TEST_REPLICA_URL")
	if r == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("RAGFENCE_TEST_REPLICA_URL is not set: make test starts the replica with scripts/replica.sh")
		}
		t.Skip("no replica: run scripts/replica.sh (make test does) and set RAGFENCE_TEST_REPLICA_URL")
	}
	ru, err := url.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	du, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ru.Path = du.Path
	return ru.String()
}

// replicaReads counts the scans of the chunks table the replica ran (its
// own statistics: neither the lag checks nor this reading scan chunks).
func replicaReads(t *testing.T, replicaDSN string) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), replicaDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0)
		FROM pg_stat_user_tables WHERE relname = 'chunks'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Searches run on a real streaming replica; a dead replica leaves the
// rotation by itself and searches go on, on the primary.
func TestSearchesRunOnAReplica(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Database(t)
	rdsn := onReplica(t, dsn)
	proxy := testdb.NewProxy(t, rdsn)
	// The replica must have replayed the database's creation first.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := pgx.Connect(ctx, rdsn); err == nil {
			c.Close(ctx)
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the replica has no database %s: %v", dsn, err)
		}
	}
	env := newAccessEnv(t, ctx, dsn, nil, "--db-replica", proxy.DSN(rdsn), "--max-replica-lag", "2s")
	tok := env.token(t, "replica-user", "", "")
	caughtUp(t, dsn, rdsn)
	time.Sleep(time.Second) // the servers' next lag checks put it in rotation
	before := replicaReads(t, rdsn)
	for i := range 20 {
		if status, code := env.retrieve(t, i%2, tok); status != http.StatusOK {
			t.Fatalf("search %d: %d %s", i, status, code)
		}
	}
	// Backends flush their statistics within a second or so of idling.
	var ran int64
	for deadline := time.Now().Add(5 * time.Second); ran < 20 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ran = replicaReads(t, rdsn) - before
	}
	if ran < 20 {
		t.Errorf("the replica scanned chunks %d times for 20 searches", ran)
	}
	proxy.Cut()
	for i := range 20 {
		status, code := env.retrieve(t, i%2, tok)
		if status != http.StatusOK && !(status == http.StatusServiceUnavailable && strings.Contains(code, "unavailable")) {
			t.Fatalf("with the replica down: %d %s", status, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// By now the replica is out of rotation: every search is answered.
	for i := range 10 {
		if status, code := env.retrieve(t, i%2, tok); status != http.StatusOK {
			t.Errorf("a dead replica still takes searches: %d %s", status, code)
		}
	}
	proxy.Restore()
}

// caughtUp waits until the replica has replayed what the primary wrote
// (the demo's seeding), as the servers' lag checks will see.
func caughtUp(t *testing.T, dsn, rdsn string) {
	t.Helper()
	ctx := context.Background()
	var lsn string
	p, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if err := p.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	r, err := pgx.Connect(ctx, rdsn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var done bool
		if err := r.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica did not catch up with the seeding in 20s")
		}
	}
}
