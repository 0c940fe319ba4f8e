package retriever_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// benchK is the number of results every benchmarked search asks for.
const benchK = 10

// BenchmarkSearch is Searcher.Search, the library path: the fragment, the
// SQL and the database round trips, without HTTP, JWT, JSON or audit
// (httpapi's BenchmarkRetrieveHandler is the whole request). The metrics it
// reports are e2e.TracedPool's.
func BenchmarkSearch(b *testing.B) {
	f := e2e.Shared(b)
	db := e2e.NewTracedPool(b, f.DSN)
	req := benchRequest(b, f.Data, f.Policy)
	q := retriever.Query{Resource: "chunks", Embedding: f.Topic(0), K: benchK}
	s := e2e.NewSearcher(b, retriever.Config{StatementTimeout: 5 * time.Second}) // as the handler benchmark
	ctx := context.Background()
	db.Measure(b, func() {
		res, _, err := s.Search(ctx, db.Pool, f.Policy, req, q)
		if err != nil {
			b.Fatal(err)
		}
		if len(res) != benchK {
			b.Fatalf("%d results, want %d", len(res), benchK)
		}
	})
}

// BenchmarkSearchQueryBuilding is the in-process part of Search before the
// database: the policy fragment for the request (Fragment, public), and
// that plus the search statement (FragmentAndSQL, through SearchStatement
// in export_test.go, which calls search.go's unexported builder). It needs
// no database.
func BenchmarkSearchQueryBuilding(b *testing.B) {
	p, err := e2e.CompileMaskedPolicy()
	if err != nil {
		b.Fatal(err)
	}
	d := demo.Generate(demo.Config{Chunks: 4000}) // the fixture's data, unseeded
	req := benchRequest(b, d, p)
	q := retriever.Query{Resource: "chunks", Embedding: d.Topics[0].Centre, K: benchK}
	b.Run("Fragment", func(b *testing.B) {
		r := req
		r.Alias = "c"
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Fragment(q.Resource, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FragmentAndSQL", func(b *testing.B) {
		s := e2e.NewSearcher(b, retriever.Config{})
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.SearchStatement(p, req, q); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRequest is alice's filter request, with her attributes converted as
// the service converts a token's.
func benchRequest(tb testing.TB, d *demo.Dataset, p *filter.Policy) filter.Request {
	tb.Helper()
	for _, u := range d.Users {
		if u.ID != "alice" {
			continue
		}
		s, err := p.Set().CheckSubject(&policy.Subject{ID: u.ID, Tenant: u.TenantID, Roles: u.Roles, Groups: u.Groups,
			Attributes: map[string]any{"clearance": u.Clearance}})
		if err != nil {
			tb.Fatal(err)
		}
		// The address httptest.NewRequest gives, as in the handler benchmark.
		return filter.Request{Subject: s, Context: policy.Context{Time: e2e.FixedNow, IP: netip.MustParseAddr("192.0.2.1")}}
	}
	tb.Fatal("no demo user alice")
	return filter.Request{}
}
