package retriever_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
)

// The benchmarks split a search's wall time into the database round trips
// and everything else, the middleware's in-process cost. They run on the
// shared fixture (the demo data, 4,000 chunks with an HNSW index) over a
// pool of their own whose pgx tracer times every database call:
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
// Connections, prepared statements, the fragment cache and the server's
// embedding-dimension cache are warmed up before the timer starts. The
// numbers are wall-clock times on a shared machine: noisy, and the database
// (on loopback here) competes with the Go process for the same cores.

// warmup is how many operations run before the timer starts.
const warmup = 5

// benchK is the number of results every benchmarked search asks for.
const benchK = 10

// BenchmarkRetrieveHandler is one POST /v1/retrieve through the server's
// http.Handler, as alice, with a precomputed 384-dimensional embedding and
// k=10.
//
// In the measurement: building the *http.Request (httptest.NewRequest, in
// place of net/http's parsing), Echo's routing, HS256 JWT verification, the
// strict JSON decoding and validation of the body, the subject check, the
// policy fragment, the SQL, the database round trips, the response's JSON
// encoding into a ResponseRecorder, the audit record's Enqueue, the
// Prometheus metrics and the request's log line (formatted as serve does,
// JSON at info level, written to io.Discard).
//
// Out of it: a real listener (TCP, HTTP/1.1 framing), the embedder, and the
// audit writer's database writes: the real writer with serve's defaults
// batches them on a background goroutine, through the fixture's pool, which
// is not traced. Its CPU time still shares the machine with the benchmark.
func BenchmarkRetrieveHandler(b *testing.B) {
	f := sharedEnv(b)
	db := newTracedPool(b, f.dsn)
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := audit.New(f.pool, audit.Config{Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			b.Errorf("audit writer close: %v", err)
		}
	})
	srv, err := retriever.New(retriever.Config{
		Pool: db.pool, Policies: retriever.StaticPolicy(f.policy), Auth: verifierAuth{f.verifier},
		Audit: w, Logger: logger, StatementTimeout: 5 * time.Second, // serve's default
	})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	authz := "Bearer " + f.token(b, "alice", "")
	body, err := json.Marshal(retrieveBody{Collection: "chunks", Embedding: f.topic(0), K: benchK})
	if err != nil {
		b.Fatal(err)
	}
	var rec *httptest.ResponseRecorder
	op := func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/retrieve", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", authz)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	op()
	if n := len(reply{status: rec.Code, body: rec.Body.Bytes()}.response(b).Results); n != benchK {
		b.Fatalf("%d results, want %d", n, benchK)
	}
	db.measure(b, op)
}

// BenchmarkSearch is retriever.Search, the library path: the fragment, the
// SQL and the database round trips, without HTTP, JWT, JSON or audit.
func BenchmarkSearch(b *testing.B) {
	f := sharedEnv(b)
	db := newTracedPool(b, f.dsn)
	req := benchRequest(b, f.data, f.policy)
	q := retriever.Query{Resource: "chunks", Embedding: f.topic(0), K: benchK}
	opt := retriever.Options{StatementTimeout: 5 * time.Second} // as the handler benchmark
	ctx := context.Background()
	db.measure(b, func() {
		res, _, err := retriever.Search(ctx, db.pool, f.policy, req, q, opt)
		if err != nil {
			b.Fatal(err)
		}
		if len(res) != benchK {
			b.Fatalf("%d results, want %d", len(res), benchK)
		}
	})
}

// BenchmarkSearchQueryBuilding is the in-process part of Search before the
// database: the policy fragment for the request (Fragment, public), and
// that plus the search statement (FragmentAndSQL, through SearchStatement
// in export_test.go, which calls search.go's unexported builder). It needs
// no database.
func BenchmarkSearchQueryBuilding(b *testing.B) {
	p := compileMaskedPolicy(b)
	d := demo.Generate(demo.Config{Chunks: 4000}) // the fixture's data, unseeded
	req := benchRequest(b, d, p)
	q := retriever.Query{Resource: "chunks", Embedding: d.Topics[0].Centre, K: benchK}
	b.Run("Fragment", func(b *testing.B) {
		r := req
		r.Alias = "c"
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Fragment(q.Resource, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FragmentAndSQL", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := retriever.SearchStatement(p, req, q); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRequest is alice's filter request, with her attributes converted as
// the handler converts a token's.
func benchRequest(tb testing.TB, d *demo.Dataset, p *filter.Policy) filter.Request {
	tb.Helper()
	for _, u := range d.Users {
		if u.ID != "alice" {
			continue
		}
		s, err := p.Set().CheckSubject(&policy.Subject{ID: u.ID, Tenant: u.TenantID, Roles: u.Roles, Groups: u.Groups,
			Attributes: map[string]any{"clearance": u.Clearance}})
		if err != nil {
			tb.Fatal(err)
		}
		// The address httptest.NewRequest gives, as in the handler benchmark.
		return filter.Request{Subject: s, Context: policy.Context{Time: fixedNow, IP: netip.MustParseAddr("192.0.2.1")}}
	}
	tb.Fatal("no demo user alice")
	return filter.Request{}
}

// compileMaskedPolicy compiles the fixture's policy without a database.
func compileMaskedPolicy(tb testing.TB) *filter.Policy {
	tb.Helper()
	set, err := policy.Parse(policy.Source{Name: "demo-masked.yaml", Data: []byte(maskedPolicy)})
	if err != nil {
		tb.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// tracedPool is a pool on the fixture's database whose database calls and
// socket waits are timed.
type tracedPool struct {
	pool *pgxpool.Pool
	db   *spanClock // traced pgx calls
	wire *spanClock // blocked in the socket's Read or Write
}

func newTracedPool(tb testing.TB, dsn string) *tracedPool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	t := &tracedPool{db: &spanClock{}, wire: &spanClock{}}
	cfg.ConnConfig.Tracer = (*dbTracer)(t.db)
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &timedConn{Conn: c, clock: t.wire}, nil
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	if t.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(t.pool.Close)
	return t
}

// measure runs op warmup times, then in b.Loop, and reports the split.
func (t *tracedPool) measure(b *testing.B, op func()) {
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
