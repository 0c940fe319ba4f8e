package retriever

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sq "github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
)

// Query is one similarity search on a resource.
type Query struct {
	// Resource is the policy's resource (the request's "collection").
	Resource string `json:"collection"`
	// Embedding is the query vector; its dimension must match the column's.
	Embedding []float32 `json:"embedding,omitempty"`
	// Text is the query as text, embedded by the server's embedder when no
	// Embedding is given.
	Text string `json:"query,omitempty"`
	// K is how many chunks to return.
	K int `json:"k"`
	// Filter holds metadata conditions on filterable fields (optional).
	Filter Filter `json:"filter,omitempty"`
	// MinScore drops results less similar than this (optional).
	MinScore *float64 `json:"min_score,omitempty"`
}

// Options tune how a search runs.
type Options struct {
	// StatementTimeout bounds the query; 0 means the server's default.
	StatementTimeout time.Duration
}

// Result is one chunk the subject may see. Masked columns read as null.
type Result struct {
	ID       string          `json:"id"`
	Score    float64         `json:"score"` // cosine similarity: 1 - cosine distance
	Content  *string         `json:"content"`
	Metadata json.RawMessage `json:"metadata"`
}

// alias is how searches name the resource's table; fixed, so the statement
// text (and pgx's statement cache) is the same for every subject.
const alias = "c"

// Beginner starts a transaction (*pgxpool.Pool, *pgx.Conn, pgx.Tx).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Search returns the K chunks nearest q.Embedding that req's subject may
// see, nearest first, and the fragment that decided it. Every value is
// bound; the policy fragment is ANDed into the search's WHERE clause.
func Search(ctx context.Context, db Beginner, p *filter.Policy, req filter.Request, q Query, opt Options) ([]Result, *filter.Fragment, error) {
	if q.K <= 0 {
		return nil, nil, errors.New("retriever: k must be positive")
	}
	if len(q.Embedding) == 0 {
		return nil, nil, errors.New("retriever: the query has no embedding")
	}
	req.Alias = alias
	frag, err := p.Fragment(q.Resource, req)
	if err != nil {
		return nil, nil, err
	}
	if frag.Outcome == filter.AlwaysDenied {
		return []Result{}, frag, nil
	}
	sql, args, err := searchSQL(p, frag, q)
	if err != nil {
		return nil, nil, err
	}
	results, err := run(ctx, db, sql, args, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("retriever: search %s: %w", q.Resource, err)
	}
	return results, frag, nil
}

func searchSQL(p *filter.Policy, frag *filter.Fragment, q Query) (string, []any, error) {
	res := p.Set().Resources[q.Resource]
	col := func(name string) string { return alias + "." + pgx.Identifier{name}.Sanitize() }
	vec := pgvector.NewVector(q.Embedding)
	distance := sq.Expr(col(res.Embedding)+" <=> ?", vec)
	b := sq.Select().
		Column(sq.Expr(col(res.ID) + "::text")).
		Column(sq.Alias(distance, "distance")).
		Column(frag.Column(res.Content)).
		Column(frag.Column(res.Metadata)).
		From(res.QuotedTable() + " AS " + alias).
		Where(frag)
	if len(q.Filter) > 0 {
		cond, err := q.Filter.sqlizer(res, frag.Column)
		if err != nil {
			return "", nil, err
		}
		b = b.Where(cond)
	}
	if q.MinScore != nil {
		b = b.Where(sq.Expr(col(res.Embedding)+" <=> ? <= ?", vec, 1-*q.MinScore))
	}
	return b.OrderBy("distance").Limit(uint64(q.K)).PlaceholderFormat(sq.Dollar).ToSql()
}

// run executes the search with iterative HNSW scans on, so a selective
// policy cannot make the index return fewer than K permitted rows.
func run(ctx context.Context, db Beginner, sql string, args []any, opt Options) ([]Result, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	settings := "SET LOCAL hnsw.iterative_scan = strict_order"
	if opt.StatementTimeout > 0 {
		settings += fmt.Sprintf("; SET LOCAL statement_timeout = %d", opt.StatementTimeout.Milliseconds())
	}
	if _, err := tx.Exec(ctx, settings); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Result, error) {
		var r Result
		var distance float64
		var meta []byte
		err := row.Scan(&r.ID, &distance, &r.Content, &meta)
		r.Score = 1 - distance
		if meta != nil {
			r.Metadata = meta
		}
		return r, err
	})
	if err != nil {
		return nil, err
	}
	return out, tx.Commit(ctx)
}
