package rewrite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/pgcatalog"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// benchSQL is a typical RAG query: a join and a vector ORDER BY ... LIMIT.
const benchSQL = `SELECT c.id, c.content, d.title FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.source = $2 ORDER BY c.embedding <=> $1 LIMIT 5`

func benchSetup(b *testing.B) (*rewrite.Rewriter, *filter.Policy, filter.Request) {
	b.Helper()
	src := string(demo.Policy) + `
  documents:
    table: documents
    tenant: tenant_id
    allow:
      - name: all
        when: "true"
`
	set, err := policy.Parse(policy.Source{Name: "bench.yaml", Data: []byte(src)})
	if err != nil {
		b.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		b.Fatal(err)
	}
	req := filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"editor"},
		Groups: []string{"eng"}, Attributes: map[string]any{"clearance": int64(2)}}}
	return rewrite.New(set, []string{"public"}), p, req
}

// BenchmarkRewriteCold parses, rewrites and deparses every time (a new
// statement text each iteration, so the cache never hits).
func BenchmarkRewriteCold(b *testing.B) {
	rw, p, req := benchSetup(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		sql := fmt.Sprintf("%s -- %d", benchSQL, i)
		if _, err := rw.Rewrite(sql, rewrite.Request{Fragments: p.Fragments(req), Mode: rewrite.Strict, NArgs: 2}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewriteCached is a repeated statement: a cache hit plus binding
// the subject's values into the fragments.
func BenchmarkRewriteCached(b *testing.B) {
	rw, p, req := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rw.Rewrite(benchSQL, rewrite.Request{Fragments: p.Fragments(req), Mode: rewrite.Strict, NArgs: 2}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewrittenQueryExecution runs rewritten statements on the demo
// knowledge base (4,000 chunks, HNSW index), for the cost of the rewrite
// relative to the query's own execution: a join ordered by distance (which
// the fence keeps from the vector index), the top-k search the fence
// serves from the index, written alone and in a CTE joined afterwards, and
// a count.
func BenchmarkRewrittenQueryExecution(b *testing.B) {
	rw, p, req := benchSetup(b)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testdb.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.AfterConnect = pgxvec.RegisterTypes
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		_, _, err := demo.Seed(ctx, c.Conn(), demo.Config{Chunks: 4000}, true)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	// With the catalog's columns, as filter.Wrap reads them.
	cols, err := pgcatalog.Resources(ctx, pool, p.Set())
	if err != nil {
		b.Fatal(err)
	}
	rw = rewrite.New(p.Set(), []string{"public"}, rewrite.WithColumns(cols))
	r := rand.New(rand.NewPCG(1, 2))
	q := make([]float32, 384)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	for _, bc := range []struct {
		name string
		sql  string
		mode rewrite.Mode
	}{
		{"join", benchSQL, rewrite.Strict},
		{"topk", "SELECT id, content FROM chunks WHERE source = $2 ORDER BY embedding <=> $1 LIMIT 10", rewrite.Strict},
		{"topk-in-cte-joined", "WITH top AS (SELECT id, document_id FROM chunks WHERE source = $2 ORDER BY embedding <=> $1 LIMIT 10) SELECT t.id, d.title FROM top t JOIN documents d ON d.id = t.document_id", rewrite.Strict},
		{"topk-raising-condition", "SELECT id, content FROM chunks WHERE source = $2 AND classification / 1 >= 0 ORDER BY embedding <=> $1 LIMIT 10", rewrite.Trusted},
		{"count", "SELECT count(*) FROM chunks WHERE source = $2 AND classification >= 0 AND $1::vector IS NOT NULL", rewrite.Trusted},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				res, err := rw.Rewrite(bc.sql, rewrite.Request{Fragments: p.Fragments(req), Mode: bc.mode, NArgs: 2})
				if err != nil {
					b.Fatal(err)
				}
				rows, err := pool.Query(ctx, res.SQL, append([]any{pgvector.NewVector(q), "wiki"}, res.Args...)...)
				if err != nil {
					b.Fatal(err)
				}
				rows.Close()
				if rows.Err() != nil {
					b.Fatal(rows.Err())
				}
			}
		})
	}
}
