package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ragfence/ragfence/internal/pgpool"
)

// connectTimeout bounds how long a command waits for an unreachable server.
const connectTimeout = 10 * time.Second

// parseDB checks a --db value before anything connects, so a malformed one
// gets a message about its form and never echoes a password.
func parseDB(dsn string) (*pgx.ConnConfig, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, usagef("no database given: pass --db postgres://user@host:5432/db or set DATABASE_URL (make db prints one)")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, usagef("invalid --db value: expected a URL like postgres://user@host:5432/db or key=value pairs like 'host=localhost dbname=db'")
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectTimeout {
		cfg.ConnectTimeout = connectTimeout
	}
	return cfg, nil
}

// connect opens one connection with pgvector's types registered.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, _, err := connectPlain(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

// connectPlain opens one connection without requiring pgvector, for
// commands that work on any PostgreSQL database (policy check and test).
func connectPlain(ctx context.Context, dsn string) (*pgx.Conn, *pgx.ConnConfig, error) {
	cfg, err := parseDB(dsn)
	if err != nil {
		return nil, nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, explainConnect(cfg, err)
	}
	return conn, cfg, nil
}

// explainConnect turns pgx's connection error into one line that names the
// server (never the password) and says what to do.
func explainConnect(cfg *pgx.ConnConfig, err error) error {
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	reason := "connection failed"
	hint := "check --db (or DATABASE_URL)"
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		reason, hint = "database does not exist", "create it, or run `make db` for the local one"
	case errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000"):
		reason, hint = "authentication failed for user "+cfg.User, "check the user and password in --db"
	case errors.As(err, &pgErr):
		reason = pgErr.Message
	case errors.Is(err, syscall.ECONNREFUSED):
		reason, hint = "connection refused", "is PostgreSQL running there? `make db` starts a local one"
	case errors.As(err, &dnsErr):
		reason = "unknown host " + dnsErr.Name
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		reason, hint = "timed out", "check the host and port in --db and that the server accepts connections"
	}
	return &connectError{msg: fmt.Sprintf("cannot connect to PostgreSQL at %s: %s; %s", where, reason, hint), cause: err}
}

// connectError keeps pgx's error for errors.Is/As while showing only a
// message that is safe and useful to print.
type connectError struct {
	msg   string
	cause error
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.cause }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
