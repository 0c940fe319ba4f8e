// Package testdb gives each test its own PostgreSQL schema or database on the
// real server, dropped when the test ends, so parallel tests never see each
// other's rows.
//
// The server comes from RAGFENCE_TEST_DATABASE_URL (make test sets it; see
// scripts/devdb.sh). When it is unreachable a test is skipped with a message
// that says how to provide one, except under CI=true or RAGFENCE_REQUIRE_DB=1, where it fails: the
// integration tests are never skipped silently in CI.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/pgpool"
)

// EnvURL names the environment variable holding the test server's URL.
const EnvURL = "RAGFENCE_TEST_DATABASE_URL"

// EnvRequire, set to 1 (make test does), turns a missing database into a
// failure outside CI too.
const EnvRequire = "RAGFENCE_REQUIRE_DB"

// DefaultURL is used when EnvURL is unset: the database scripts/devdb.sh creates.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/ragfence_test?sslmode=disable"

// URL returns the base URL of the test server, skipping or failing the test
// when it is not reachable.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvURL)
	if base == "" {
		base = DefaultURL
	}
	if err := reachable(base); err != nil {
		msg := fmt.Sprintf("test database unreachable (%v): run `make db` or set %s", err, EnvURL)
		if os.Getenv("CI") == "true" || os.Getenv(EnvRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return base
}

var (
	probeOnce sync.Once
	probeErr  error
)

func reachable(dsn string) error {
	probeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			probeErr = err
			return
		}
		defer conn.Close(ctx)
		_, probeErr = conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector")
	})
	return probeErr
}

// Schema creates a fresh schema and returns a pool whose connections use it
// first on their search_path (then public, where the vector type lives). The
// schema is dropped with everything in it when the test ends.
func Schema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	base := URL(t)
	name := "t_" + randomSuffix(t)
	ctx := context.Background()
	admin := connect(t, base)
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testdb: create schema: %v", err)
	}
	t.Cleanup(func() { dropSchema(t, base, name) })
	return pool(t, base, name), name
}

// Database creates a fresh database with the vector extension and returns its
// URL; it is dropped WITH (FORCE) when the test ends. Use it for tests of
// ragfence's own schema, which has a fixed name.
func Database(t testing.TB) string {
	t.Helper()
	base := URL(t)
	name := "ragfence_t_" + randomSuffix(t)
	ctx := context.Background()
	admin := connect(t, base)
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testdb: create database: %v", err)
	}
	t.Cleanup(func() {
		conn := connect(t, base)
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})
	dbURL := withDatabase(t, base, name)
	conn := connect(t, dbURL)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector"); err != nil {
		t.Fatalf("testdb: create extension vector: %v", err)
	}
	return dbURL
}

// withDatabase points base (a URL or a key=value DSN) at another database,
// keeping its credentials and options.
func withDatabase(t testing.TB, base, name string) string {
	t.Helper()
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name
}

func pool(t testing.TB, base, schema string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgpool.ParseConfig(base)
	if err != nil {
		t.Fatalf("testdb: parse %s: %v", EnvURL, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema + ",public"
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("testdb: pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("testdb: connect: %v", err)
	}
	return conn
}

func dropSchema(t testing.TB, base, name string) {
	ctx := context.Background()
	conn := connect(t, base)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("testdb: drop schema %s: %v", name, err)
	}
}

func randomSuffix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
