package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/sqlc/store"
)

func TestRecordsRoundTrip(t *testing.T) {
	db, _ := auditDB(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	tests := []struct {
		name string
		rec  audit.Record
		want store.RagfenceAuditLog // ID and DecisionID are not compared
	}{
		{
			name: "every field",
			rec: audit.Record{
				DecidedAt: at, Subject: "alice", Tenant: "acme", Agent: "copilot",
				Resource: "chunks", PolicyVersion: "sha256:abc", Rules: []string{"tenant", "acl"},
				RowIDs: []string{"c1", "c2", "c3"}, ClientAddr: netip.MustParseAddr("192.0.2.7"),
				Latency: 1500 * time.Microsecond, Outcome: "allowed",
				Detail: map[string]any{"k": 3, "filter": map[string]any{"lang": "en"}},
			},
			want: store.RagfenceAuditLog{
				Subject: "alice", Tenant: "acme", Agent: text("copilot"), Resource: "chunks",
				PolicyVersion: "sha256:abc", Rules: []string{"tenant", "acl"}, RowCount: 3,
				RowIds: []string{"c1", "c2", "c3"}, ClientAddr: netip.MustParsePrefix("192.0.2.7/32"),
				LatencyMs: 1.5, Outcome: "allowed", Detail: []byte(`{"k": 3, "filter": {"lang": "en"}}`),
			},
		},
		{
			name: "refused, no agent, address, rows or detail",
			rec: audit.Record{
				DecidedAt: at, Subject: "bob", Tenant: "acme", Resource: "chunks",
				PolicyVersion: "v2", Outcome: "denied",
			},
			want: store.RagfenceAuditLog{
				Subject: "bob", Tenant: "acme", Resource: "chunks", PolicyVersion: "v2",
				Rules: []string{}, RowIds: []string{}, Outcome: "denied", Detail: []byte(`{}`),
			},
		},
		{
			name: "IPv6 address with a zone",
			rec: audit.Record{
				DecidedAt: at, Subject: "carol", Tenant: "t", Resource: "r", PolicyVersion: "v",
				ClientAddr: netip.MustParseAddr("fe80::1%eth0"), Outcome: "allowed",
			},
			want: store.RagfenceAuditLog{
				Subject: "carol", Tenant: "t", Resource: "r", PolicyVersion: "v",
				Rules: []string{}, RowIds: []string{}, ClientAddr: netip.MustParsePrefix("fe80::1/128"),
				Outcome: "allowed", Detail: []byte(`{}`),
			},
		},
		{
			name: "NUL bytes and invalid UTF-8 replaced",
			rec: audit.Record{
				DecidedAt: at, Subject: "da\x00ve", Tenant: "t\xff", Resource: "r", PolicyVersion: "v",
				Rules: []string{"a\x00"}, RowIDs: []string{"\xfe"}, Outcome: "error",
				Detail: map[string]any{"q\x00": "x\x00y", "raw": `\u0000`},
			},
			want: store.RagfenceAuditLog{
				Subject: "da\uFFFDve", Tenant: "t\uFFFD", Resource: "r", PolicyVersion: "v",
				Rules: []string{"a\uFFFD"}, RowCount: 1, RowIds: []string{"\uFFFD"}, Outcome: "error",
				Detail: []byte(`{"q\ufffd": "x\ufffdy", "raw": "\\u0000"}`),
			},
		},
	}
	w, _ := newWriter(t, db, audit.Config{})
	ids := make([]string, len(tests))
	for i, tt := range tests {
		ids[i] = audit.NewDecisionID()
		tt.rec.DecisionID = ids[i]
		if err := w.Enqueue(context.Background(), tt.rec); err != nil {
			t.Fatalf("%s: Enqueue: %v", tt.name, err)
		}
	}
	closeWriter(t, w)
	q := store.New(db)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := q.AuditRecordByDecision(context.Background(), ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if !got.DecidedAt.Time.Equal(at) {
				t.Errorf("decided_at = %v, want %v", got.DecidedAt.Time, at)
			}
			if !jsonEqual(t, got.Detail, tt.want.Detail) {
				t.Errorf("detail = %s, want %s", got.Detail, tt.want.Detail)
			}
			got.ID, got.DecisionID, got.DecidedAt, got.Detail = 0, "", tt.want.DecidedAt, tt.want.Detail
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestConcurrentEnqueuesAreAllWritten(t *testing.T) {
	db, _ := auditDB(t)
	w, _ := newWriter(t, db, audit.Config{BatchSize: 100, FlushInterval: 20 * time.Millisecond})
	const goroutines, each = 32, 250
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := w.Enqueue(context.Background(), record(fmt.Sprint("g", g), i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Enqueue: %v", err)
	}
	closeWriter(t, w)
	const n = goroutines * each
	var rows, distinct int
	if err := db.QueryRow(context.Background(),
		"SELECT count(*), count(DISTINCT decision_id) FROM ragfence.audit_log").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Errorf("table holds %d rows, %d distinct decisions; want %d", rows, distinct, n)
	}
	want := audit.Stats{QueueSize: audit.DefaultQueueSize, Enqueued: n, Written: n}
	got := w.Stats()
	if got.Commits == 0 || got.Commits > n {
		t.Errorf("Stats.Commits = %d for %d records", got.Commits, n)
	}
	if got.Commits = 0; got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestQueueFull(t *testing.T) {
	tests := []struct {
		name     string
		block    bool
		timeout  time.Duration // of the Enqueue that finds the queue full
		minWait  time.Duration
		wantErrs []error
	}{
		{name: "non-blocking fails at once", timeout: time.Hour, wantErrs: []error{audit.ErrQueueFull}},
		{
			name: "blocking waits until the context ends", block: true,
			timeout: 150 * time.Millisecond, minWait: 150 * time.Millisecond,
			wantErrs: []error{audit.ErrQueueFull, context.DeadlineExceeded},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The database refuses every connection, so the writer holds
			// its first batch and stops taking from the queue.
			const queue, batch = 4, 2
			w, _ := newWriter(t, unreachablePool(t), audit.Config{
				QueueSize: queue, BatchSize: batch, FlushInterval: time.Millisecond,
				Block: tt.block, RetryBackoff: 10 * time.Millisecond,
			})
			accepted := 0
			var err error
			var waited time.Duration
			for accepted <= queue+batch {
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				start := time.Now()
				err = w.Enqueue(ctx, record("full", accepted))
				waited = time.Since(start)
				cancel()
				if err != nil {
					break
				}
				accepted++
			}
			if accepted < queue || accepted > queue+batch {
				t.Errorf("accepted %d records, want between %d and %d", accepted, queue, queue+batch)
			}
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("Enqueue on a full queue = %v, want errors.Is %v", err, want)
				}
			}
			if waited < tt.minWait || (!tt.block && waited > 50*time.Millisecond) {
				t.Errorf("Enqueue on a full queue took %v", waited)
			}
			if s := w.Stats(); s.Refused != 1 || s.Depth != accepted {
				t.Errorf("Stats = %+v, want 1 refused, depth %d", s, accepted)
			}
			eventually(t, 5*time.Second, "Healthy reports the failing writes", func() bool { return w.Healthy() != nil })
			// Nothing could be written: Close gives up and says how much.
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			var lost *audit.LostError
			if err := w.Close(ctx); !errors.As(err, &lost) || lost.Lost != accepted {
				t.Errorf("Close = %v, want %d records lost", err, accepted)
			}
		})
	}
}

func TestBlockingEnqueueWaitsForRoom(t *testing.T) {
	db, url := auditDB(t)
	t.Cleanup(func() { allowConnections(t, url, true) })
	allowConnections(t, url, false)
	w, _ := newWriter(t, db, audit.Config{
		QueueSize: 1, BatchSize: 1, Block: true,
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
	})
	accepted := 0
	for { // fill the queue and the batch in flight
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := w.Enqueue(ctx, record("block", accepted))
		cancel()
		if err != nil {
			break
		}
		accepted++
	}
	returned := make(chan error, 1)
	go func() { returned <- w.Enqueue(context.Background(), record("block", accepted)) }()
	select {
	case err := <-returned:
		t.Fatalf("Enqueue on a full queue returned %v while the database was down", err)
	case <-time.After(300 * time.Millisecond):
	}
	allowConnections(t, url, true)
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("blocked Enqueue = %v, want nil once there is room", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Enqueue still blocked 10s after the database came back")
	}
	closeWriter(t, w)
	if got := countRows(t, db); got != accepted+1 {
		t.Errorf("table holds %d rows, want %d", got, accepted+1)
	}
}

func TestCloseFlushesEverythingQueued(t *testing.T) {
	db, _ := auditDB(t)
	// Neither the batch size nor the interval is reached: only Close writes.
	w, _ := newWriter(t, db, audit.Config{BatchSize: 5000, FlushInterval: time.Hour})
	const n = 3000
	for i := range n {
		if err := w.Enqueue(context.Background(), record("close", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := countRows(t, db); got != 0 {
		t.Fatalf("%d rows written before the batch was due", got)
	}
	if got := w.Depth(); got != n {
		t.Errorf("Depth() = %d, want %d", got, n)
	}
	closeWriter(t, w)
	if got := countRows(t, db); got != n {
		t.Errorf("after Close the table holds %d rows, want %d", got, n)
	}
	if got := w.Depth(); got != 0 {
		t.Errorf("Depth() after Close = %d, want 0", got)
	}
}

func TestCloseReportsLostRecordsWhenDatabaseUnreachable(t *testing.T) {
	w, logs := newWriter(t, unreachablePool(t), audit.Config{
		BatchSize: 4, FlushInterval: time.Millisecond, RetryBackoff: 20 * time.Millisecond,
	})
	const n = 10
	for i := range n {
		if err := w.Enqueue(context.Background(), record("lost", i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.Close(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with a 300ms deadline", took)
	}
	var lost *audit.LostError
	if !errors.As(err, &lost) || lost.Lost != n {
		t.Fatalf("Close = %v, want a *LostError with %d lost", err, n)
	}
	if !errors.Is(err, context.DeadlineExceeded) || lost.LastWrite == nil {
		t.Errorf("Close = %v, want it to wrap the deadline and the last write error", err)
	}
	if s := w.Stats(); s.Lost != n || s.Depth != 0 || s.Written != 0 {
		t.Errorf("Stats = %+v, want %d lost, depth 0", s, n)
	}
	// Every lost record is in the log, the only copy left.
	for i := range n {
		if id := fmt.Sprintf(`"decision_id":"lost-%d"`, i); !strings.Contains(logs.String(), id) {
			t.Errorf("log lacks lost record %s", id)
		}
	}
	if again := w.Close(context.Background()); !errors.As(again, &lost) {
		t.Errorf("second Close = %v, want the same *LostError", again)
	}
}

func TestDatabaseDownThenBack(t *testing.T) {
	db, url := auditDB(t)
	t.Cleanup(func() { allowConnections(t, url, true) })
	w, _ := newWriter(t, db, audit.Config{
		FlushInterval: 5 * time.Millisecond,
		RetryBackoff:  10 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond,
	})
	ctx := context.Background()
	if err := w.Enqueue(ctx, record("up", 0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the first record is written", func() bool { return w.Stats().Written == 1 })

	allowConnections(t, url, false)
	const n = 5
	for i := range n {
		if err := w.Enqueue(ctx, record("down", i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "Healthy reports the failing writes", func() bool { return w.Healthy() != nil })
	if got := w.Depth(); got != n {
		t.Errorf("Depth() while down = %d, want %d", got, n)
	}

	allowConnections(t, url, true)
	eventually(t, 10*time.Second, "the held records are written", func() bool { return w.Stats().Written == n+1 })
	if err := w.Healthy(); err != nil {
		t.Errorf("Healthy() after recovery = %v", err)
	}
	closeWriter(t, w)
	if got := countRows(t, db); got != n+1 {
		t.Errorf("table holds %d rows, want %d", got, n+1)
	}
	if s := w.Stats(); s.WriteErrors == 0 || s.Lost != 0 || s.Rejected != 0 {
		t.Errorf("Stats = %+v, want write errors and nothing lost or rejected", s)
	}
}

func TestRefusedRecordIsSetAsideAndTheRestWritten(t *testing.T) {
	db, _ := auditDB(t)
	w, logs := newWriter(t, db, audit.Config{FlushInterval: time.Hour})
	// One batch; its third record repeats the first's decision id, which the
	// unique index refuses, failing the whole COPY.
	for _, id := range []string{"a", "b", "a", "c"} {
		r := record("dup", 0)
		r.DecisionID = id
		if err := w.Enqueue(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	if got := countRows(t, db); got != 3 {
		t.Errorf("table holds %d rows, want 3", got)
	}
	if s := w.Stats(); s.Written != 3 || s.Rejected != 1 || s.Depth != 0 {
		t.Errorf("Stats = %+v, want 3 written, 1 rejected", s)
	}
	if !strings.Contains(logs.String(), `"msg":"audit: decision id already in audit_log`) {
		t.Errorf("log does not mention the refused record:\n%s", logs)
	}
}

func TestCloseDuringEnqueuesKeepsEveryAcceptedRecord(t *testing.T) {
	db, _ := auditDB(t)
	cases := []audit.Config{{}, {Block: true}, {Mode: audit.ModeSync}, {Mode: audit.ModeSync, Block: true}}
	for _, cfg := range cases {
		t.Run(fmt.Sprintf("%v/block=%v", cfg.Mode, cfg.Block), func(t *testing.T) {
			if _, err := db.Exec(context.Background(), "TRUNCATE ragfence.audit_log"); err != nil {
				t.Fatal(err)
			}
			cfg.QueueSize, cfg.BatchSize = 64, 16
			w, _ := newWriter(t, db, cfg)
			var accepted sync.WaitGroup
			var mu sync.Mutex
			n := 0
			for g := range 8 {
				accepted.Go(func() {
					for i := 0; ; i++ {
						err := w.Enqueue(context.Background(), record(fmt.Sprint("race", g), i))
						if errors.Is(err, audit.ErrClosed) {
							return
						}
						if err == nil {
							mu.Lock()
							n++
							mu.Unlock()
						}
					}
				})
			}
			time.Sleep(50 * time.Millisecond)
			closeWriter(t, w)
			accepted.Wait()
			if n == 0 {
				t.Fatal("no record accepted before Close")
			}
			if got := countRows(t, db); got != n {
				t.Errorf("Enqueue accepted %d records, the table holds %d", n, got)
			}
		})
	}
}

func TestEnqueueAfterClose(t *testing.T) {
	db, _ := auditDB(t)
	w, _ := newWriter(t, db, audit.Config{})
	closeWriter(t, w)
	if err := w.Enqueue(context.Background(), record("late", 0)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if err := w.Healthy(); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Healthy after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestEnqueueRefusesInvalidRecords(t *testing.T) {
	w, _ := newWriter(t, unreachablePool(t), audit.Config{})
	tests := []struct {
		name   string
		change func(*audit.Record)
	}{
		{"empty decision id", func(r *audit.Record) { r.DecisionID = "" }},
		{"zero time", func(r *audit.Record) { r.DecidedAt = time.Time{} }},
		{"empty outcome", func(r *audit.Record) { r.Outcome = "" }},
		{"detail not JSON", func(r *audit.Record) { r.Detail = map[string]any{"f": func() {}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := record("bad", 0)
			tt.change(&r)
			if err := w.Enqueue(context.Background(), r); !errors.Is(err, audit.ErrInvalidRecord) {
				t.Errorf("Enqueue = %v, want ErrInvalidRecord", err)
			}
		})
	}
	if got := w.Depth(); got != 0 {
		t.Errorf("Depth() = %d, want 0", got)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	pool := unreachablePool(t)
	tests := []struct {
		name string
		db   store.DBTX
		cfg  audit.Config
	}{
		{"nil database", nil, audit.Config{}},
		{"negative queue", pool, audit.Config{QueueSize: -1}},
		{"negative interval", pool, audit.Config{FlushInterval: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w, err := audit.New(tt.db, tt.cfg); err == nil {
				_ = w.Close(context.Background())
				t.Error("New succeeded")
			}
		})
	}
}

// BenchmarkEnqueue measures, in "sustained", throughput into the table:
// blocking Enqueues from parallel goroutines with default batching, Close
// included. "accept" measures what Enqueue costs a request: the queue is
// large enough for every record and nothing is written.
func BenchmarkEnqueue(b *testing.B) {
	proto := record("bench", 0)
	proto.Detail = map[string]any{"k": 10}
	run := func(b *testing.B, w *audit.Writer) {
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := proto
			for pb.Next() {
				r.DecisionID = audit.NewDecisionID()
				if err := w.Enqueue(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("sustained", func(b *testing.B) {
		db, _ := auditDB(b)
		w, _ := newWriter(b, db, audit.Config{Block: true})
		run(b, w)
		closeWriter(b, w)
		b.StopTimer()
		b.ReportMetric(float64(w.Stats().Written)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("accept", func(b *testing.B) {
		noLeak(b)
		w, err := audit.New(unreachablePool(b), audit.Config{
			QueueSize: b.N + 1, BatchSize: b.N + 1, FlushInterval: time.Hour,
			Logger: slog.New(slog.DiscardHandler), // the lost records, at Close
		})
		if err != nil {
			b.Fatal(err)
		}
		run(b, w)
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if err := w.Close(ctx); err == nil {
			b.Error("Close wrote records to an unreachable database")
		}
	})
}
