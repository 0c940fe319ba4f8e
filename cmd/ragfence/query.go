package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/rowjson"
	"github.com/ragfence/ragfence/rewrite"
)

func init() {
	register("query", "run a SELECT as a subject: exactly the rows it may see, one JSON object per line", runQuery)
}

func runQuery(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("query", "query --db URL --policy PATH --subject FILE [--agent ID] [--context FILE] [--untrusted]\n"+
		"  [--explain-rows] [--statement-timeout DURATION] SQL [ARG...]\n\n"+
		"ARGs bind $1, $2, ... as text; PostgreSQL converts them to the parameter's type\n"+
		"(e.g. '[0.1,0.2,...]' for a vector). A refused statement exits 2 with error: CODE: message.\n"+
		"The statement runs in a read-only transaction with JIT off; one that runs longer than\n"+
		"--statement-timeout is cancelled and exits 1.\n\n"+rowjson.Rule, out)
	as := asSubjectFlags(fs)
	untrusted := fs.Bool("untrusted", false, "strict mode, for SQL an agent generated or a user typed")
	explainRows := fs.Bool("explain-rows", false, "add to each row ragfence_rules: the allow rules that let it in (a statement over one table)")
	timeout := fs.Duration("statement-timeout", filter.DefaultStatementTimeout,
		"cancel the statement after this long; 0 keeps the server's statement_timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("the SQL statement is required")
	}
	if *timeout < 0 {
		return usagef("--statement-timeout must be 0 (the server's setting) or more, not %v", *timeout)
	}
	p, req, conn, err := openForQuery(ctx, as, errOut)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	path, types, err := rowjson.LoadSession(ctx, conn)
	if err != nil {
		return err
	}
	opts := []filter.Option{filter.WithSearchPath(path...), filter.WithStatementTimeout(*timeout)}
	if *untrusted {
		opts = append(opts, filter.Untrusted())
	}
	if *explainRows {
		opts = append(opts, filter.ExplainRows())
	}
	qctx := filter.WithRequestContext(filter.WithAgent(filter.WithSubject(ctx, req.Subject), req.Agent), req.Context)
	qctx = filter.WithApproved(qctx, approvedNow(ctx, conn, p, req, errOut))
	sqlArgs := make([]any, fs.NArg()-1)
	for i, a := range fs.Args()[1:] {
		sqlArgs[i] = a
	}
	// A read-only transaction: a second wall behind the rewriter. Wrap sets
	// JIT, the timeout and iterative index scans for the statement.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	rows, err := filter.Wrap(tx, p, opts...).Query(qctx, fs.Arg(0), sqlArgs...)
	if err != nil {
		return queryFailed(ctx, refusal(err), *timeout)
	}
	return queryFailed(ctx, types.WriteRows(out, rows), *timeout)
}

// openForQuery is asSubject.open with a connection whose results come back
// as PostgreSQL's text (rowjson.TextOutput), which the JSON rules start from.
func openForQuery(ctx context.Context, a *asSubject, errOut io.Writer) (*filter.Policy, filter.Request, *pgx.Conn, error) {
	p, req, err := a.load(errOut)
	if err != nil {
		return nil, filter.Request{}, nil, err
	}
	cfg, err := parseDB(*a.db)
	if err != nil {
		return nil, filter.Request{}, nil, err
	}
	rowjson.TextOutput(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, filter.Request{}, nil, explainConnect(cfg, err)
	}
	return p, req, conn, nil
}

// queryFailed says so when the statement timeout cancelled the statement
// (SQLSTATE 57014 query_canceled, while the command itself was not
// interrupted).
func queryFailed(ctx context.Context, err error, timeout time.Duration) error {
	var pe *pgconn.PgError
	if err == nil || ctx.Err() != nil || timeout <= 0 || !errors.As(err, &pe) || pe.Code != "57014" {
		return err
	}
	return fmt.Errorf("the statement ran longer than --statement-timeout %v and was cancelled (%s); "+
		"raise --statement-timeout, or pass 0 for the server's statement_timeout", timeout, pe.Message)
}

// refusal turns a refused statement into "error: CODE: message", exit 2.
func refusal(err error) error {
	var re *rewrite.Error
	var fe *filter.Error
	switch {
	case errors.As(err, &fe) && (!errors.As(err, &re) || re.Code == rewrite.CodePolicy):
		return &exitError{code: exitUsage, msg: fmt.Sprintf("error: %s: %s", fe.Code, fe.Msg)}
	case errors.As(err, &re):
		msg := re.Msg
		if re.Position >= 0 {
			msg += fmt.Sprintf(" (at byte %d)", re.Position)
		}
		return &exitError{code: exitUsage, msg: fmt.Sprintf("error: %s: %s", re.Code, msg)}
	}
	return err
}
