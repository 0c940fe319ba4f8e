package approval_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/sqlc/migrations"
)

func migrated(t testing.TB) (string, *pgxpool.Pool) {
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

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatalf("%s: not within a second", what)
		}
	}
}

func TestApprovalFlow(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	w, err := approval.Watch(ctx, approval.WatchConfig{ConnConfig: cc, Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := approval.NewStore(pool)
	target := approval.Target{Tenant: "acme", Subject: "alice", Agent: "summarizer", Resource: "chunks", Rule: "classified"}
	approved := func() bool {
		f, err := w.For("acme", "alice", "summarizer")
		if err != nil {
			t.Fatal(err)
		}
		return f("chunks", "classified")
	}
	req, err := s.Request(ctx, target, "quarterly report", 30*time.Minute, approval.DefaultPendingFor)
	if err != nil {
		t.Fatal(err)
	}
	if req.Status != approval.StatusPending || req.TTL != 30*time.Minute {
		t.Fatalf("request: %+v", req)
	}
	if approved() {
		t.Fatal("a pending request lifts the rule")
	}
	// Nobody but alice of acme may decide it: the answer is not found, alike.
	for _, d := range []approval.Decider{{Tenant: "acme", Subject: "bob", By: "bob"}, {Tenant: "globex", Subject: "alice", By: "alice"}} {
		if _, err := s.Decide(ctx, req.ID, true, d); approval.CodeOf(err) != approval.CodeNotFound {
			t.Errorf("%+v decided alice's request: %v", d, err)
		}
	}
	a, err := s.Decide(ctx, req.ID, true, approval.Decider{Tenant: "acme", Subject: "alice", By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if d := a.ValidUntil.Sub(a.ValidFrom); d != 30*time.Minute {
		t.Fatalf("the approval lasts %s, want its ttl 30m", d)
	}
	eventually(t, "the approval is in force", approved)
	if _, err := s.Decide(ctx, req.ID, false, approval.Decider{Tenant: "acme", Subject: "alice", By: "alice"}); approval.CodeOf(err) != approval.CodeNotFound {
		t.Errorf("a decided request was decided again: %v", err)
	}
	if f, _ := w.For("acme", "alice", "crawler"); f("chunks", "classified") {
		t.Error("another agent got alice's approval")
	}
	clk.advance(30*time.Minute - time.Second)
	if !approved() {
		t.Fatal("ended before its ttl")
	}
	clk.advance(2 * time.Second)
	if approved() {
		t.Fatal("still in force after its ttl")
	}
}

func TestDenyAndExpiry(t *testing.T) {
	_, pool := migrated(t)
	ctx := context.Background()
	s := approval.NewStore(pool)
	target := approval.Target{Tenant: "acme", Subject: "alice", Agent: "summarizer", Resource: "chunks", Rule: "classified"}
	req, err := s.Request(ctx, target, "", time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Decide(ctx, req.ID, false, approval.Decider{By: "ops"})
	if err != nil || d.Status != approval.StatusDenied {
		t.Fatalf("deny: %+v %v", d, err)
	}
	short, err := s.Request(ctx, target, "", time.Hour, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := s.Decide(ctx, short.ID, true, approval.Decider{By: "ops"}); approval.CodeOf(err) != approval.CodeNotFound {
		t.Errorf("an expired request was approved: %v", err)
	}
	if st := short.StatusAt(time.Now()); st != approval.StatusExpired {
		t.Errorf("status %s, want expired", st)
	}
	if _, err := s.Decide(ctx, "not-a-uuid", true, approval.Decider{By: "ops"}); approval.CodeOf(err) != approval.CodeNotFound {
		t.Errorf("a malformed id: %v", err)
	}
}

// An operator's grant lifts the rule only within its window.
func TestGrantWindow(t *testing.T) {
	dsn, pool := migrated(t)
	ctx := context.Background()
	cc, _ := pgx.ParseConfig(dsn)
	clk := &clock{}
	w, err := approval.Watch(ctx, approval.WatchConfig{ConnConfig: cc, Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	target := approval.Target{Tenant: "acme", Subject: "alice", Agent: "auditor", Resource: "chunks", Rule: "classified"}
	from := time.Now().Add(time.Hour)
	if _, err := approval.NewStore(pool).Grant(ctx, target, from, from.Add(2*time.Hour), "ops", "quarterly audit"); err != nil {
		t.Fatal(err)
	}
	in := func() bool { _, ok := w.InForce(target, clk.now()); return ok }
	eventually(t, "the grant is loaded", func() bool { _, ok := w.InForce(target, from.Add(time.Minute)); return ok })
	if in() {
		t.Fatal("in force before its window")
	}
	clk.advance(time.Hour + time.Minute)
	if !in() {
		t.Fatal("not in force within its window")
	}
	clk.advance(2 * time.Hour)
	if in() {
		t.Fatal("in force after its window")
	}
}

// BenchmarkFor is the approval lookup a request pays: the target is
// under 1 µs.
func BenchmarkFor(b *testing.B) {
	dsn, pool := migrated(b)
	if _, err := pool.Exec(context.Background(), `INSERT INTO ragfence.approvals
		(tenant, subject, agent, resource, rule, status, requested_by, valid_from, valid_until)
		SELECT 't' || (i % 100), 'user-' || i, 'agent', 'chunks', 'classified', 'approved', 'bench', now(), now() + interval '1 hour'
		FROM generate_series(1, 10000) i`); err != nil {
		b.Fatal(err)
	}
	cc, _ := pgx.ParseConfig(dsn)
	w, err := approval.Watch(context.Background(), approval.WatchConfig{ConnConfig: cc})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	f, err := w.For("t7", "user-7", "agent")
	if err != nil || !f("chunks", "classified") {
		b.Fatalf("the fixture's approval is not in force: %v", err)
	}
	for b.Loop() {
		f, _ := w.For("t7", "user-7", "agent")
		_ = f("chunks", "classified")
	}
}
