package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ragfence/ragfence/retriever"
)

// Profiles are the dataset sizes of `ragfence bench --quick` (CI) and the
// default run.
var Profiles = map[string]DataConfig{
	"quick": {Rows: 20_000, Queries: 300, Dimension: 384, Clusters: 200, Zipf: 1, Latent: 64, Spread: 1.0, Noise: 0.3, Seed: 1},
	"full":  {Rows: 200_000, Queries: 2_000, Dimension: 384, Clusters: 2_000, Zipf: 1, Latent: 48, Spread: 0.7, Noise: 0.3, Seed: 1},
}

// Tenant is the tenant every generated row and user belongs to.
const Tenant = "bench"

// Options is one benchmark run, as `ragfence bench` takes it.
type Options struct {
	// DB is the server's URL; the scratch database is created beside it.
	DB string
	// Profile names one of Profiles; Rows and Queries override its sizes
	// when positive.
	Profile       string
	Rows, Queries int
	Concurrency   int
	ExactQueries  int
	// Search is the ragfence strategy's configuration; its Estimates are
	// replaced by a cache as serve's.
	Search retriever.Config
	// Keep keeps the scratch database, and reuses one kept before.
	Keep              bool
	Cells, Strategies []string
	Command           string // the command line for the report
	Logf              func(format string, args ...any)
	OnResult          func(Result)
}

// ErrTooFewRows is returned when Rows cannot give the most selective user k rows.
var ErrTooFewRows = errors.New("bench: too few rows")

// Execute generates (or reuses) the dataset in a scratch database, runs
// every strategy on every cell, and returns the report. The scratch
// database is dropped afterwards unless Keep.
func Execute(ctx context.Context, o Options) (*Report, error) {
	data, ok := Profiles[o.Profile]
	if !ok {
		return nil, fmt.Errorf("bench: no profile %q", o.Profile)
	}
	if o.Rows > 0 {
		data.Rows = o.Rows
	}
	if o.Queries > 0 {
		data.Queries = o.Queries
	}
	if min := MinRows(); data.Rows < min {
		return nil, fmt.Errorf("%w: at least %d, so the %g%% user can see %d rows", ErrTooFewRows, min, Selectivities[len(Selectivities)-1]*100, K)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	rep := &Report{Command: o.Command, Profile: o.Profile, Started: time.Now(), Data: data,
		Concurrency: o.Concurrency, ExactQueries: o.ExactQueries}
	d := Generate(data)
	env, cleanup, err := prepare(ctx, o, rep, d)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep.Results, err = Run(ctx, env, d, d.Queries, RunConfig{
		ExactQueries: o.ExactQueries, Tenant: Tenant, Concurrency: o.Concurrency,
		Cells: o.Cells, Strategies: o.Strategies, Progress: o.OnResult,
	})
	rep.Duration = time.Since(rep.Started)
	return rep, err
}

// MinRows is the smallest dataset in which the most selective user sees K rows.
func MinRows() int { return int(float64(K) / Selectivities[len(Selectivities)-1]) }

// prepare loads the dataset (or reuses a kept one) and opens the
// strategies' connections.
func prepare(ctx context.Context, o Options, rep *Report, d *Dataset) (*Env, func(), error) {
	name := fmt.Sprintf("ragfence_bench_%s_%d", rep.Profile, rep.Data.Rows)
	scratch, loaded, err := OpenScratch(ctx, o.DB, name, rep.Data, o.Keep)
	if err != nil {
		return nil, nil, err
	}
	drop := func() {
		if !o.Keep {
			if err := scratch.Drop(context.WithoutCancel(ctx)); err != nil {
				o.Logf("could not drop scratch database %s: %v", scratch.Name, err)
			}
		}
	}
	if loaded {
		o.Logf("reusing the dataset kept in database %s", scratch.Name)
	} else {
		o.Logf("generating %d rows and loading them into database %s", rep.Data.Rows, scratch.Name)
		if rep.Load, err = Load(ctx, scratch.URL, d, Tenant); err != nil {
			drop()
			return nil, nil, err
		}
		o.Logf("loaded: copy %s, HNSW index %s, other indexes and ANALYZE %s", rep.Load.Copy.Round(time.Millisecond),
			rep.Load.VectorIndex.Round(time.Millisecond), rep.Load.Other.Round(time.Millisecond))
	}
	env, closeEnv, err := openEnv(ctx, scratch, o)
	if err != nil {
		drop()
		return nil, nil, err
	}
	if rep.Machine, err = Describe(ctx, env.Pool); err != nil {
		closeEnv()
		drop()
		return nil, nil, err
	}
	return env, func() { closeEnv(); drop() }, nil
}

func openEnv(ctx context.Context, s *Scratch, o Options) (*Env, func(), error) {
	size := int32(max(o.Concurrency, 1))
	pool, err := OpenPool(ctx, s.URL, size)
	if err != nil {
		return nil, nil, err
	}
	rls, err := OpenPool(ctx, s.RLSURL, size)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	closeAll := func() { pool.Close(); rls.Close() }
	p, err := CompilePolicy()
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	search := o.Search
	search.Estimates = retriever.NewEstimates(retriever.DefaultEstimates, retriever.DefaultEstimateTTL) // as serve
	searcher, err := retriever.NewSearcher(search)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return &Env{Pool: pool, RLSPool: rls, Policy: p, Searcher: searcher}, closeAll, nil
}
