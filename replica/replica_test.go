package replica_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/replica"
)

// replicaURL is the streaming replica scripts/replica.sh provides (make
// test starts it); without one the tests skip, except in CI.
func replicaURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("RAGFENCE_TEST_REPLICA_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("RAGFENCE_TEST_REPLICA_URL is not set: make test starts the replica with scripts/replica.sh")
		}
		t.Skip("no replica: run scripts/replica.sh (make test does) and set RAGFENCE_TEST_REPLICA_URL")
	}
	return u
}

func pool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

func inRecovery(t *testing.T, p *pgxpool.Pool) bool {
	t.Helper()
	var r bool
	if err := p.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// Reads go to the replica while it keeps up; to the primary while it lags
// past MaxLag (replay paused) or is unreachable (its connections cut); back
// to it once it catches up again. The replica is real: a streaming standby
// of the test server.
func TestRotation(t *testing.T) {
	rurl := replicaURL(t)
	primary := pool(t, testdb.URL(t))
	proxy := testdb.NewProxy(t, rurl)
	rep := pool(t, proxy.DSN(rurl))
	direct := pool(t, rurl)
	s := replica.Start(context.Background(), replica.Config{Primary: primary, Replicas: []replica.Replica{{Name: "r1", Search: rep}},
		MaxLag: time.Second, CheckEvery: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer s.Close()
	eventually(t, 3*time.Second, "the replica in rotation", func() bool { return s.Search() == rep })
	if !inRecovery(t, s.Search()) {
		t.Fatal("the search pool is not a replica")
	}

	// Lagging: replay paused while the primary writes.
	ctx := context.Background()
	if _, err := direct.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_, _ = direct.Exec(ctx, "SELECT pg_wal_replay_resume()")
		}
	}()
	stop := make(chan struct{})
	go func() { // the primary keeps writing WAL
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				_, _ = primary.Exec(ctx, "SELECT pg_logical_emit_message(false, 'ragfence-test', 'tick')")
			}
		}
	}()
	defer close(stop)
	eventually(t, 3*time.Second, "a lagging replica out of rotation", func() bool { return s.Search() == primary })
	if st := s.Statuses()[0]; st.Healthy || st.Lag <= time.Second {
		t.Errorf("status %+v, want unhealthy with lag over 1s", st)
	}
	if _, err := direct.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	resumed = true
	eventually(t, 3*time.Second, "the caught-up replica back in rotation", func() bool { return s.Search() == rep })

	// Dead: every connection to it cut.
	proxy.Cut()
	eventually(t, 3*time.Second, "a dead replica out of rotation", func() bool { return s.Search() == primary })
	if st := s.Statuses()[0]; st.Healthy || st.Err == "" {
		t.Errorf("status %+v, want unhealthy with an error", st)
	}
	proxy.Restore()
	eventually(t, 5*time.Second, "the replica back after it returns", func() bool { return s.Search() == rep })
}

// A server that is not in recovery is never taken for a replica.
func TestPrimaryIsNoReplica(t *testing.T) {
	primary := pool(t, testdb.URL(t))
	other := pool(t, testdb.URL(t))
	s := replica.Start(context.Background(), replica.Config{Primary: primary, Replicas: []replica.Replica{{Name: "not-a-replica", Search: other}},
		CheckEvery: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer s.Close()
	time.Sleep(150 * time.Millisecond)
	if s.Search() != primary || !strings.Contains(s.Statuses()[0].Err, "not in recovery") {
		t.Errorf("a primary was put in rotation: %+v", s.Statuses())
	}
}
