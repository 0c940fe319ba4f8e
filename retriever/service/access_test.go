package service_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/auth"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
	"github.com/ragfence/ragfence/revocation"
)

// accessService is a service on the shared fixture with real revocation
// and approval watchers.
func accessService(t *testing.T, log service.AuditLog) (*service.Service, *revocation.Watcher, *approval.Watcher) {
	t.Helper()
	f := e2e.Shared(t)
	cc, err := pgx.ParseConfig(f.DSN)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))
	rw, err := revocation.Watch(context.Background(), revocation.WatchConfig{ConnConfig: cc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rw.Close)
	aw, err := approval.Watch(context.Background(), approval.WatchConfig{ConnConfig: cc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aw.Close)
	svc, err := service.New(service.Config{
		Pool: f.Pool, Policies: retriever.StaticPolicy(f.Policy), Auth: service.TokenAuth{Verifier: f.Verifier},
		Audit: log, Logger: quiet, Revocations: rw, Approvals: aw,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, rw, aw
}

// A user of the test's own, so that revoking it touches no other test.
func ownToken(t *testing.T, subject, agent string) string {
	return e2e.MintToken(t, auth.MintClaims{Subject: subject, Tenant: "acme", Attributes: map[string]any{"clearance": 3}, Agent: agent,
		IssuedAt: e2e.FixedNow})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatalf("%s: not within a second", what)
		}
	}
}

// A refused call's audit record names the revocation; its message names
// the revocation and since when, never the reason.
func TestRevocationRefusalIsAudited(t *testing.T) {
	f := e2e.Shared(t)
	log := &recordingLog{}
	svc, rw, _ := accessService(t, log)
	ctx := context.Background()
	r, err := revocation.NewStore(f.Pool).Revoke(ctx, revocation.Request{Tenant: "acme", Agent: "summarizer", Subject: "svc-rev-user",
		By: "test", Reason: "secret reason"})
	if err != nil {
		t.Fatal(err)
	}
	caller := revocation.Caller{Tenant: "acme", Subject: "svc-rev-user", Agent: "summarizer"}
	waitFor(t, "revocation heard", func() bool { return rw.Check(caller) != nil })
	call := service.Call{Authorization: "Bearer " + ownToken(t, "svc-rev-user", "summarizer"),
		Query: retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 3}}
	_, err = svc.Retrieve(ctx, call)
	if retriever.CodeOf(err) != service.CodeAgentRevoked {
		t.Fatalf("revoked agent: %v", err)
	}
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte("revocation ")) || bytes.Contains([]byte(msg), []byte("secret")) {
		t.Errorf("message %q: want the revocation named, not its reason", msg)
	}
	rec := log.records[len(log.records)-1]
	if rec.Outcome != "denied" || rec.Detail["revocation_id"] != r.ID || rec.Detail["error"] != "agent_revoked" || rec.Agent != "summarizer" {
		t.Errorf("audited as %+v", rec)
	}
	// The same user without the agent is served.
	call.Authorization = "Bearer " + ownToken(t, "svc-rev-user", "")
	if _, err := svc.Retrieve(ctx, call); err != nil {
		t.Errorf("the user without the agent: %v", err)
	}
}

// GET /v1/access's answer: what an agent acting for the user may read, its
// grant, its approval rules' states, and the revocations in force.
func TestAccessTellsWhatAnAgentMaySee(t *testing.T) {
	f := e2e.Shared(t)
	svc, _, aw := accessService(t, &recordingLog{})
	ctx := context.Background()
	user := service.Caller{Authorization: "Bearer " + ownToken(t, "svc-access-user", "")}
	a, err := svc.Access(ctx, user, "summarizer")
	if err != nil {
		t.Fatal(err)
	}
	if a.Agent != "summarizer" || len(a.Collections) != 1 {
		t.Fatalf("access: %+v", a)
	}
	c := a.Collections[0]
	if !c.Readable || c.Grant == nil || len(c.Grant.Allow) != 1 || len(c.Approvals) != 1 || c.Approvals[0].State != "none" {
		t.Fatalf("chunks for the agent: %+v", c)
	}
	target := approval.Target{Tenant: "acme", Subject: "svc-access-user", Agent: "summarizer", Resource: "chunks", Rule: "classified"}
	if _, err := approval.NewStore(f.Pool).Grant(ctx, target, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "test", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "grant heard", func() bool { _, ok := aw.InForce(target, time.Now()); return ok })
	if a, err = svc.Access(ctx, user, "summarizer"); err != nil || a.Collections[0].Approvals[0].State != "approved" || a.Collections[0].Approvals[0].Until == nil {
		t.Fatalf("after the grant: %+v %v", a, err)
	}
	resp, err := svc.Retrieve(ctx, service.Call{Authorization: "Bearer " + ownToken(t, "svc-access-user", "summarizer"),
		Query: retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 3}})
	if err != nil || len(resp.Decision.ApprovalRequired) != 0 {
		t.Errorf("the approved agent's search: %v, approval_required %v", err, resp.Decision.ApprovalRequired)
	}
	// An agent's token may not ask about another agent; a user's own
	// access has no grant.
	agent := service.Caller{Authorization: "Bearer " + ownToken(t, "svc-access-user", "summarizer")}
	if _, err := svc.Access(ctx, agent, "crawler"); retriever.CodeOf(err) != retriever.CodeInvalidSubject {
		t.Errorf("an agent asking about another: %v", err)
	}
	if a, err := svc.Access(ctx, user, ""); err != nil || a.Collections[0].Grant != nil || !a.Collections[0].Readable {
		t.Errorf("the user's own access: %+v %v", a, err)
	}
}

// Each expiry, of a pending request or of an approval, is one audit
// record, however many servers sweep.
func TestExpiriesAreAuditedOnce(t *testing.T) {
	f := e2e.Shared(t)
	svcA, _, _ := accessService(t, &recordingLog{})
	svcB, _, _ := accessService(t, &recordingLog{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	target := approval.Target{Tenant: "acme", Subject: "svc-expiry-user", Agent: "summarizer", Resource: "chunks", Rule: "classified"}
	s := approval.NewStore(f.Pool)
	pending, err := s.Request(ctx, target, "", time.Minute, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	granted, err := s.Grant(ctx, target, time.Now().Add(-time.Minute), time.Now().Add(20*time.Millisecond), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	go svcA.SweepExpiredApprovals(ctx, 20*time.Millisecond)
	go svcB.SweepExpiredApprovals(ctx, 20*time.Millisecond)
	count := func(id string) (n int) {
		if err := f.Pool.QueryRow(ctx, `SELECT count(*) FROM ragfence.audit_log
			WHERE outcome = 'approval' AND detail->>'event' = 'expired' AND detail->>'approval_id' = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "both expiries recorded", func() bool { return count(pending.ID) > 0 && count(granted.ID) > 0 })
	time.Sleep(100 * time.Millisecond) // more sweeps, on both servers
	if a, b := count(pending.ID), count(granted.ID); a != 1 || b != 1 {
		t.Errorf("expiry records: %d for the request, %d for the approval; want one each", a, b)
	}
}
