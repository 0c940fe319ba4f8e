package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/sqlc/migrations"
	"github.com/ragfence/ragfence/sqlc/store"
)

// The tests do not run in parallel: noLeak looks for any writer goroutine
// left in the process, which only works when one test runs at a time.

// auditDB returns a pool on a fresh database with the core migrations
// applied, and the database's URL.
func auditDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	url := testdb.Database(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Apply(ctx, conn, migrations.Options{}); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, url
}

// unreachablePool returns a pool whose every connection attempt is refused:
// it points at a port that was just listened on and closed.
func unreachablePool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// allowConnections opens or shuts the database at url for new connections;
// shutting it also ends the connections it has, so the writer's pool sees
// the database go down as it would in an outage.
func allowConnections(t testing.TB, url string, allow bool) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := pgx.Identifier{cfg.Database}.Sanitize()
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", name, allow)); err != nil {
		t.Fatal(err)
	}
	if !allow {
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", cfg.Database); err != nil {
			t.Fatal(err)
		}
	}
}

// logBuffer collects a writer's log; it is printed when the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newWriter starts a writer on db that logs into the returned buffer and is
// closed (with a generous deadline) when the test ends, then checked for a
// leaked goroutine.
func newWriter(t testing.TB, db store.DBTX, cfg audit.Config) (*audit.Writer, *logBuffer) {
	t.Helper()
	noLeak(t)
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	w, err := audit.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Close(ctx)
		if t.Failed() {
			t.Logf("writer log:\n%s", logs)
		}
	})
	return w, logs
}

// noLeak fails the test if a writer goroutine is still running after the
// test's other cleanups (which close the writers) have run.
func noLeak(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			var leaked []string
			for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
				if strings.Contains(g, "retriever/audit.(*Writer)") {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("writer goroutine leaked:\n%s", strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeWriter(t testing.TB, w *audit.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func countRows(t testing.TB, db *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM ragfence.audit_log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// record returns a valid record whose decision id is made from tag and i.
func record(tag string, i int) audit.Record {
	return audit.Record{
		DecidedAt:     time.Now(),
		DecisionID:    fmt.Sprintf("%s-%d", tag, i),
		Subject:       "alice",
		Tenant:        "acme",
		Resource:      "chunks",
		PolicyVersion: "v1",
		Rules:         []string{"tenant-isolation"},
		RowIDs:        []string{"c1", "c2"},
		Outcome:       "allowed",
	}
}

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: true} }

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
