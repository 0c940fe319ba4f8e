package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
)

func TestRevokeCommand(t *testing.T) {
	dsn := testdb.Database(t)
	ctx := context.Background()
	mustRun(t, ctx, "migrate", "--db", dsn)
	out := mustRun(t, ctx, "revoke", "--db", dsn, "--tenant", "acme", "--agent", "summarizer", "--subject", "alice",
		"--for", "2h", "--reason", "prompt injection suspected", "--by", "secops")
	id, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("revoke printed %q, want one line with the id", out)
	}
	mustRun(t, ctx, "revoke", "--db", dsn, "--tenant", "globex", "--subject", "bob", "--by", "secops")
	list := mustRun(t, ctx, "revoke", "--db", dsn, "--list", "--tenant", "acme")
	for _, want := range []string{strconv.FormatInt(id, 10), "summarizer for alice", "agent", "secops", "prompt injection suspected"} {
		if !strings.Contains(list, want) {
			t.Errorf("--list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "bob") {
		t.Errorf("--list --tenant acme shows another tenant's revocation:\n%s", list)
	}
	if all := mustRun(t, ctx, "revoke", "--db", dsn, "--list"); !strings.Contains(all, "bob") {
		t.Errorf("--list without --tenant misses globex:\n%s", all)
	}
	if out := mustRun(t, ctx, "revoke", "--db", dsn, "--lift", strconv.FormatInt(id, 10), "--by", "secops"); !strings.Contains(out, "lifted revocation") {
		t.Errorf("--lift: %s", out)
	}
	if list := mustRun(t, ctx, "revoke", "--db", dsn, "--list", "--tenant", "acme"); strings.Contains(list, "summarizer") {
		t.Errorf("a lifted revocation is still listed:\n%s", list)
	}
	// Both changes left their audit record, with who and why.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var events []string
	rows, err := conn.Query(ctx, `SELECT detail->>'event' || ' by ' || (detail->>'by') || ': ' || (detail->>'reason')
		FROM ragfence.audit_log WHERE outcome = 'revocation' AND (detail->>'revocation_id')::bigint = $1 ORDER BY id`, id)
	if err == nil {
		events, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || strings.Join(events, "; ") != "revoked by secops: prompt injection suspected; lifted by secops: prompt injection suspected" {
		t.Errorf("audit records %q (%v)", events, err)
	}
	var o, e bytes.Buffer
	if code := run(ctx, []string{"revoke", "--db", dsn, "--lift", strconv.FormatInt(id, 10)}, &o, &e); code != exitFailure ||
		!strings.Contains(e.String(), "no revocation") {
		t.Errorf("lifting twice: exit %d, %s", code, e.String())
	}
}

func TestRevokeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--db", "postgres://x@127.0.0.1:1/x", "--subject", "alice"},                                 // no tenant
		{"--db", "postgres://x@127.0.0.1:1/x", "--tenant", "acme"},                                   // nothing named
		{"--db", "postgres://x@127.0.0.1:1/x", "--tenant", "acme", "--token", "t", "--subject", "a"}, // token and subject
		{"--db", "postgres://x@127.0.0.1:1/x", "--list", "--lift", "3"},
		{"--db", "postgres://x@127.0.0.1:1/x", "--tenant", "acme", "--subject", "a", "--for", "-1h"},
	} {
		var o, e bytes.Buffer
		if code := run(context.Background(), append([]string{"revoke"}, args...), &o, &e); code != exitUsage {
			t.Errorf("revoke %v: exit %d (%s), want %d", args, code, e.String(), exitUsage)
		}
	}
}
