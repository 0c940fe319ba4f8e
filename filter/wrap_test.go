package filter_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

// wrapFixture is a protected table and two unfiltered views the rewriter
// lets through: one shows the settings a statement runs with (the rewriter
// refuses current_setting in SQL, not inside a view), one sleeps.
func wrapFixture(t *testing.T) (*pgxpool.Pool, *filter.Policy, string) {
	t.Helper()
	pool, schema := testdb.Schema(t)
	_, err := pool.Exec(context.Background(), `CREATE TABLE notes (id int, tenant_id text, body text);
		INSERT INTO notes VALUES (1, 'acme', 'one'), (2, 'acme', 'two'), (3, 'globex', 'other tenant');
		CREATE VIEW settings AS SELECT current_setting('jit') AS jit, current_setting('statement_timeout') AS timeout,
			current_setting('hnsw.iterative_scan') AS scan;
		CREATE VIEW slow AS SELECT pg_sleep(10)::text AS slept`)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
unfiltered: [settings, slow]
resources:
  notes:
    tenant: tenant_id
    allow:
      - name: all
        when: "true"
`)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return pool, p, schema
}

// Every statement, through Query, QueryRow and Exec, runs with JIT off, the
// statement timeout and strict-order iterative scans.
func TestWrapSettings(t *testing.T) {
	pool, p, schema := wrapFixture(t)
	ctx := filter.WithSubject(context.Background(), &policy.Subject{ID: "u", Tenant: "acme"})
	db := filter.Wrap(pool, p, filter.WithSearchPath(schema, "public"), filter.WithStatementTimeout(1500*time.Millisecond))
	want := [3]string{"off", "1500ms", "strict_order"}

	rows, err := db.Query(ctx, `SELECT ARRAY[s.jit, s.timeout, s.scan] FROM settings s, notes n WHERE n.id = 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil || len(got) != 1 || !slices.Equal(got[0], want[:]) {
		t.Errorf("Query: %v, %v; want [%v]", got, err, want)
	}
	var one [3]string
	if err := db.QueryRow(ctx, `SELECT jit, timeout, scan FROM settings`).Scan(&one[0], &one[1], &one[2]); err != nil || one != want {
		t.Errorf("QueryRow: %v, %v; want %v", one, err, want)
	}
	if tag, err := db.Exec(ctx, `SELECT id FROM notes`); err != nil || tag.String() != "SELECT 2" {
		t.Errorf("Exec: %q, %v; want SELECT 2", tag, err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT id FROM notes WHERE id = 3`).Scan(&n); !errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("QueryRow of another tenant's row: %v, want pgx.ErrNoRows", err)
	}
}

// A statement longer than the timeout is cancelled with PostgreSQL's
// query_canceled error, through every method and every kind of querier, and
// the connection is free for the next statement.
func TestWrapStatementTimeout(t *testing.T) {
	pool, p, schema := wrapFixture(t)
	ctx := filter.WithSubject(context.Background(), &policy.Subject{ID: "u", Tenant: "acme"})
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	opts := []filter.Option{filter.WithSearchPath(schema, "public"), filter.WithStatementTimeout(100 * time.Millisecond)}
	isTimeout := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "57014"
	}
	for _, q := range []struct {
		name string
		q    filter.Querier
	}{{"pool", pool}, {"conn", conn.Conn()}} {
		db := filter.Wrap(q.q, p, opts...)
		start := time.Now()
		rows, err := db.Query(ctx, `SELECT slept FROM slow`)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		if !isTimeout(err) || time.Since(start) > 5*time.Second {
			t.Errorf("%s: Query: %v after %v, want a statement timeout (57014)", q.name, err, time.Since(start))
		}
		var v any
		if err := db.QueryRow(ctx, `SELECT slept FROM slow`).Scan(&v); !isTimeout(err) {
			t.Errorf("%s: QueryRow: %v, want a statement timeout", q.name, err)
		}
		if _, err := db.Exec(ctx, `SELECT slept FROM slow`); !isTimeout(err) {
			t.Errorf("%s: Exec: %v, want a statement timeout", q.name, err)
		}
		if err := db.QueryRow(ctx, `SELECT id FROM notes WHERE id = 1`).Scan(&v); err != nil {
			t.Errorf("%s: the next statement: %v", q.name, err)
		}
	}

	// In the caller's transaction the timeout aborts it, as any failed
	// statement does; the settings die with it.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := filter.Wrap(tx, p, opts...).QueryRow(ctx, `SELECT slept FROM slow`).Scan(&v); !isTimeout(err) {
		t.Errorf("tx: QueryRow: %v, want a statement timeout", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var timeout string
	if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil || timeout != "0" {
		t.Errorf("after the rollback: statement_timeout %q, %v; want the server's 0", timeout, err)
	}
}

// Rows closed before their end free the connection: the rest of the batch
// (the restore) is read, and the next statement on the same connection runs.
func TestWrapRowsClosedEarly(t *testing.T) {
	pool, p, schema := wrapFixture(t)
	ctx := filter.WithSubject(context.Background(), &policy.Subject{ID: "u", Tenant: "acme"})
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only
	db := filter.Wrap(tx, p, filter.WithSearchPath(schema, "public"))
	rows, err := db.Query(ctx, `SELECT id FROM notes ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no first row")
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var jit string
	if err := tx.QueryRow(ctx, "SHOW jit").Scan(&jit); err != nil || jit != "on" {
		t.Errorf("after rows closed early, in the caller's transaction: jit %q, %v; want on, restored", jit, err)
	}
}

// BeforeRun sees the protected resources of each statement before it runs,
// and its error refuses the statement.
func TestWrapBeforeRun(t *testing.T) {
	pool, p, schema := wrapFixture(t)
	ctx := filter.WithSubject(context.Background(), &policy.Subject{ID: "u", Tenant: "acme"})
	var seen [][]string
	refuse := errors.New("over budget")
	admit := func(_ context.Context, resources []string) error {
		seen = append(seen, resources)
		if len(seen) > 2 {
			return refuse
		}
		return nil
	}
	db := filter.Wrap(pool, p, filter.WithSearchPath(schema, "public"), filter.BeforeRun(admit))
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM notes a JOIN notes b ON a.id = b.id").Scan(&n); err != nil || n != 2 {
		t.Fatalf("join: %d %v", n, err)
	}
	if err := db.QueryRow(ctx, "SELECT jit FROM settings").Scan(new(string)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen[0], []string{"notes"}) || len(seen[1]) != 0 {
		t.Errorf("resources seen %v, want [notes] then []", seen)
	}
	if _, err := db.Query(ctx, "SELECT id FROM notes"); !errors.Is(err, refuse) {
		t.Errorf("a refused statement: %v", err)
	}
}
