package retriever

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
)

// Query is one similarity search on a resource.
type Query struct {
	// Resource is the policy's resource (the request's "collection").
	Resource string `json:"collection"`
	// Embedding is the query vector; its dimension must match the column's.
	Embedding []float32 `json:"embedding,omitempty"`
	// Text is the query as text, for a front door that embeds it
	// (retriever/service, with its Embedder) when no Embedding is given;
	// Search reads Embedding only.
	Text string `json:"query,omitempty"`
	// K is how many chunks to return.
	K int `json:"k"`
	// Filter holds metadata conditions on filterable fields (optional).
	Filter Filter `json:"filter,omitempty"`
	// MinScore drops results less similar than this (optional).
	MinScore *float64 `json:"min_score,omitempty"`
	// Explain asks, for each result, which allow rules let it in
	// (Result.Rules), computed in the search's own statement.
	Explain bool `json:"explain,omitempty"`
}

// Config tunes a Searcher; the zero value is the default strategy.
type Config struct {
	// StatementTimeout bounds the query; 0 means the database's default.
	StatementTimeout time.Duration
	// EfSearch is the smallest hnsw.ef_search, the candidate list of the
	// index walk: larger finds more of the true nearest chunks and costs
	// more. Selective policies walk with more (see EfFactor).
	// 0 means DefaultEfSearch.
	EfSearch int
	// EfFactor scales ef_search with a policy's selectivity; 0 means
	// DefaultEfFactor.
	EfFactor int
	// MaxScanTuples is hnsw.max_scan_tuples, how far an iterative index
	// walk goes before the search falls back to an exact scan of the
	// permitted rows. 0 means DefaultMaxScanTuples.
	MaxScanTuples int
	// Estimates caches the planner's estimate of how many rows each
	// subject's policy lets through, to choose between PlanExact and
	// PlanIndex. It is the one cache a caller provides, so that several
	// searchers may share it: nil keeps none, and every search walks the
	// index and leaves the rest to the planner and the statement's exact
	// fallback. A long-running process should keep one (NewEstimates with
	// DefaultEstimates and DefaultEstimateTTL, which retriever/service
	// sets when it is nil).
	Estimates *Estimates
	// ExactRows is the estimate at or below which the search reads the
	// permitted rows exactly; 0 means DefaultExactRows.
	ExactRows int
	// Overfetch is how many times k permitted rows the index walk collects
	// before the re-sort keeps the nearest k: relaxed order finds rows in
	// roughly, not exactly, increasing distance, and when the permitted
	// rows lie away from the query the first k found are seldom the
	// nearest. 0 means DefaultOverfetch.
	Overfetch int
	// StrictOrder walks the index with hnsw.iterative_scan = strict_order
	// instead of relaxed_order (the search re-sorts either way).
	StrictOrder bool
	// OnPlan, when set, is told which plan each search ran.
	OnPlan func(Plan)
	// Templates is how many statement templates (one per request shape)
	// the searcher keeps; 0 means DefaultTemplates, and a negative size is
	// NewSearcher's error.
	Templates int
}

// Defaults of Config, chosen with `ragfence bench` (see docs/performance.md).
const (
	DefaultEfSearch      = 100 // the floor; see EfFactor
	DefaultMaxScanTuples = 20000
)

// DefaultTemplates is Config.Templates' default: request shapes are few (a
// policy's fragment shapes times the filters, k and flags clients use), so
// the cache rarely evicts.
const DefaultTemplates = 1024

// Result is one chunk the subject may see. Masked columns read as null.
type Result struct {
	ID       string          `json:"id"`
	Score    float64         `json:"score"` // cosine similarity: 1 - cosine distance
	Content  *string         `json:"content"`
	Metadata json.RawMessage `json:"metadata"`
	// Rules are the allow rules that let the chunk in (an agent grant's as
	// agent:rule), when the query asked to Explain.
	Rules []string `json:"rules,omitempty"`
	// Document is the chunk's document (the resource's document column),
	// for counting what a caller reads (guardrails); never sent.
	Document string `json:"-"`
}

// alias is how searches name the resource's table; fixed, so the statement
// text (and pgx's statement cache) is the same for every subject.
const alias = "c"

// Batcher sends a batch of statements in one round trip (*pgxpool.Pool,
// *pgx.Conn, pgx.Tx).
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Searcher runs similarity searches. It keeps, for the life of the
// process, what searches can share: the statement text per request shape
// and each table's embedding dimension (so a Searcher serves one
// database), and the Estimates of its Config. Safe for concurrent use.
type Searcher struct {
	cfg       Config
	templates *lru.Cache[string, statements]
	dims      sync.Map // table.column -> int, the embedding column's atttypmod
}

// NewSearcher returns a Searcher tuned by cfg.
func NewSearcher(cfg Config) (*Searcher, error) {
	templates, err := lru.New[string, statements](cmp.Or(cfg.Templates, DefaultTemplates))
	if err != nil {
		return nil, fmt.Errorf("retriever: Config.Templates %d: %w", cfg.Templates, err)
	}
	return &Searcher{cfg: cfg, templates: templates}, nil
}

