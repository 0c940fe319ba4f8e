package filter

// Tests of the per-statement settings, run through DB.query with a probe
// statement the rewriter would refuse (current_setting), on every kind of
// querier Wrap accepts.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

const probeSQL = `SELECT current_setting('jit'), current_setting('statement_timeout'),
	coalesce(nullif(current_setting('hnsw.iterative_scan', true), ''), '(undefined)')`

type settingsSeen struct{ jit, timeout, scan string }

func probe(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) settingsSeen {
	t.Helper()
	var s settingsSeen
	if err := q.QueryRow(ctx, probeSQL).Scan(&s.jit, &s.timeout, &s.scan); err != nil {
		t.Fatalf("probe: %v", err)
	}
	return s
}

func testPolicy(t *testing.T) *Policy {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
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
	p, err := Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// inside runs the probe through db's batch and returns what it saw.
func inside(t *testing.T, ctx context.Context, db *DB) settingsSeen {
	t.Helper()
	rows, err := db.query(ctx, probeSQL, nil)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var s settingsSeen
	n := 0
	for rows.Next() {
		n++
		if err := rows.Scan(&s.jit, &s.timeout, &s.scan); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil || n != 1 {
		t.Fatalf("probe through the batch: %d rows, %v", n, err)
	}
	return s
}

func connect(t *testing.T, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Inside the statement: JIT off, the timeout, strict-order iterative scans.
// After it: exactly what was there before, whether the batch ran in its own
// implicit transaction (pool, conn) or in the caller's (pgx.Tx, or a BEGIN
// the caller sent on a conn), where the caller's own SET LOCALs must survive.
// (A session without hnsw.iterative_scan keeps an empty placeholder, which
// the probe reads as undefined: no enum setting is ever empty.)
func TestStatementSettings(t *testing.T) {
	ctx := context.Background()
	p := testPolicy(t)
	pool, _ := testdb.Schema(t)
	want := settingsSeen{"off", "250ms", "strict_order"}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connect(t, mode)
			tx, err := connect(t, mode).Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck // read only
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '7s'; SET LOCAL jit = on; SET LOCAL hnsw.iterative_scan = relaxed_order"); err != nil {
				t.Fatal(err)
			}
			raw := connect(t, mode)
			if _, err := raw.Exec(ctx, "BEGIN; SET LOCAL statement_timeout = '3s'"); err != nil {
				t.Fatal(err)
			}
			for _, q := range []struct {
				name string
				q    interface {
					Querier
					QueryRow(context.Context, string, ...any) pgx.Row
				}
			}{{"pool", pool}, {"conn", conn}, {"tx", tx}, {"conn in BEGIN", raw}} {
				before := probe(t, ctx, q.q)
				db := Wrap(q.q, p, WithStatementTimeout(250*time.Millisecond))
				for i := range 2 { // the second time with the statements prepared
					if got := inside(t, ctx, db); got != want {
						t.Errorf("%s, run %d: inside the statement %+v, want %+v", q.name, i, got, want)
					}
					if after := probe(t, ctx, q.q); after != before {
						t.Errorf("%s, run %d: after the statement %+v, want %+v as before", q.name, i, after, before)
					}
				}
			}
		})
	}
}

// The timeout rounds up to a millisecond and caps at PostgreSQL's limit;
// zero or less keeps the connection's own.
func TestStatementTimeoutValue(t *testing.T) {
	ctx := context.Background()
	p := testPolicy(t)
	conn := connect(t, pgx.QueryExecModeCacheStatement)
	if _, err := conn.Exec(ctx, "SET statement_timeout = '42s'"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{nil, "30s"}, // DefaultStatementTimeout
		{[]Option{WithStatementTimeout(1500 * time.Microsecond)}, "2ms"},
		{[]Option{WithStatementTimeout(time.Duration(1<<63 - 1))}, "2147483647ms"},
		{[]Option{WithStatementTimeout(0)}, "42s"},
		{[]Option{WithStatementTimeout(-time.Second)}, "42s"},
	} {
		if got := inside(t, ctx, Wrap(conn, p, tc.opts...)).timeout; got != tc.want {
			t.Errorf("%v: statement_timeout %q, want %q", tc.opts, got, tc.want)
		}
	}
}

// pgvector's settings are defined only once its library is loaded, which
// happens in a session the first time a statement uses a vector. Before
// that, the setting is a placeholder that pgvector adopts when it loads.
func TestIterativeScanBeforePgvectorLoads(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pgx.QueryExecModeCacheStatement) // no vector used yet
	var before *string
	if err := conn.QueryRow(ctx, "SELECT current_setting('hnsw.iterative_scan', true)").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		t.Skipf("pgvector is preloaded on this server (hnsw.iterative_scan = %s): nothing to test", *before)
	}
	db := Wrap(conn, testPolicy(t))
	rows, err := db.query(ctx, `SELECT '[1,2]'::vector IS NOT NULL, current_setting('hnsw.iterative_scan')`, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (string, error) {
		var ok bool
		var s string
		err := r.Scan(&ok, &s)
		return s, err
	})
	if err != nil || got != "strict_order" {
		t.Errorf("statement that loads pgvector: hnsw.iterative_scan = %q, %v; want strict_order", got, err)
	}
}

// A server without pgvector (simulated by a prefix no library reserves)
// takes the setting as a placeholder; a server whose pgvector is loaded but
// lacks the setting (pgvector < 0.8, simulated by a name pgvector does not
// define under its reserved "hnsw" prefix) would refuse it, so it is skipped.
// Neither is an error.
func TestIterativeScanUnknownSetting(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		old, new, want string
	}{
		{"hnsw.", "ragfence_test_nopgvector.", "strict_order"},
		{"hnsw.iterative_scan", "hnsw.no_such_setting", "(undefined)"},
	} {
		name := strings.ReplaceAll("hnsw.iterative_scan", tc.old, tc.new)
		conn := connect(t, pgx.QueryExecModeCacheStatement)
		if _, err := conn.Exec(ctx, "SELECT '[1]'::vector"); err != nil { // loads pgvector
			t.Fatal(err)
		}
		set := strings.ReplaceAll(settingsSQL, tc.old, tc.new)
		restore := strings.ReplaceAll(restoreSQL, tc.old, tc.new)
		b := &pgx.Batch{}
		b.Queue(set, "")
		var got string
		b.Queue(`SELECT coalesce(current_setting($1, true), '(undefined)')`, name).QueryRow(func(r pgx.Row) error { return r.Scan(&got) })
		b.Queue(restore)
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if got != tc.want {
			t.Errorf("%s inside the statement: %q, want %q", name, got, tc.want)
		}
	}
}
