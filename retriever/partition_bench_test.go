package retriever_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// BenchmarkSearchByLayout compares the demo knowledge base unpartitioned
// and partitioned by tenant (docs/scaling.md has the figures): Search, as
// the service runs it (an Estimates cache, the default thresholds), for
// subjects of each tenant over the demo's topics, one client at a time.
// RAGFENCE_BENCH_CHUNKS sets the size (default 20000); each layout is
// seeded in a database of its own. Besides ns/op it reports the p50 and p99
// latency, the share of searches that walked the index, and recall@10
// against the exact oracle, measured before the timer starts.
func BenchmarkSearchByLayout(b *testing.B) {
	chunks := 20000
	if v := os.Getenv("RAGFENCE_BENCH_CHUNKS"); v != "" {
		var err error
		if chunks, err = strconv.Atoi(v); err != nil {
			b.Fatalf("RAGFENCE_BENCH_CHUNKS: %v", err)
		}
	}
	for _, partitioned := range []bool{false, true} {
		f := layoutFixture(b, chunks, partitioned)
		for _, id := range []string{"alice", "carol", "dave", "erin"} {
			name := fmt.Sprintf("chunks=%d/partitioned=%v/%s", chunks, partitioned, id)
			b.Run(name, func(b *testing.B) { benchLayoutSearch(b, f, f.User(b, id)) })
		}
	}
}

func layoutFixture(b *testing.B, chunks int, partitioned bool) *e2e.Fixture {
	b.Helper()
	ctx := context.Background()
	f := &e2e.Fixture{DSN: testdb.Database(b)}
	conn, err := pgx.Connect(ctx, f.DSN)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if f.Data, _, err = demo.Seed(ctx, conn, demo.Config{Chunks: chunks, PartitionByTenant: partitioned}, true); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d chunks (partitioned %v) in %s", chunks, partitioned, time.Since(start).Round(time.Second))
	if f.Pool, err = e2e.NewPool(f.DSN, 4); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Pool.Close)
	if f.Policy, err = e2e.CompileMaskedPolicy(); err != nil {
		b.Fatal(err)
	}
	return f
}

func benchLayoutSearch(b *testing.B, f *e2e.Fixture, u e2e.User) {
	ctx := context.Background()
	index := 0
	s := e2e.NewSearcher(b, retriever.Config{StatementTimeout: 5 * time.Second,
		Estimates: retriever.NewEstimates(retriever.DefaultEstimates, retriever.DefaultEstimateTTL),
		OnPlan: func(p retriever.Plan) {
			if p == retriever.PlanIndex {
				index++
			}
		}})
	req := filter.Request{Subject: u.Subject()}
	query := func(i int) retriever.Query {
		return retriever.Query{Resource: "chunks", Embedding: f.Topic(i), K: benchK}
	}
	found, want := 0, 0
	for i := range f.Data.Topics {
		res, _, err := s.Search(ctx, f.Pool, f.Policy, req, query(i))
		if err != nil {
			b.Fatal(err)
		}
		exact := f.ExactTopK(b, u, f.Topic(i), benchK, "")
		want += len(exact)
		for _, r := range res {
			if slices.Contains(exact, r.ID) {
				found++
			}
		}
	}
	index = 0
	var took []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		if _, _, err := s.Search(ctx, f.Pool, f.Policy, req, query(i)); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		i++
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(index)/float64(len(took)), "index-share")
	b.ReportMetric(float64(found)/float64(max(want, 1)), "recall@10")
}
