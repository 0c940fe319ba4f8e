package audit_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/sqlc/store"
)

// In sync mode a nil Enqueue means committed: another connection sees the
// row the moment Enqueue returns, with no flush timer in the way.
func TestSyncEnqueueReturnsOnceCommitted(t *testing.T) {
	db, url := auditDB(t)
	w, _ := newWriter(t, db, audit.Config{Mode: audit.ModeSync, FlushInterval: time.Hour})
	other, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	for i := range 20 {
		start := time.Now()
		r := record("sync", i)
		if err := w.Enqueue(context.Background(), r); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Enqueue took %v", took)
		}
		var n int
		if err := other.QueryRow(context.Background(),
			"SELECT count(*) FROM ragfence.audit_log WHERE decision_id = $1", r.DecisionID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("record %s: %d rows visible from another connection after Enqueue returned, want 1", r.DecisionID, n)
		}
	}
	if s := w.Stats(); s.Depth != 0 || s.Written != 20 {
		t.Errorf("Stats = %+v, want 20 written, depth 0", s)
	}
}

// slowCopy delays every COPY, so that the records of concurrent Enqueues
// pile up behind the one in flight, as under load.
type slowCopy struct {
	store.DBTX
	delay time.Duration
}

func (s slowCopy) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	time.Sleep(s.delay)
	return s.DBTX.CopyFrom(ctx, table, cols, src)
}

// Concurrent Enqueues share commits: the table's rows come from few
// transactions (counted by their xmin), and each Enqueue still waits for
// its own.
func TestSyncConcurrentEnqueuesShareCommits(t *testing.T) {
	db, _ := auditDB(t)
	tests := []struct {
		name       string
		db         store.DBTX
		maxCommits func(n int) int
	}{
		// Each goroutine's records go one after another: three rounds.
		// A round takes about two commits: the first goroutine woken by
		// a commit sends its next record alone, and the other 63 arrive
		// during that 50 ms COPY. 8 leaves room for the scheduler.
		{"slow commits", slowCopy{db, 50 * time.Millisecond}, func(int) int { return 8 }},
		{"real commits", db, func(n int) int { return n / 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := db.Exec(context.Background(), "TRUNCATE ragfence.audit_log"); err != nil {
				t.Fatal(err)
			}
			w, _ := newWriter(t, tt.db, audit.Config{Mode: audit.ModeSync})
			const goroutines, each = 64, 3
			enqueueAll(t, w, goroutines, each)
			const n = goroutines * each
			var rows, txs int
			if err := db.QueryRow(context.Background(),
				"SELECT count(*), count(DISTINCT xmin::text) FROM ragfence.audit_log").Scan(&rows, &txs); err != nil {
				t.Fatal(err)
			}
			s := w.Stats()
			t.Logf("%d records in %d transactions", rows, txs)
			if rows != n || s.Written != n {
				t.Errorf("table holds %d rows, Stats.Written %d; want %d", rows, s.Written, n)
			}
			if txs > tt.maxCommits(n) || uint64(txs) != s.Commits {
				t.Errorf("%d transactions (Stats.Commits %d) for %d concurrent records, want at most %d",
					txs, s.Commits, n, tt.maxCommits(n))
			}
		})
	}
}

// enqueueAll makes goroutines enqueue each records apiece, concurrently,
// and checks that every Enqueue succeeded.
func enqueueAll(t *testing.T, w *audit.Writer, goroutines, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				errs <- w.Enqueue(context.Background(), record(fmt.Sprint("group", g), i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
}

// hangingPool returns a pool on a server that accepts connections and never
// answers, as a database host that stopped responding does.
func hangingPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+ln.Addr().String()+"/none?sslmode=disable&connect_timeout=30")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// A database that refuses connections or never answers makes a sync
// Enqueue fail with ErrNotCommitted, within its context's deadline: the
// request is refused, not held.
func TestSyncEnqueueFailsWhenDatabaseFails(t *testing.T) {
	tests := []struct {
		name    string
		pool    func(t *testing.T) *pgxpool.Pool
		wantErr error
	}{
		{"refused", func(t *testing.T) *pgxpool.Pool { return unreachablePool(t) }, nil},
		{"hanging", hangingPool, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := newWriter(t, tt.pool(t), audit.Config{Mode: audit.ModeSync, WriteTimeout: time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := w.Enqueue(ctx, record("down", 0))
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Enqueue took %v with a 300ms deadline", took)
			}
			if !errors.Is(err, audit.ErrNotCommitted) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Enqueue = %v, want ErrNotCommitted (and %v)", err, tt.wantErr)
			}
			eventually(t, 3*time.Second, "Healthy reports the failed write", func() bool { return w.Healthy() != nil })
			eventually(t, 3*time.Second, "the record is given up", func() bool { return w.Depth() == 0 })
			if s := w.Stats(); s.Failed != 1 || s.Written != 0 {
				t.Errorf("Stats = %+v, want 1 failed, none written", s)
			}
		})
	}
}

