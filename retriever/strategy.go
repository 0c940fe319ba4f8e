package retriever

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jackc/pgx/v5"
)

// Plan is how a search reads the permitted rows.
type Plan string

const (
	// PlanExact reads the permitted rows through the indexes on the policy's
	// columns and sorts them by distance: exact, and cheapest when few rows
	// are permitted.
	PlanExact Plan = "exact"
	// PlanIndex walks the vector index with iterative scans, falling back to
	// the exact read within the same statement if the walk stops short.
	PlanIndex Plan = "index"
)

// Defaults of the plan choice, chosen with `ragfence bench`
// (docs/performance.md).
const (
	// DefaultExactRows: at or below this many estimated permitted rows the
	// search reads them exactly; reading a few thousand rows costs less
	// than any index walk that finds them.
	DefaultExactRows = 5000
	// DefaultEfFactor: a walk over a share s of the rows keeps its recall
	// when ef_search is about this many times k/s (a filtered walk's
	// top k is an unfiltered walk's top k/s).
	DefaultEfFactor = 3
	// DefaultOverfetch: see Config.Overfetch.
	DefaultOverfetch = 3
	// MaxEfSearch is pgvector's upper bound for hnsw.ef_search. A policy
	// that would need more reads its rows exactly.
	MaxEfSearch = 1000
)

// The estimate cache of a long-running process (retriever/service's
// default): how many subjects' estimates it keeps, and for how long.
const (
	DefaultEstimates   = 10000
	DefaultEstimateTTL = 5 * time.Minute
)

// estimate is what the planner expects of a policy: how many rows it lets
// through out of how many.
type estimate struct{ rows, total float64 }

// Estimates remembers, per policy fragment and metadata filter with their
// values, how many rows PostgreSQL's planner estimates they let through.
// Searches use it to choose a Plan; a miss is filled within the same round
// trip. Safe for concurrent use. An estimate only ever chooses between two
// plans that both return only permitted rows, and k of them whenever k
// exist: a stale or colliding one can cost time, or pick the approximate
// plan (or a smaller ef_search) where the exact one was due, never a row
// the subject may not see.
type Estimates struct {
	lru *expirable.LRU[string, estimate]
}

// NewEstimates keeps up to size estimates, each for at most ttl (so a
// growing or shrinking tenant is re-estimated).
func NewEstimates(size int, ttl time.Duration) *Estimates {
	return &Estimates{lru: expirable.NewLRU[string, estimate](size, nil, ttl)}
}

func (e *Estimates) get(key string) (estimate, bool) {
	if e == nil {
		return estimate{}, false
	}
	return e.lru.Get(key)
}

func (e *Estimates) put(key string, est estimate) {
	if e != nil {
		e.lru.Add(key, est)
	}
}

// estimateKey identifies the permitted-rows statement with its values.
func estimateKey(sql string, args []any) (string, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return "", fmt.Errorf("retriever: estimate key: %w", err)
	}
	return sql + "\x00" + string(b), nil
}

// choice is a plan and the ef_search its walk uses.
type choice struct {
	plan  Plan
	ef    int
	known bool // from an estimate; false: the planner decides this time
}

// choose picks the plan. With an estimate, a policy letting through a
// share s of the rows is walked with ef_search = EfFactor*k/s (at least
// EfSearch); when that exceeds MaxEfSearch, or few rows are permitted, the
// rows are read exactly. Without one, the statement walks with EfSearch
// and the planner may still read exactly.
func choose(cache *Estimates, key string, k int, opt Config) choice {
	base := min(max(cmp.Or(opt.EfSearch, DefaultEfSearch), 1), MaxEfSearch)
	est, ok := cache.get(key)
	if !ok {
		return choice{plan: PlanIndex, ef: base}
	}
	if est.rows <= float64(cmp.Or(opt.ExactRows, DefaultExactRows)) || est.total <= 0 {
		return choice{plan: PlanExact, ef: base, known: true}
	}
	need := float64(cmp.Or(opt.EfFactor, DefaultEfFactor)*k) * est.total / est.rows
	if need > MaxEfSearch {
		return choice{plan: PlanExact, ef: base, known: true}
	}
	return choice{plan: PlanIndex, ef: max(base, int(math.Ceil(need))), known: true}
}

// queueEstimate adds to the batch the planner's estimate of the permitted
// rows and the table's size, and stores them when the batch is read. Its
// errors are dropped: the search before it has its rows already, and the
// next search simply estimates again.
func queueEstimate(b *pgx.Batch, cache *Estimates, key, table, sql string, args []any) {
	var est estimate
	b.Queue("SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass", table).QueryRow(func(row pgx.Row) error {
		if row.Scan(&est.total) != nil {
			est.total = -1
		}
		return nil
	})
	b.Queue("EXPLAIN (FORMAT JSON) "+sql, args...).Query(func(rows pgx.Rows) error {
		var plans []struct {
			Plan struct {
				Rows float64 `json:"Plan Rows"`
			} `json:"Plan"`
		}
		for rows.Next() {
			var doc []byte
			if rows.Scan(&doc) != nil || json.Unmarshal(doc, &plans) != nil {
				return nil
			}
		}
		if rows.Err() == nil && len(plans) == 1 && est.total >= 0 {
			est.rows = plans[0].Plan.Rows
			cache.put(key, est)
		}
		return nil
	})
}
