package retriever

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
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
// through out of how many the index walk covers (the rows of the
// partitions the statement reads, all of an unpartitioned table's).
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
	// sizes holds, per table, the row count (reltuples) of each of its
	// partitions, or of the table itself, by schema.name: the same for
	// every subject, and for a table of a thousand partitions a read of a
	// thousand rows (5 ms), so read once per ttl.
	sizes *expirable.LRU[string, map[string]float64]
}

// estimateTables is how many tables' sizes an Estimates keeps: a process
// searches few tables.
const estimateTables = 256

// NewEstimates keeps up to size estimates, each for at most ttl (so a
// growing or shrinking tenant is re-estimated).
func NewEstimates(size int, ttl time.Duration) *Estimates {
	return &Estimates{
		lru:   expirable.NewLRU[string, estimate](size, nil, ttl),
		sizes: expirable.NewLRU[string, map[string]float64](estimateTables, nil, ttl),
	}
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
// share s of the rows the walk covers (its tenant's partition's, when the
// table is partitioned by tenant) is walked with ef_search = EfFactor*k/s
// (at least EfSearch); when that exceeds MaxEfSearch, or few rows are
// permitted, the rows are read exactly. Without one, the statement walks with EfSearch
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
// rows and the size of what the index walk covers, and stores them when
// the batch is read. Its errors are dropped: the search before it has its
// rows already, and the next search simply estimates again.
//
// The walk covers the partitions the permitted statement reads, with
// custom plans (settingsSQL) pruned to the tenant's: the sum of their
// pg_class.reltuples, not the table's, is what a policy's selectivity is
// measured against. (A partitioned parent's own reltuples is -1 until
// someone runs ANALYZE on it, which autovacuum never does, and once set it
// counts every tenant's rows.) A partition or table without a row count
// (never vacuumed, analyzed or indexed since it was loaded) gets no
// estimate: the planner decides that search, and the next asks again.
func queueEstimate(b *pgx.Batch, cache *Estimates, key, table, sql string, args []any) {
	sizes, ok := cache.sizes.Get(table)
	if !ok {
		b.Queue(sizesSQL, table).Query(func(rows pgx.Rows) error {
			if read, err := readSizes(rows); err == nil {
				sizes = read
				cache.sizes.Add(table, sizes)
			}
			return nil
		})
	}
	b.Queue("EXPLAIN (FORMAT JSON, VERBOSE) "+sql, args...).Query(func(rows pgx.Rows) error {
		plan, ok := readPlan(rows)
		if ok && sizes != nil {
			storeEstimate(cache, key, table, plan, sizes)
		}
		return nil
	})
}

// sizesSQL reads the row count of a table, or of each partition of a
// partitioned one, by schema and name as EXPLAIN VERBOSE names them.
const sizesSQL = `SELECT n.nspname::text, c.relname::text, c.reltuples::float8
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf)`

func readSizes(rows pgx.Rows) (map[string]float64, error) {
	sizes := map[string]float64{}
	var schema, name string
	var n float64
	_, err := pgx.ForEachRow(rows, []any{&schema, &name, &n}, func() error {
		sizes[schema+"."+name] = n
		return nil
	})
	return sizes, err
}

// storeEstimate keeps the plan's row estimate and the size of the
// partitions it reads; relations the policy's subqueries read are not in
// sizes.
func storeEstimate(cache *Estimates, key, table string, plan planNode, sizes map[string]float64) {
	est := estimate{rows: plan.Rows}
	read := 0
	for _, rel := range plan.relations() {
		n, ok := sizes[rel]
		if !ok {
			continue
		}
		if n < 0 {
			return // no row count yet
		}
		est.total += n
		read++
	}
	if read == 0 && est.rows > 0 {
		cache.sizes.Remove(table) // the plan reads a partition newer than the sizes
		return
	}
	cache.put(key, est)
}

// planNode is what an estimate reads of an EXPLAIN (FORMAT JSON, VERBOSE)
// node.
type planNode struct {
	Rows     float64    `json:"Plan Rows"`
	Schema   string     `json:"Schema"`
	Relation string     `json:"Relation Name"`
	Plans    []planNode `json:"Plans"`
}

// readPlan reads EXPLAIN (FORMAT JSON)'s one plan.
func readPlan(rows pgx.Rows) (planNode, bool) {
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	for rows.Next() {
		var doc []byte
		if rows.Scan(&doc) != nil || json.Unmarshal(doc, &plans) != nil {
			return planNode{}, false
		}
	}
	if rows.Err() != nil || len(plans) != 1 {
		return planNode{}, false
	}
	return plans[0].Plan, true
}

// relations returns the relations the plan scans, as schema.name, each
// once.
func (n planNode) relations() []string {
	var out []string
	var walk func(n planNode)
	walk = func(n planNode) {
		if rel := n.Schema + "." + n.Relation; n.Relation != "" && !slices.Contains(out, rel) {
			out = append(out, rel)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(n)
	return out
}
