package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/retriever"
)

// Plans are the ways a search runs: each of its plans and arms.
var Plans = []struct {
	Name   string
	Config func() retriever.Config
}{
	{"planner decides", func() retriever.Config { return retriever.Config{} }},
	{"exact", func() retriever.Config {
		return retriever.Config{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1 << 30}
	}},
	{"index", func() retriever.Config {
		return retriever.Config{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1, EfFactor: 1}
	}},
	{"index walk cut short", func() retriever.Config { return retriever.Config{MaxScanTuples: 1, EfSearch: 1} }},
	{"strict order", func() retriever.Config { return retriever.Config{StrictOrder: true} }},
}

// NewSearcher is retriever.NewSearcher, failing the test on an error.
func NewSearcher(t testing.TB, cfg retriever.Config) *retriever.Searcher {
	t.Helper()
	s, err := retriever.NewSearcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Search runs q as u on a new searcher with cfg, twice when cfg has
// Estimates, so an estimate-driven plan is the one that answers; any error
// fails the test.
func Search(t *testing.T, db retriever.Batcher, f *Fixture, u User, q retriever.Query, cfg retriever.Config) []retriever.Result {
	t.Helper()
	s := NewSearcher(t, cfg)
	req := filter.Request{Subject: u.Subject()}
	if cfg.Estimates != nil {
		if _, _, err := s.Search(context.Background(), db, f.Policy, req, q); err != nil {
			t.Fatal(err)
		}
	}
	res, _, err := s.Search(context.Background(), db, f.Policy, req, q)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
