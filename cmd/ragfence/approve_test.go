package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/internal/testdb"
)

func TestGrantAndApproveCommands(t *testing.T) {
	dsn := testdb.Database(t)
	ctx := context.Background()
	mustRun(t, ctx, "migrate", "--db", dsn)
	policy := t.TempDir() + "/policy.yaml"
	writeFile(t, policy, []byte(`version: 1
resources:
  chunks:
    tenant: tenant_id
    allow: [{name: all, when: "true"}]
    agents:
      auditor:
        allow: [{name: all, when: "true"}]
        approval: [{name: classified, when: classification > 0, ttl: 1h}]
`))
	from, until := time.Now().Add(time.Hour).UTC(), time.Now().Add(3*time.Hour).UTC()
	for _, bad := range [][]string{
		{"--rule", "no-such-rule", "--until", until.Format(time.RFC3339)},                        // lifts nothing
		{"--rule", "classified", "--until", time.Now().Add(48 * time.Hour).Format(time.RFC3339)}, // past the maximum
	} {
		args := append([]string{"grant", "--db", dsn, "--policy", policy, "--tenant", "acme", "--subject", "alice", "--agent", "auditor",
			"--collection", "chunks"}, bad...)
		var o, e bytes.Buffer
		if code := run(ctx, args, &o, &e); code != exitUsage {
			t.Errorf("grant %v: exit %d (%s), want %d", bad, code, e.String(), exitUsage)
		}
	}
	id := strings.TrimSpace(mustRun(t, ctx, "grant", "--db", dsn, "--policy", policy, "--tenant", "acme", "--subject", "alice", "--agent", "auditor",
		"--collection", "chunks", "--rule", "classified", "--from", from.Format(time.RFC3339), "--until", until.Format(time.RFC3339),
		"--reason", "quarterly audit"))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	s := approval.NewStore(conn)
	list, err := s.OfSubject(ctx, "acme", "alice")
	if err != nil || len(list) != 1 || list[0].ID != id || !list[0].ValidFrom.Equal(from.Truncate(time.Second)) {
		t.Fatalf("after grant: %+v %v (id %s)", list, err, id)
	}
	req, err := s.Request(ctx, approval.Target{Tenant: "acme", Subject: "alice", Agent: "summarizer", Resource: "chunks", Rule: "classified"},
		"", 30*time.Minute, approval.DefaultPendingFor)
	if err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, ctx, "approve", "--db", dsn, "--by", "secops", req.ID); !strings.HasPrefix(out, "approved "+req.ID+" until ") {
		t.Errorf("approve printed %q", out)
	}
	var o, e bytes.Buffer
	if code := run(ctx, []string{"approve", "--db", dsn, req.ID}, &o, &e); code != exitFailure || !strings.Contains(e.String(), "no pending approval request") {
		t.Errorf("approving twice: exit %d: %s", code, e.String())
	}
	var events []string
	rows, err := conn.Query(ctx, `SELECT detail->>'event' FROM ragfence.audit_log WHERE outcome = 'approval' ORDER BY id`)
	if err == nil {
		events, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || strings.Join(events, ",") != "granted,approved" {
		t.Errorf("audit records %v (%v), want granted,approved", events, err)
	}
	if code := run(ctx, []string{"grant", "--db", dsn, "--tenant", "acme"}, &o, &e); code != exitUsage {
		t.Errorf("grant without its flags: exit %d", code)
	}
}

// ragfence query binds the agent's approvals in force, as serve does.
func TestQueryBindsApprovals(t *testing.T) {
	dsn := testdb.Database(t)
	ctx := context.Background()
	dir := t.TempDir()
	mustRun(t, ctx, "migrate", "--db", dsn)
	mustRun(t, ctx, "demo", "--db", dsn, "--out", dir, "--chunks", "500")
	subject := dir + "/query-user.json"
	writeFile(t, subject, []byte(`{"id": "query-user", "tenant": "acme", "attributes": {"clearance": 3}}`))
	count := func() string {
		return strings.TrimSpace(mustRun(t, ctx, "query", "--db", dsn, "--policy", dir+"/policy.yaml", "--subject", subject,
			"--agent", "summarizer", "SELECT count(*) AS n FROM chunks WHERE classification > 0"))
	}
	if got := count(); got != `{"n":0}` {
		t.Fatalf("before any approval: %s", got)
	}
	mustRun(t, ctx, "grant", "--db", dsn, "--policy", dir+"/policy.yaml", "--tenant", "acme", "--subject", "query-user", "--agent", "summarizer",
		"--collection", "chunks", "--rule", "classified", "--until", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if got := count(); got == `{"n":0}` {
		t.Fatalf("with a grant in force the agent still sees no classified chunk: %s", got)
	}
}
