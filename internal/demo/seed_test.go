package demo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/sqlc/migrations"
)

func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestSeedPartitionedByTenant: each demo tenant's rows land in its own
// partitions, each chunks partition has its HNSW index, nothing is left in
// the DEFAULT partitions; seeding again is a no-op, and a reset reloads
// into the same partitions.
func TestSeedPartitionedByTenant(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	cfg := demo.Config{Chunks: 600, Dimension: 8, PartitionByTenant: true}
	_, sum, err := demo.Seed(ctx, conn, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped || sum.Chunks != 600 {
		t.Fatalf("first seed: %+v", sum)
	}
	checkPartitions(t, conn, sum)
	if _, again, err := demo.Seed(ctx, conn, cfg, false); err != nil || !again.Skipped {
		t.Fatalf("second seed: %+v, %v; want it skipped", again, err)
	}
	_, reset, err := demo.Seed(ctx, conn, cfg, true)
	if err != nil || reset.Skipped {
		t.Fatalf("reset: %+v, %v", reset, err)
	}
	checkPartitions(t, conn, reset)
}

func checkPartitions(t *testing.T, conn *pgx.Conn, sum demo.Summary) {
	t.Helper()
	ctx := context.Background()
	for _, table := range []struct {
		name string
		rows int
	}{{"chunks", sum.Chunks}, {"document_grants", sum.Grants}} {
		var parts, misplaced, total int
		err := conn.QueryRow(ctx, `
			SELECT count(DISTINCT tableoid), count(*) FILTER (WHERE tableoid::regclass::text <> $1 || '_' || tenant_id), count(*)
			FROM `+table.name, table.name).Scan(&parts, &misplaced, &total)
		if err != nil {
			t.Fatal(err)
		}
		if parts != sum.Tenants || misplaced != 0 || total != table.rows {
			t.Errorf("%s: %d rows in %d partitions, %d outside their tenant's; want %d rows in %d", table.name, total, parts, misplaced, table.rows, sum.Tenants)
		}
	}
	var hnsw int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_partition_tree('chunks') p
		JOIN pg_index i ON i.indrelid = p.relid JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
		WHERE p.isleaf AND am.amname = 'hnsw'`).Scan(&hnsw)
	if err != nil {
		t.Fatal(err)
	}
	if hnsw != sum.Tenants+1 {
		t.Errorf("%d chunks partitions have an HNSW index, want %d (the tenants' and the DEFAULT)", hnsw, sum.Tenants+1)
	}
}

// TestSeedKeepsTheLayout: a knowledge base seeded unpartitioned is not
// re-created partitioned; the error says why.
func TestSeedKeepsTheLayout(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	if _, _, err := demo.Seed(ctx, conn, demo.Config{Chunks: 50, Dimension: 8}, false); err != nil {
		t.Fatal(err)
	}
	_, _, err := demo.Seed(ctx, conn, demo.Config{Chunks: 50, Dimension: 8, PartitionByTenant: true}, false)
	var layout *migrations.LayoutError
	if !errors.As(err, &layout) {
		t.Fatalf("got %v, want a LayoutError", err)
	}
}
