package e2e

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/pgpool"
)

// The benchmarks split a search's wall time into the database round trips
// and everything else, the middleware's in-process cost. They run on the
// shared fixture (the demo data, 4,000 chunks with an HNSW index) over a
// TracedPool of their own whose pgx tracer times every database call:
//
//   - db-ns/op: wall time during which a database call on that pool is in
//     flight, from pgx's TraceQueryStart (Query, QueryRow, Exec, and so
//     BEGIN and COMMIT) or TraceBatchStart to the matching End; overlapping
//     calls count once. pgx ends a query's span when its rows are closed, so
//     the span also holds pgx's own client-side work: encoding the
//     arguments (the query vector), decoding the rows and the row-scanning
//     callback. Acquiring and releasing the pool's connection is outside
//     any span, so it counts as in-process.
//   - wire-ns/op: wall time blocked in the database socket's Read and Write:
//     the network and the server alone, a lower bound of db-ns.
//   - inproc-ns/op: ns/op minus db-ns/op; inproc-% is its share of ns/op.
//   - db-calls/op: traced calls per operation, so a search that stops going
//     through traced calls (db-ns would then read 0) shows.
//
// Connections, prepared statements, the fragment cache and the searcher's
// embedding-dimension cache are warmed up before the timer starts. The
// numbers are wall-clock times on a shared machine: noisy, and the database
// (on loopback here) competes with the Go process for the same cores.

// warmup is how many operations run before the timer starts.
const warmup = 5

// TracedPool is a pool on the fixture's database whose database calls and
// socket waits are timed.
type TracedPool struct {
	Pool *pgxpool.Pool
	db   *spanClock // traced pgx calls
	wire *spanClock // blocked in the socket's Read or Write
}

// NewTracedPool opens a TracedPool on dsn, closed when tb ends.
func NewTracedPool(tb testing.TB, dsn string) *TracedPool {
	tb.Helper()
	cfg, err := pgpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	t := &TracedPool{db: &spanClock{}, wire: &spanClock{}}
	cfg.ConnConfig.Tracer = (*dbTracer)(t.db)
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &timedConn{Conn: c, clock: t.wire}, nil
	}
	if t.Pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(t.Pool.Close)
	return t
}

// Measure runs op warmup times, then in b.Loop, and reports the split.
func (t *TracedPool) Measure(b *testing.B, op func()) {
	b.Helper()
	for range warmup {
		op()
	}
	t.db.reset()
	t.wire.reset()
	b.ReportAllocs()
	for b.Loop() {
		op()
	}
	total := b.Elapsed()
	db, calls, open := t.db.read()
	if open != 0 {
		b.Fatalf("%d traced database calls never ended", open)
	}
	wire, _, _ := t.wire.read()
	if calls == 0 {
		b.Fatal("the tracer saw no database call: the search no longer goes through pgx Query, Exec or SendBatch on the pool it is given")
	}
	n := float64(b.N)
	b.ReportMetric(float64(db.Nanoseconds())/n, "db-ns/op")
	b.ReportMetric(float64(wire.Nanoseconds())/n, "wire-ns/op")
	b.ReportMetric(float64((total-db).Nanoseconds())/n, "inproc-ns/op")
	b.ReportMetric(100*float64(total-db)/float64(total), "inproc-%")
	b.ReportMetric(float64(calls)/n, "db-calls/op")
}

// spanClock adds up the wall time during which at least one span is open,
// so overlapping spans (concurrent calls) count once.
type spanClock struct {
	mu     sync.Mutex
	open   int
	since  time.Time
	total  time.Duration
	starts int
}

func (c *spanClock) start() {
	c.mu.Lock()
	if c.open == 0 {
		c.since = time.Now()
	}
	c.open++
	c.starts++
	c.mu.Unlock()
}

func (c *spanClock) end() {
	c.mu.Lock()
	c.open--
	if c.open == 0 {
		c.total += time.Since(c.since)
	}
	c.mu.Unlock()
}

func (c *spanClock) reset() {
	c.mu.Lock()
	c.total, c.starts = 0, 0
	c.since = time.Now() // a span open across the reset counts from here
	c.mu.Unlock()
}

// read returns the time and the number of spans since the last reset, and
// how many spans are open now (not counted in the time).
func (c *spanClock) read() (total time.Duration, starts, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, c.starts, c.open
}

// dbTracer is a pgx tracer that times queries and batches on a spanClock.
type dbTracer spanClock

var (
	_ pgx.QueryTracer = (*dbTracer)(nil)
	_ pgx.BatchTracer = (*dbTracer)(nil)
)

func (t *dbTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	(*spanClock)(t).start()
	return ctx
}

func (t *dbTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {
	(*spanClock)(t).end()
}

func (t *dbTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	(*spanClock)(t).start()
	return ctx
}

func (t *dbTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *dbTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	(*spanClock)(t).end()
}

// timedConn times the database socket's blocking reads and writes.
type timedConn struct {
	net.Conn
	clock *spanClock
}

func (c *timedConn) Read(p []byte) (int, error) {
	c.clock.start()
	defer c.clock.end()
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	c.clock.start()
	defer c.clock.end()
	return c.Conn.Write(p)
}
