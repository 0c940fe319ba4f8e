package filter

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultStatementTimeout bounds every statement Wrap runs, unless
// WithStatementTimeout sets another bound.
const DefaultStatementTimeout = 30 * time.Second

// WithStatementTimeout bounds each statement Wrap runs to d (rounded up to a
// millisecond, capped at PostgreSQL's limit of about 24.8 days), in place of
// DefaultStatementTimeout. d <= 0 keeps the connection's own
// statement_timeout, which may be none.
func WithStatementTimeout(d time.Duration) Option {
	return func(db *DB) { db.timeout = d }
}

// maxStatementTimeout is the largest statement_timeout PostgreSQL accepts, in
// milliseconds (about 24.8 days); a longer bound is capped to it.
const maxStatementTimeout = math.MaxInt32

// settingsSQL sets, for the current transaction, the settings every
// statement Wrap runs needs (see the package doc for why), after saving the
// values it replaces in ragfence.saved_* (placeholder settings, local to the
// transaction) for restoreSQL. $1 is the statement timeout in milliseconds;
// empty, it keeps the current one. The subquery fenced by OFFSET 0 reads the
// old values before anything is set.
//
// The iterative scan is set when pgvector defines it, and also when
// pgvector's settings are not loaded (no hnsw.ef_search in pg_settings,
// which lists no placeholders): the value is then a placeholder, which
// pgvector >= 0.8 adopts if the statement loads it, an older pgvector drops
// with a warning, and a server without pgvector ignores. It is skipped only
// when an older pgvector is loaded, whose reserved "hnsw" prefix would make
// the unknown name an error. pg_settings is read only while the setting is
// not defined: OR stops at a defined one, and the EXISTS is an init plan,
// run when first needed.
//
// Constant text with the value bound, qualified with pg_catalog whatever the
// search_path: pgx prepares it once per connection.
const settingsSQL = `SELECT pg_catalog.set_config('ragfence.saved_jit', s.jit, true),
	pg_catalog.set_config('ragfence.saved_statement_timeout', s.timeout, true),
	pg_catalog.set_config('ragfence.saved_iterative_scan', s.scan, true),
	pg_catalog.set_config('jit', 'off', true),
	pg_catalog.set_config('statement_timeout', COALESCE(NULLIF($1::pg_catalog.text, ''), s.timeout), true),
	CASE WHEN s.scan IS NOT NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_settings WHERE name = 'hnsw.ef_search')
		THEN pg_catalog.set_config('hnsw.iterative_scan', 'strict_order', true) END
FROM (SELECT pg_catalog.current_setting('jit') AS jit,
	pg_catalog.current_setting('statement_timeout') AS timeout,
	pg_catalog.current_setting('hnsw.iterative_scan', true) AS scan OFFSET 0) s`

// restoreSQL puts back what settingsSQL replaced, so that inside the caller's
// own transaction the statements after Wrap's run as they would have. An
// empty saved iterative scan means there was none: NULL resets it. It is
// left alone when it is not defined, which is when settingsSQL skipped it.
const restoreSQL = `SELECT pg_catalog.set_config('jit', pg_catalog.current_setting('ragfence.saved_jit'), true),
	pg_catalog.set_config('statement_timeout', pg_catalog.current_setting('ragfence.saved_statement_timeout'), true),
	CASE WHEN pg_catalog.current_setting('hnsw.iterative_scan', true) IS NOT NULL
		THEN pg_catalog.set_config('hnsw.iterative_scan',
			NULLIF(pg_catalog.current_setting('ragfence.saved_iterative_scan'), ''), true) END`

// batch queues sql between settingsSQL and restoreSQL. pgx sends a batch in
// one round trip; outside a transaction the three statements share one
// implicit transaction, so the settings end with it, and inside the
// caller's transaction restoreSQL ends them.
func (db *DB) batch(sql string, args []any) *pgx.Batch {
	timeout := ""
	if db.timeout > 0 {
		ms := db.timeout.Milliseconds()
		if db.timeout%time.Millisecond != 0 {
			ms++
		}
		timeout = strconv.FormatInt(min(ms, maxStatementTimeout), 10)
	}
	b := &pgx.Batch{}
	b.Queue(settingsSQL, timeout)
	b.Queue(sql, args...)
	b.Queue(restoreSQL)
	return b
}

// query runs an already rewritten statement with the settings around it.
func (db *DB) query(ctx context.Context, sql string, args []any) (pgx.Rows, error) {
	br := db.q.SendBatch(ctx, db.batch(sql, args))
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		if rows != nil {
			rows.Close()
		}
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// exec runs an already rewritten statement with the settings around it.
func (db *DB) exec(ctx context.Context, sql string, args []any) (pgconn.CommandTag, error) {
	br := db.q.SendBatch(ctx, db.batch(sql, args))
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// batchRows are the statement's rows; closing them (or reading past the
// last, as pgx.Rows do) reads restoreSQL's result and closes the batch, which
// frees the connection.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error // from restoreSQL or closing the batch
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	if r.Rows.Err() != nil {
		// The statement's error is the one to report; the batch stops there.
		r.br.Close()
		return
	}
	_, r.err = r.br.Exec()
	if err := r.br.Close(); r.err == nil {
		r.err = err
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// batchRow is QueryRow's row, scanned as pgx scans its own.
type batchRow struct{ rows pgx.Rows }

func (r batchRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
