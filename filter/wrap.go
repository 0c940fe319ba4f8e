package filter

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ragfence/ragfence/internal/pgcatalog"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// Querier is what Wrap wraps: *pgxpool.Pool, *pgx.Conn and pgx.Tx all are.
// Every statement goes out in a batch, between the settings it runs with
// and their restore (see the package doc).
type Querier interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// DB runs statements through the policy: every statement is rewritten for
// the subject in its context before it reaches the database. It fails
// closed: no subject in the context, a write, or anything the rewriter
// cannot make safe is an error, never an unfiltered query.
type DB struct {
	q          Querier
	p          *Policy
	searchPath []string
	mode       rewrite.Mode
	timeout    time.Duration
	explain    bool
	admit      func(ctx context.Context, resources []string) error

	mu sync.Mutex
	rw *rewrite.Rewriter // made on the first statement, with the catalog's columns
}

// Option configures Wrap.
type Option func(*DB)

// WithSearchPath tells the rewriter the connection's search_path (default
// "public"), so unqualified names resolve as PostgreSQL resolves them.
func WithSearchPath(schemas ...string) Option {
	return func(db *DB) { db.searchPath = schemas }
}

// Untrusted runs statements in strict mode, for SQL an AI agent generated or
// an end user typed (see package rewrite for the threat model). By default
// statements are the application's own and run in trusted mode.
func Untrusted() Option {
	return func(db *DB) { db.mode = rewrite.Strict }
}

// ExplainRows adds to each statement's rows a column ragfence_rules (text[])
// naming the allow rules that let the row in: why the subject sees it. Only
// statements that read one protected table without joins, grouping or
// aggregates can be explained; others are refused (explain_unsupported).
func ExplainRows() Option {
	return func(db *DB) { db.explain = true }
}

// BeforeRun calls admit with the protected resources each statement reads
// (one entry per resource, in first-read order) once it is rewritten and
// before it runs; an error from admit refuses the statement with that
// error. A server counts reads against budgets with it (guardrails).
func BeforeRun(admit func(ctx context.Context, resources []string) error) Option {
	return func(db *DB) { db.admit = admit }
}

// Wrap returns q filtered by p. Each statement runs with JIT off, a
// statement timeout (DefaultStatementTimeout unless WithStatementTimeout
// says otherwise) and pgvector's strict-order iterative index scans; in the
// caller's transaction, the settings are restored after the statement (see
// the package doc). The first statement also reads the protected tables'
// columns from the catalog, in one more round trip: they let the rewriter
// mask a table whose policy lists no columns, and use the table's indexes
// for the statement's simple conditions (see package rewrite).
func Wrap(q Querier, p *Policy, opts ...Option) *DB {
	db := &DB{q: q, p: p, searchPath: []string{"public"}, mode: rewrite.Trusted, timeout: DefaultStatementTimeout}
	for _, o := range opts {
		o(db)
	}
	return db
}

// rewriter returns the DB's rewriter, reading the catalog the first time.
// A failed read fails the statement and is tried again on the next.
func (db *DB) rewriter(ctx context.Context) (*rewrite.Rewriter, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.rw == nil {
		cols, err := pgcatalog.Resources(ctx, db.q, db.p.Set())
		if err != nil {
			return nil, err
		}
		db.rw = rewrite.New(db.p.Set(), db.searchPath, rewrite.WithColumns(cols))
	}
	return db.rw, nil
}

type ctxKey int

const (
	subjectKey ctxKey = iota
	agentKey
	factsKey
	approvedKey
)

// WithSubject returns ctx carrying the subject statements run for, as the
// application's own authentication established it.
func WithSubject(ctx context.Context, s *policy.Subject) context.Context {
	return context.WithValue(ctx, subjectKey, s)
}

// WithAgent returns ctx carrying the AI agent acting for the subject.
func WithAgent(ctx context.Context, agent string) context.Context {
	return context.WithValue(ctx, agentKey, agent)
}

// WithRequestContext returns ctx carrying what the server knows about the
// request (time, client IP) for context.* conditions. Without it, the time
// is the time of the call and there is no client IP.
func WithRequestContext(ctx context.Context, c policy.Context) context.Context {
	return context.WithValue(ctx, factsKey, c)
}

// WithApproved returns ctx carrying the agent's approvals in force
// (Request.Approved): approval.Watcher.For in a server, or
// approval.Store.InForceFor in a one-off program. Without it the agent's
// approval rules withhold their rows.
func WithApproved(ctx context.Context, approved func(resource, rule string) bool) context.Context {
	return context.WithValue(ctx, approvedKey, approved)
}

// ErrNoSubjectInContext is returned for a statement run without WithSubject.
var ErrNoSubjectInContext = &Error{Code: CodeNoSubject, Msg: "no subject in the context: call filter.WithSubject first"}

// Rewrite returns the statement as it would run for ctx's subject, and the
// arguments to bind (args followed by the policy's).
func (db *DB) Rewrite(ctx context.Context, sql string, args ...any) (string, []any, error) {
	s, _ := ctx.Value(subjectKey).(*policy.Subject)
	if s == nil {
		return "", nil, ErrNoSubjectInContext
	}
	req := Request{Subject: s, Context: policy.Context{Time: time.Now()}}
	req.Agent, _ = ctx.Value(agentKey).(string)
	req.Approved, _ = ctx.Value(approvedKey).(func(resource, rule string) bool)
	if c, ok := ctx.Value(factsKey).(policy.Context); ok {
		req.Context = c
	}
	rw, err := db.rewriter(ctx)
	if err != nil {
		return "", nil, err
	}
	res, err := rw.Rewrite(sql, rewrite.Request{Fragments: db.p.Fragments(req), Mode: db.mode, NArgs: len(args), Explain: db.explain})
	if err != nil {
		return "", nil, err
	}
	if db.admit != nil {
		if err := db.admit(ctx, resourcesOf(res.Fragments)); err != nil {
			return "", nil, err
		}
	}
	return res.SQL, append(append(make([]any, 0, len(args)+len(res.Args)), args...), res.Args...), nil
}

// Query runs a filtered query. Its rows hold the connection until they are
// closed or read to the end, as pgx's do.
func (db *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	q, all, err := db.Rewrite(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return db.query(ctx, q, all)
}

// QueryRow runs a filtered query for one row; a refusal surfaces from Scan.
func (db *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	q, all, err := db.Rewrite(ctx, sql, args...)
	if err != nil {
		return errRow{err}
	}
	rows, err := db.query(ctx, q, all)
	if err != nil {
		return errRow{err}
	}
	return batchRow{rows}
}

// Exec runs a filtered statement. Writes are refused: only a SELECT passes
// the rewriter.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q, all, err := db.Rewrite(ctx, sql, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return db.exec(ctx, q, all)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// IsRefused reports whether err is a statement or request the filter
// refused (as opposed to a database error).
func IsRefused(err error) bool {
	var fe *Error
	var re *rewrite.Error
	return errors.As(err, &fe) || errors.As(err, &re)
}

// resourcesOf names the resources of fragments, each once.
func resourcesOf(frags []rewrite.Fragment) []string {
	var out []string
	for _, f := range frags {
		if ff, ok := f.(*Fragment); ok && !slices.Contains(out, ff.Resource) {
			out = append(out, ff.Resource)
		}
	}
	return out
}
