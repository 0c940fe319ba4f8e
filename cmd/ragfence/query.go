package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/rewrite"
)

func init() {
	register("query", "run a SELECT as a subject: exactly the rows it may see, one JSON object per line", runQuery)
}

func runQuery(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("query", "query --db URL --policy PATH --subject FILE [--agent ID] [--context FILE] [--untrusted] SQL [ARG...]\n\n"+
		"ARGs bind $1, $2, ... as text; PostgreSQL converts them to the parameter's type\n"+
		"(e.g. '[0.1,0.2,...]' for a vector). A refused statement exits 2 with error: CODE: message.", out)
	as := asSubjectFlags(fs)
	untrusted := fs.Bool("untrusted", false, "strict mode, for SQL an agent generated or a user typed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("the SQL statement is required")
	}
	p, req, conn, err := as.open(ctx, errOut)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var path []string
	if err := conn.QueryRow(ctx, "SELECT current_schemas(false)").Scan(&path); err != nil {
		return err
	}
	opts := []filter.Option{filter.WithSearchPath(path...)}
	if *untrusted {
		opts = append(opts, filter.Untrusted())
	}
	qctx := filter.WithRequestContext(filter.WithAgent(filter.WithSubject(ctx, req.Subject), req.Agent), req.Context)
	sqlArgs := make([]any, fs.NArg()-1)
	for i, a := range fs.Args()[1:] {
		sqlArgs[i] = a
	}
	// A read-only transaction: a second wall behind the rewriter.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	// A selective policy must not make an HNSW scan return fewer rows than
	// the subject may see (pgvector >= 0.8); unknown settings are harmless.
	if _, err := tx.Exec(ctx, "SET LOCAL hnsw.iterative_scan = strict_order"); err != nil {
		return err
	}
	rows, err := filter.Wrap(tx, p, opts...).Query(qctx, fs.Arg(0), sqlArgs...)
	if err != nil {
		return refusal(err)
	}
	return printRows(out, rows)
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

func printRows(out io.Writer, rows pgx.Rows) error {
	defer rows.Close()
	fields := rows.FieldDescriptions()
	enc := json.NewEncoder(out)
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		obj := make(orderedRow, len(fields))
		for i, f := range fields {
			obj[i] = column{f.Name, jsonValue(vals[i])}
		}
		if err := enc.Encode(obj); err != nil {
			return err
		}
	}
	return rows.Err()
}

// jsonValue makes database values JSON-friendly (vectors as arrays).
func jsonValue(v any) any {
	if s, ok := v.(interface{ Slice() []float32 }); ok {
		return s.Slice()
	}
	return v
}

// orderedRow is a row as a JSON object whose keys keep the column order.
type orderedRow []column

type column struct {
	name  string
	value any
}

func (r orderedRow) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, c := range r {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(c.name)
		v, err := json.Marshal(c.value)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}
