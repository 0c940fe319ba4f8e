package e2e

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/internal/testdb"
)

// DownPool is a pool whose every connection attempt is refused.
func DownPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	p, err := NewPool("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// OwnDemo is a small demo database of a test's own, for tests that write
// rows the shared fixture must not see. Its users are the shared
// fixture's, so f.Token works for it.
func OwnDemo(t *testing.T, chunks int) *pgxpool.Pool {
	t.Helper()
	f := Shared(t)
	ctx := context.Background()
	dsn := testdb.Database(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		t.Fatal(err)
	}
	d, _, err := demo.Seed(ctx, conn, demo.Config{Chunks: chunks}, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range d.Users {
		if w := f.Data.Users[i]; u.ID != w.ID || u.TenantID != w.TenantID || !slices.Equal(u.Groups, w.Groups) {
			t.Fatalf("the demo's users depend on its size: %+v, shared %+v", u, w)
		}
	}
	pool, err := NewPool(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