// After an outage, Healthy recovers without a request: the writer probes
// the table itself. Then Enqueue commits again.
func TestSyncRecoversWithoutTraffic(t *testing.T) {
	db, url := auditDB(t)
	t.Cleanup(func() { allowConnections(t, url, true) })
	w, _ := newWriter(t, db, audit.Config{
		Mode: audit.ModeSync, RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
	})
	ctx := context.Background()
	allowConnections(t, url, false)
	if err := w.Enqueue(ctx, record("outage", 0)); !errors.Is(err, audit.ErrNotCommitted) {
		t.Fatalf("Enqueue while the database is down = %v, want ErrNotCommitted", err)
	}
	if w.Healthy() == nil {
		t.Fatal("Healthy() = nil after a failed write")
	}
	allowConnections(t, url, true)
	eventually(t, 5*time.Second, "Healthy recovers with no request", func() bool { return w.Healthy() == nil })
	if got := countRows(t, db); got != 0 {
		t.Errorf("the probe wrote %d rows", got)
	}
	if err := w.Enqueue(ctx, record("outage", 1)); err != nil {
		t.Fatalf("Enqueue after recovery: %v", err)
	}
	if got := countRows(t, db); got != 1 {
		t.Errorf("table holds %d rows, want 1", got)
	}
}

// A record the database refuses fails only its own Enqueue, with the
// database's error; the others in its batch are committed.
func TestSyncRefusedRecordFailsOnlyItself(t *testing.T) {
	db, _ := auditDB(t)
	w, _ := newWriter(t, slowCopy{db, 30 * time.Millisecond}, audit.Config{Mode: audit.ModeSync})
	if err := w.Enqueue(context.Background(), record("dup", 0)); err != nil {
		t.Fatal(err)
	}
	// The duplicate shares its COPY with the others, failing it whole.
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = w.Enqueue(context.Background(), record("dup", i)) })
	}
	wg.Wait()
	var pgErr *pgconn.PgError
	if !errors.Is(errs[0], audit.ErrNotCommitted) || !errors.As(errs[0], &pgErr) || pgErr.Code != "23505" {
		t.Errorf("Enqueue of a duplicate decision id = %v, want ErrNotCommitted wrapping a unique violation", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("Enqueue %d = %v, want nil", i+1, err)
		}
	}
	if got := countRows(t, db); got != 4 {
		t.Errorf("table holds %d rows, want 4", got)
	}
	if s := w.Stats(); s.Rejected != 1 || s.Written != 4 {
		t.Errorf("Stats = %+v, want 4 written, 1 rejected", s)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []audit.Mode{audit.ModeBatched, audit.ModeSync} {
		got, err := audit.ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := audit.ParseMode("async"); err == nil {
		t.Error(`ParseMode("async") succeeded`)
	}
	var m audit.Mode
	if err := m.UnmarshalText([]byte("sync")); err != nil || m != audit.ModeSync {
		t.Errorf("UnmarshalText(sync) = %v, %v", m, err)
	}
	if _, err := audit.New(unreachablePool(t), audit.Config{Mode: 7}); err == nil {
		t.Error("New accepted an unknown mode")
	}
}

// BenchmarkEnqueueModes measures what Enqueue costs a request in each mode
// at the concurrency of a busy server: 8 goroutines enqueue at once, into
// a real table. It reports the latency of one Enqueue (p50, p99) and the
// records per second; in sync mode, also how many records share a commit.
func BenchmarkEnqueueModes(b *testing.B) {
	const concurrency = 8
	for _, mode := range []audit.Mode{audit.ModeBatched, audit.ModeSync} {
		b.Run(mode.String(), func(b *testing.B) {
			db, _ := auditDB(b)
			w, _ := newWriter(b, db, audit.Config{Mode: mode, Block: true})
			lat := make([][]time.Duration, concurrency)
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range concurrency {
				wg.Go(func() { lat[g] = enqueueTimed(b, w, b.N/concurrency+1) })
			}
			wg.Wait()
			b.StopTimer()
			closeWriter(b, w)
			reportLatency(b, slices.Concat(lat...))
			s := w.Stats()
			b.ReportMetric(float64(s.Written)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(s.Written)/float64(max(s.Commits, 1)), "records/commit")
		})
	}
}

// enqueueTimed enqueues n records and returns how long each Enqueue took.
func enqueueTimed(b *testing.B, w *audit.Writer, n int) []time.Duration {
	r := record("bench", 0)
	r.Detail = map[string]any{"k": 10}
	out := make([]time.Duration, 0, n)
	for range n {
		r.DecisionID = audit.NewDecisionID()
		start := time.Now()
		if err := w.Enqueue(context.Background(), r); err != nil {
			b.Error(err)
			return out
		}
		out = append(out, time.Since(start))
	}
	return out
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op") // per-call latency is what matters, not b.N's share of wall time
}
