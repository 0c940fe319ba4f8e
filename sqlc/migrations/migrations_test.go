package migrations_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/sqlc/migrations"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestLoadOrdersAndNumbersEveryFile(t *testing.T) {
	for _, set := range []migrations.Set{migrations.Core, migrations.KnowledgeBase} {
		ms, err := migrations.Load(set)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Fatalf("set %s has no migrations", set)
		}
		for i, m := range ms {
			if m.Version != i+1 {
				t.Errorf("%s: migration %d is numbered %d; numbers must be 1, 2, 3, ...", set, i, m.Version)
			}
		}
	}
}

func TestApplyTwiceIsANoOp(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, testdb.Database(t))
	first, err := migrations.Apply(ctx, conn, migrations.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 {
		t.Fatal("first Apply applied nothing")
	}
	second, err := migrations.Apply(ctx, conn, migrations.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second Apply applied %v, want nothing", second)
	}
	// Core alone must not create the knowledge base.
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("core migrations created %d tables outside the ragfence schema", n)
	}
}

func TestConcurrentApplyAppliesEachMigrationOnce(t *testing.T) {
	ctx := context.Background()
	url := testdb.Database(t)
	const runners = 4
	var wg sync.WaitGroup
	results := make([][]migrations.Applied, runners)
	errs := make([]error, runners)
	for i := range runners {
		conn := connect(t, url)
		wg.Go(func() {
			results[i], errs[i] = migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: true})
		})
	}
	wg.Wait()
	total := 0
	for i := range runners {
		if errs[i] != nil {
			t.Fatalf("runner %d: %v", i, errs[i])
		}
		total += len(results[i])
	}
	want := 0
	for _, s := range []migrations.Set{migrations.Core, migrations.KnowledgeBase} {
		ms, _ := migrations.Load(s)
		want += len(ms)
	}
	if total != want {
		t.Fatalf("runners applied %d migrations in all, want %d (each exactly once)", total, want)
	}
	var rows int
	if err := connect(t, url).QueryRow(ctx, "SELECT count(*) FROM ragfence.schema_migrations").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != want {
		t.Fatalf("schema_migrations has %d rows, want %d", rows, want)
	}
}

func TestChangedMigrationIsRefused(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, testdb.Database(t))
	if _, err := migrations.Apply(ctx, conn, migrations.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UPDATE ragfence.schema_migrations SET checksum = 'edited' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	_, err := migrations.Apply(ctx, conn, migrations.Options{})
	var changed *migrations.ChangedError
	if !errors.As(err, &changed) {
		t.Fatalf("Apply after an edit: got %v, want a ChangedError", err)
	}
}

func TestKnowledgeBaseDimension(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		dim     int
		want    int
		wantErr string
	}{
		{"default", 0, migrations.DefaultDimension, ""},
		{"chosen", 8, 8, ""},
		{"too large", migrations.MaxDimension + 1, 0, "out of range"},
		{"negative", -3, 0, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := connect(t, testdb.Database(t))
			_, err := migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: true, Dimension: tt.dim})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := migrations.Dimension(ctx, conn)
			if err != nil || got != tt.want {
				t.Fatalf("Dimension = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestKnowledgeBaseRefusesExistingUserTables(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, testdb.Database(t))
	if _, err := conn.Exec(ctx, "CREATE TABLE chunks (mine int)"); err != nil {
		t.Fatal(err)
	}
	_, err := migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: true})
	if err == nil || !strings.Contains(err.Error(), "already exist") {
		t.Fatalf("got %v, want a refusal naming the existing table", err)
	}
	var cols int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'chunks'").Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != 1 {
		t.Fatalf("the user's chunks table was changed: %d columns", cols)
	}
}

func TestPartitionedVariantsReplaceKnowledgeBaseMigrations(t *testing.T) {
	variants, err := migrations.LoadPartitioned()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := variants[1]; !ok || len(variants) == 0 {
		t.Fatalf("the partitioned layout replaces versions %v, want at least the first", variants)
	}
	base, _ := migrations.Load(migrations.KnowledgeBase)
	for v, m := range variants {
		if m.Set != migrations.KnowledgeBase || m.Name == base[v-1].Name {
			t.Errorf("variant %d: set %s, name %s; want the knowledge_base set and a name of its own", v, m.Set, m.Name)
		}
	}
}

// TestPartitionByTenant: the partitioned layout is created once, with the
// chosen dimension; later runs with or without the option apply nothing,
// and the tables are partitioned by tenant with a DEFAULT partition.
func TestPartitionByTenant(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, testdb.Database(t))
	opts := migrations.Options{KnowledgeBase: true, PartitionByTenant: true, Dimension: 8}
	first, err := migrations.Apply(ctx, conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(first, func(a migrations.Applied) bool { return a.Name == "0001_knowledge_base_partitioned.sql" }) {
		t.Fatalf("applied %v, want the partitioned first migration", first)
	}
	for _, o := range []migrations.Options{opts, {KnowledgeBase: true}} {
		again, err := migrations.Apply(ctx, conn, o)
		if err != nil || len(again) != 0 {
			t.Fatalf("Apply(%+v) after the partitioned layout: applied %v, %v; want nothing", o, again, err)
		}
	}
	if p, err := migrations.Partitioned(ctx, conn); err != nil || !p {
		t.Fatalf("Partitioned = %v, %v", p, err)
	}
	if d, err := migrations.Dimension(ctx, conn); err != nil || d != 8 {
		t.Fatalf("Dimension = %d, %v; want 8", d, err)
	}
	var keys []string
	err = conn.QueryRow(ctx, `SELECT array_agg(c.relname || ' ' || pg_get_partkeydef(c.oid) || ' ' || d.relname ORDER BY c.relname)
		FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid JOIN pg_class d ON d.oid = p.partdefid`).Scan(&keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"chunks LIST (tenant_id) chunks__default", "document_grants LIST (tenant_id) document_grants__default"}
	if !slices.Equal(keys, want) {
		t.Fatalf("partitioned tables %q, want %q", keys, want)
	}
}

// TestPartitionByTenantOnAPlainKnowledgeBaseIsRefused: the layout is
// chosen when the knowledge base is created; asking for the partitioned one
// later says so, and changes nothing.
func TestPartitionByTenantOnAPlainKnowledgeBaseIsRefused(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, testdb.Database(t))
	if _, err := migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: true}); err != nil {
		t.Fatal(err)
	}
	_, err := migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: true, PartitionByTenant: true})
	var layout *migrations.LayoutError
	if !errors.As(err, &layout) || !strings.Contains(err.Error(), "first created") {
		t.Fatalf("got %v, want a LayoutError", err)
	}
	if p, err := migrations.Partitioned(ctx, conn); err != nil || p {
		t.Fatalf("Partitioned = %v, %v; want the plain layout kept", p, err)
	}
	if _, err := migrations.Apply(ctx, conn, migrations.Options{PartitionByTenant: true}); err == nil {
		t.Fatal("PartitionByTenant without KnowledgeBase was accepted")
	}
}