// Search returns the K chunks nearest q.Embedding that req's subject may
// see, nearest first, and the fragment that decided it. Every value is
// bound; the policy fragment is ANDed into the search's WHERE clause.
//
// The search is one round trip: a batch of the transaction's settings and
// one statement (see buildStatements) whose text holds no subject values;
// the first search of a table also reads its embedding's dimension (see
// Check). Every error is an *Error with a stable Code.
func (s *Searcher) Search(ctx context.Context, db Batcher, p *filter.Policy, req filter.Request, q Query) ([]Result, *filter.Fragment, error) {
	results, frag, err := s.search(ctx, db, p, req, q)
	if err != nil {
		return nil, nil, classify(ctx, err, len(q.Filter) > 0)
	}
	return results, frag, nil
}

func (s *Searcher) search(ctx context.Context, db Batcher, p *filter.Policy, req filter.Request, q Query) ([]Result, *filter.Fragment, error) {
	if err := s.Check(ctx, db, p, q); err != nil {
		return nil, nil, err
	}
	req.Alias = alias
	frag, err := p.Fragment(q.Resource, req)
	if err != nil {
		return nil, nil, err
	}
	if frag.Outcome == filter.AlwaysDenied {
		return []Result{}, frag, nil
	}
	st, err := s.statements(p, frag, q, cmp.Or(s.cfg.Overfetch, DefaultOverfetch))
	if err != nil {
		return nil, nil, err
	}
	results, err := s.run(ctx, db, st)
	if err != nil {
		return nil, nil, fmt.Errorf("retriever: search %s: %w", q.Resource, err)
	}
	return results, frag, nil
}

// settingsSQL sets, for this transaction only, what the search needs:
// iterative index scans (relaxed order: the statement re-sorts), the candidate
// list and walk bound, the timeout (an empty value keeps the server's), and
// custom plans, so the planner weighs every subject's own policy values
// rather than a generic plan chosen for the first few. No parallel workers:
// starting them costs more than a k-row search, and a parallel plan would
// start them even for the exact arm its one-time filter skips. No JIT (see
// requestSettingsSQL). Constant text, values bound: pgx prepares it once
// per connection.
const settingsSQL = `SELECT set_config('hnsw.iterative_scan', $4, true),
	set_config('hnsw.ef_search', $1, true),
	set_config('hnsw.max_scan_tuples', $2, true),
	set_config('statement_timeout', COALESCE(NULLIF($3, ''), current_setting('statement_timeout')), true),
	set_config('plan_cache_mode', 'force_custom_plan', true),
	set_config('max_parallel_workers_per_gather', '0', true),
	set_config('jit', 'off', true)`

// requestSettingsSQL is what every other statement a search runs (the
// catalog read of Check) is sent after, in the same batch (one implicit
// transaction): the statement timeout ($1, as in settingsSQL) and no JIT. JIT compiles when
// a plan's estimated cost passes jit_above_cost, and a policy's conditions
// repeated over many branches (150 UNION ALL branches over a protected
// table: 10 s with JIT, 0.16 s without) pass it while the statement itself
// is fast; a k-row search never gains from it.
const requestSettingsSQL = `SELECT set_config('statement_timeout', COALESCE(NULLIF($1, ''), current_setting('statement_timeout')), true),
	set_config('jit', 'off', true)`

// timeoutSetting is a statement timeout as settingsSQL and
// requestSettingsSQL take it: milliseconds, or "" for the server's own.
func timeoutSetting(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// run sends the settings and the search (and, when the plan was not known,
// the estimate that chooses it next time) as one batch: one round trip, one
// implicit transaction, so the settings end with it.
func (s *Searcher) run(ctx context.Context, db Batcher, st statements) ([]Result, error) {
	opt := s.cfg
	var key string
	if opt.Estimates != nil {
		var err error
		if key, err = estimateKey(st.permitted, st.permittedArgs); err != nil {
			return nil, err
		}
	}
	c := choose(opt.Estimates, key, st.k, opt)
	b := &pgx.Batch{}
	b.Queue(settingsSQL, strconv.Itoa(c.ef),
		strconv.Itoa(maxScanTuples(opt)), timeoutSetting(opt.StatementTimeout), scanOrder(opt.StrictOrder))
	sql, args := st.index, st.indexArgs
	if c.plan == PlanExact {
		sql, args = st.exact, st.exactArgs
	}
	var out []Result
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		var err error
		out, err = pgx.CollectRows(rows, scanResult)
		return err
	})
	if !c.known && opt.Estimates != nil {
		queueEstimate(b, opt.Estimates, key, st.table, st.permitted, st.permittedArgs)
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	if opt.OnPlan != nil {
		opt.OnPlan(c.plan)
	}
	return out, nil
}

// maxScanTuples is opt's walk bound; 0 or less means the default.
func maxScanTuples(opt Config) int {
	if opt.MaxScanTuples <= 0 {
		return DefaultMaxScanTuples
	}
	return opt.MaxScanTuples
}

func scanOrder(strict bool) string {
	if strict {
		return "strict_order"
	}
	return "relaxed_order"
}

func scanResult(row pgx.CollectableRow) (Result, error) {
	var r Result
	var distance float64
	var meta []byte
	var doc *string
	err := row.Scan(&r.ID, &distance, &r.Content, &meta, &r.Rules, &doc)
	if doc != nil {
		r.Document = *doc
	}
	if err == nil && math.IsNaN(distance) {
		// definedOnly keeps such rows out; a NaN here is a bug, and
		// would fail the response's encoding after the decision was
		// recorded as allowed.
		return r, errors.New("retriever: a row's distance is NaN")
	}
	r.Score = 1 - distance
	if meta != nil {
		r.Metadata = meta
	}
	return r, err
}
