package service_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
)

// With a sync audit writer the record is committed when the answer
// returns (no Close, no flush in between); when the commit fails the call
// is refused as unavailable, saying so, with no answer.
func TestSyncAuditCommitsBeforeAnswering(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	call := service.Call{Authorization: "Bearer " + f.Token(t, "alice", ""),
		Query: retriever.Query{Resource: "chunks", Embedding: f.Topic(3), K: 3}}

	w, err := audit.New(f.Pool, audit.Config{Mode: audit.ModeSync, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWriter(t, w)
	resp, err := newService(t, w).Retrieve(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := f.Pool.QueryRow(ctx, "SELECT count(*) FROM ragfence.audit_log WHERE decision_id = $1",
		resp.Decision.ID).Scan(&n); err != nil || n != 1 {
		t.Errorf("decision %s: %d audit rows (%v) when the answer returned, want 1", resp.Decision.ID, n, err)
	}

	down, err := audit.New(unreachable(t), audit.Config{Mode: audit.ModeSync, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = down.Close(ctx) }()
	resp, err = newService(t, down).Retrieve(ctx, call)
	var re *retriever.Error
	if resp != nil || retriever.CodeOf(err) != retriever.CodeUnavailable {
		t.Fatalf("audit database down: %v, %v; want no answer, unavailable", resp, err)
	}
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "could not be committed") || !errors.Is(err, audit.ErrNotCommitted) {
		t.Errorf("audit database down: %v, want a message saying the record could not be committed", err)
	}
}

// unreachable is a pool whose every connection is refused: its port was
// listened on and closed.
func unreachable(t *testing.T) *pgxpool.Pool {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
