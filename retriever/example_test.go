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
// Keep one Estimates for the process, so the plan choice is cached per
// subject. (The pool's AfterConnect must register pgvector's types.)
func ExampleSearch() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://localhost/kb")
	set, _ := policy.Load("policy.yaml")
	p, _ := filter.Compile(set)
	estimates := retriever.NewEstimates(retriever.DefaultEstimates, retriever.DefaultEstimateTTL)

	subject := &policy.Subject{ID: "alice", Tenant: "acme", Groups: []string{"eng"}}
	q := retriever.Query{Resource: "chunks", Embedding: make([]float32, 384), K: 5}
	results, _, err := retriever.Search(ctx, pool, p, filter.Request{Subject: subject}, q,
		retriever.Options{Estimates: estimates, StatementTimeout: 2 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range results {
		fmt.Println(r.ID, r.Score)
	}
}
