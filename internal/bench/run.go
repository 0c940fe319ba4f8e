package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one strategy in one cell, as written to the JSON file.
type Result struct {
	Strategy    string  `json:"strategy"`
	Placement   string  `json:"placement"`
	Selectivity float64 `json:"selectivity"`
	Recall      float64 `json:"recall_at_10"`
	// Short is the fraction of queries that returned fewer than K rows
	// while K permitted rows existed.
	Short   float64 `json:"short_results"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	QPS     float64 `json:"qps"`
	Queries int     `json:"queries"`
}

// RunConfig says what to measure.
type RunConfig struct {
	Tenant      string
	Concurrency int // clients of the throughput pass
	// Cells and Strategies, when set, restrict the run (by Group name and
	// strategy name); unfiltered and exact always run, they are the
	// references.
	Cells, Strategies []string
	// ExactQueries caps the queries the exact strategy runs (0: all).
	ExactQueries int
	// Progress, when set, is told about every finished strategy.
	Progress func(r Result)
}

// Cells lists the benchmark's cells: everything visible, then every
// placement at every selectivity.
func Cells(tenant string) []User {
	cells := []User{NewUser(tenant, Everyone, 1)}
	for _, p := range Placements {
		for _, sel := range Selectivities {
			cells = append(cells, NewUser(tenant, p, sel))
		}
	}
	return cells
}

// Run measures every strategy in every cell on the same queries. Recall is
// against Truth, computed in Go from d; the unfiltered strategy, which
// ignores the policy, is measured against the whole table's nearest
// neighbours. The exact strategy is slow on broad cells (it reads every
// permitted row), so it runs on the first cfg.ExactQueries queries only.
func Run(ctx context.Context, env *Env, d *Dataset, queries [][]float32, cfg RunConfig) ([]Result, error) {
	var cells []User
	for _, u := range Cells(cfg.Tenant) {
		if cfg.Cells == nil || u.Placement == Everyone || slices.Contains(cfg.Cells, Group(u.Placement, u.Selectivity)) {
			cells = append(cells, u)
		}
	}
	truth := Truth(d, queries, cells) // cells[0] is everything visible
	var out []Result
	for c, u := range cells {
		for _, s := range Strategies {
			if cfg.Strategies != nil && s != Unfiltered && s != Exact && !slices.Contains(cfg.Strategies, s) {
				continue
			}
			qs := queries
			if s == Exact && cfg.ExactQueries > 0 {
				qs = queries[:min(len(queries), cfg.ExactQueries)]
			}
			got, lat, err := env.pass(ctx, u, qs, s)
			if err != nil {
				return nil, err
			}
			want := truth[c]
			if s == Unfiltered {
				want = truth[0]
			}
			r := score(s, u, got, want, lat)
			if r.QPS, err = env.throughput(ctx, u, qs, s, cfg.Concurrency); err != nil {
				return nil, err
			}
			if cfg.Progress != nil {
				cfg.Progress(r)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// pass runs every query once, one at a time, after a short warm-up.
func (e *Env) pass(ctx context.Context, u User, queries [][]float32, strategy string) ([][]int64, []time.Duration, error) {
	search := e.searcher(strategy)
	for _, q := range queries[:min(len(queries), 20)] {
		if _, err := search(ctx, u, q); err != nil {
			return nil, nil, fmt.Errorf("bench: %s for %s: %w", strategy, Group(u.Placement, u.Selectivity), err)
		}
	}
	got := make([][]int64, len(queries))
	lat := make([]time.Duration, len(queries))
	for i, q := range queries {
		start := time.Now()
		ids, err := search(ctx, u, q)
		lat[i] = time.Since(start)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %s for %s: %w", strategy, Group(u.Placement, u.Selectivity), err)
		}
		got[i] = ids
	}
	return got, lat, nil
}

// throughput runs the queries from n concurrent clients and returns
// queries per second.
func (e *Env) throughput(ctx context.Context, u User, queries [][]float32, strategy string, n int) (float64, error) {
	search := e.searcher(strategy)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(queries)); i = next.Add(1) - 1 {
				if _, err := search(ctx, u, queries[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("bench: %s under load: %w", strategy, err)
	}
	return float64(len(queries)) / elapsed.Seconds(), nil
}

// score computes recall@K (the share of the true K nearest permitted rows
// returned), the short-result rate and latency percentiles.
func score(strategy string, u User, got, truth [][]int64, lat []time.Duration) Result {
	r := Result{Strategy: strategy, Placement: string(u.Placement), Selectivity: u.Selectivity, Queries: len(got)}
	var recall float64
	short := 0
	for i := range got {
		want := truth[i]
		if len(want) == 0 {
			recall++
			continue
		}
		hit := 0
		for _, id := range got[i] {
			if slices.Contains(want, id) {
				hit++
			}
		}
		recall += float64(hit) / float64(len(want))
		if len(got[i]) < K && len(want) == K {
			short++
		}
	}
	r.Recall = recall / float64(len(got))
	r.Short = float64(short) / float64(len(got))
	r.P50, r.P95, r.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	return r
}

// percentile is the nearest-rank percentile, in milliseconds.
func percentile(lat []time.Duration, p float64) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return float64(s[max(i, 0)].Microseconds()) / 1000
}
