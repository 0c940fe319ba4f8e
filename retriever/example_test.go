package retriever_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
)

// A search from Go: the k chunks nearest a vector that the subject may see.
// Build one Searcher for the process, with one Estimates, so the statement
// text and the plan choice are cached per request shape and per subject.
// (The pool's AfterConnect must register pgvector's types.)
func ExampleSearcher_Search() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://localhost/kb")
	set, _ := policy.Load("policy.yaml")
	p, _ := filter.Compile(set)
	searcher, err := retriever.NewSearcher(retriever.Config{
		Estimates:        retriever.NewEstimates(retriever.DefaultEstimates, retriever.DefaultEstimateTTL),
		StatementTimeout: 2 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	subject := &policy.Subject{ID: "alice", Tenant: "acme", Groups: []string{"eng"}}
	q := retriever.Query{Resource: "chunks", Embedding: make([]float32, 384), K: 5}
	results, _, err := searcher.Search(ctx, pool, p, filter.Request{Subject: subject}, q)
	if err != nil {
		fmt.Println(retriever.CodeOf(err), err)
		return
	}
	for _, r := range results {
		fmt.Println(r.ID, r.Score)
	}
}

// Every refusal is an *Error with a stable code to branch on. A query the
// policy or the searcher cannot serve is refused before any row is read;
// these two, before the database is asked anything.
func ExampleNewSearcher() {
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`version: 1
resources:
  chunks:
    tenant: tenant_id
    embedding: embedding
    allow:
      - name: owner
        when: owner_id = subject.id
`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := filter.Compile(set)
	if err != nil {
		fmt.Println(err)
		return
	}
	searcher, err := retriever.NewSearcher(retriever.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://localhost/kb") // connects on first use
	defer pool.Close()
	req := filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme"}}
	for _, q := range []retriever.Query{
		{Resource: "chunks", Embedding: []float32{0.6, 0.8}, K: 0},
		{Resource: "payroll", Embedding: []float32{0.6, 0.8}, K: 5},
	} {
		_, _, err := searcher.Search(ctx, pool, p, req, q)
		fmt.Println(retriever.CodeOf(err))
	}
	// Output:
	// invalid_k
	// unknown_collection
}
