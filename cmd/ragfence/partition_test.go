package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/internal/testdb"
)

// TestPartitionByTenantCommands: migrate --knowledge-base
// --partition-by-tenant creates the partitioned layout once (a second run,
// with or without the flag, applies nothing); demo --partition-by-tenant
// seeds it, and doctor finds nothing missing; asking for the flag without
// the knowledge base, or on a knowledge base created unpartitioned, is
// refused.
func TestPartitionByTenantCommands(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Database(t)
	out := mustRun(t, ctx, "migrate", "--db", dsn, "--knowledge-base", "--partition-by-tenant")
	if !strings.Contains(out, "applied knowledge_base/0001_knowledge_base_partitioned.sql") {
		t.Fatalf("migrate: %s", out)
	}
	for _, args := range [][]string{{"--knowledge-base", "--partition-by-tenant"}, {"--knowledge-base"}} {
		if out := mustRun(t, ctx, append([]string{"migrate", "--db", dsn}, args...)...); !strings.Contains(out, "up to date") {
			t.Fatalf("migrate %v again is not a no-op: %s", args, out)
		}
	}
	dir := t.TempDir()
	mustRun(t, ctx, "demo", "--db", dsn, "--out", dir, "--chunks", "2000", "--partition-by-tenant")
	assertDemoNeedsNoIndex(t, ctx, dsn, demoFiles(t, dir).Policy)
	if out := mustRun(t, ctx, "demo", "--db", dsn, "--out", dir, "--chunks", "2000", "--partition-by-tenant"); !strings.Contains(out, "already loaded") {
		t.Fatalf("second demo: %s", out)
	}

	var o, e bytes.Buffer
	if code := run(ctx, []string{"migrate", "--db", dsn, "--partition-by-tenant"}, &o, &e); code != exitUsage {
		t.Errorf("migrate --partition-by-tenant alone: exit %d (%s), want %d", code, e.String(), exitUsage)
	}
	plain := testdb.Database(t)
	mustRun(t, ctx, "migrate", "--db", plain, "--knowledge-base")
	e.Reset()
	if code := run(ctx, []string{"migrate", "--db", plain, "--knowledge-base", "--partition-by-tenant"}, &o, &e); code != exitFailure ||
		!strings.Contains(e.String(), "first created") {
		t.Errorf("--partition-by-tenant on an unpartitioned knowledge base: exit %d (%s), want %d and why", code, e.String(), exitFailure)
	}
}
