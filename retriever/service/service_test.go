package service_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// newService is a service on the shared fixture with the given audit log.
func newService(t *testing.T, log service.AuditLog) *service.Service {
	t.Helper()
	f := e2e.Shared(t)
	svc, err := service.New(service.Config{
		Pool: f.Pool, Policies: retriever.StaticPolicy(f.Policy), Auth: service.TokenAuth{Verifier: f.Verifier},
		Audit: log, Logger: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)),
		Now: func() time.Time { return e2e.FixedNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestRetrieveWithoutHTTP calls the service as a second front door would,
// with a decoded query and no HTTP: an allowed call answers the permitted
// chunks, an unauthenticated one is refused without its query being read,
// and each leaves its audit record under the decision id the caller got,
// with the caller's address and channel.
func TestRetrieveWithoutHTTP(t *testing.T) {
	f := e2e.Shared(t)
	w, err := audit.New(f.Pool, audit.Config{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, w)
	ctx := context.Background()
	alice := f.User(t, "alice")
	q := retriever.Query{Resource: "chunks", Embedding: f.Topic(6), K: 5}
	addr := netip.MustParseAddr("198.51.100.7")

	resp, err := svc.Retrieve(ctx, service.Call{Authorization: "Bearer " + f.Token(t, "alice", ""), Query: q, ClientAddr: addr, Channel: "mcp"})
	if err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	ids := make([]string, len(resp.Results))
	for i, r := range resp.Results {
		ids[i] = r.ID
	}
	if len(ids) != 5 || resp.Decision.ID == "" || len(resp.Decision.Rules) == 0 {
		t.Errorf("allowed call: %d results, decision %+v", len(ids), resp.Decision)
	}
	if bad := f.Invisible(t, alice, ids); len(bad) > 0 {
		t.Errorf("results %v are not visible to alice", bad)
	}

	decoded := false
	_, err = svc.Retrieve(ctx, service.Call{
		Decode:     func() (retriever.Query, error) { decoded = true; return q, nil },
		ClientAddr: addr, Channel: "mcp",
	})
	refused := service.DecisionID(err)
	if retriever.CodeOf(err) != retriever.CodeUnauthenticated || refused == "" || refused == resp.Decision.ID {
		t.Errorf("call without a token: %v (decision %q), want unauthenticated with its own decision id", err, refused)
	}
	if decoded {
		t.Error("the query of an unauthenticated call was decoded")
	}

	closeWriter(t, w)
	rows := f.AuditRows(t, []string{resp.Decision.ID, refused})
	allowed, denied := rows[resp.Decision.ID], rows[refused]
	if allowed.Outcome != "allowed" || allowed.Subject != "alice" || allowed.Tenant != alice.Tenant ||
		!slices.Equal(allowed.RowIDs, ids) || !slices.Equal(allowed.Rules, resp.Decision.Rules) || allowed.Detail["channel"] != "mcp" {
		t.Errorf("allowed call audited as %+v", allowed)
	}
	if denied.Outcome != "unauthenticated" || denied.Subject != "" || denied.Detail["error"] != "unauthenticated" || denied.Detail["channel"] != "mcp" {
		t.Errorf("unauthenticated call audited as %+v", denied)
	}
	for _, id := range []string{resp.Decision.ID, refused} {
		var client string
		if err := f.Pool.QueryRow(ctx, "SELECT host(client_addr) FROM ragfence.audit_log WHERE decision_id = $1", id).Scan(&client); err != nil || client != addr.String() {
			t.Errorf("decision %s: client_addr %q (%v), want %s", id, client, err, addr)
		}
	}
}

// TestNoRecordNoAnswer: a call whose audit record is refused is refused
// too, as unavailable, however allowed it was; and an answer the front door
// cannot encode is recorded as the error it becomes, not as allowed.
func TestNoRecordNoAnswer(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	call := service.Call{Authorization: "Bearer " + f.Token(t, "alice", ""),
		Query: retriever.Query{Resource: "chunks", Embedding: f.Topic(2), K: 3}}

	full := &recordingLog{refuse: errors.New("audit queue full")}
	resp, err := newService(t, full).Retrieve(ctx, call)
	if resp != nil || retriever.CodeOf(err) != retriever.CodeUnavailable || service.DecisionID(err) == "" {
		t.Errorf("audit refused: %v, %v; want no answer, unavailable, a decision id", resp, err)
	}

	log := &recordingLog{}
	call.Encode = func(*service.Response) error { return errors.New("cannot encode") }
	resp, err = newService(t, log).Retrieve(ctx, call)
	if resp != nil || retriever.CodeOf(err) != retriever.CodeInternal {
		t.Errorf("encoding failed: %v, %v; want internal", resp, err)
	}
	if len(log.records) != 1 || log.records[0].Outcome != "error" || log.records[0].Detail["error"] != "internal" ||
		log.records[0].DecisionID != service.DecisionID(err) {
		t.Errorf("encoding failed: audited %+v", log.records)
	}
}

// recordingLog is an AuditLog that keeps records in memory, or refuses them.
type recordingLog struct {
	refuse  error
	records []audit.Record
}

func (l *recordingLog) Enqueue(_ context.Context, r audit.Record) error {
	if l.refuse != nil {
		return l.refuse
	}
	l.records = append(l.records, r)
	return nil
}

func (l *recordingLog) Depth() int     { return len(l.records) }
func (l *recordingLog) Healthy() error { return l.refuse }

func closeWriter(t *testing.T, w *audit.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("audit writer close: %v", err)
	}
}
