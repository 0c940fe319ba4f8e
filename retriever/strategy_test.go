package retriever_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// recordingBatcher counts round trips and remembers the statements sent.
type recordingBatcher struct {
	db      retriever.Batcher
	batches int
	sql     []string
}

func (r *recordingBatcher) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	r.batches++
	for _, q := range b.QueuedQueries {
		r.sql = append(r.sql, q.SQL)
	}
	return r.db.SendBatch(ctx, b)
}

// TestSearchPlansReturnKPermittedRows runs every plan the search can take
// for several subjects and queries, and checks each answer against the
// oracle's exact top k: all rows permitted, nearest first, k of them
// whenever k are permitted, the exact plans exactly the oracle's.
func TestSearchPlansReturnKPermittedRows(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	minScore := 0.3
	plans := []struct {
		name   string
		cfg    func() retriever.Config
		want   retriever.Plan
		exact  bool // the answer must equal the oracle's
		approx bool // too small a walk to expect most of the top k
	}{
		{"planner decides", func() retriever.Config { return retriever.Config{} }, retriever.PlanIndex, false, false},
		{"estimate says exact", func() retriever.Config {
			return retriever.Config{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1 << 30}
		}, retriever.PlanExact, true, false},
		{"estimate says index", func() retriever.Config {
			return retriever.Config{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1, EfFactor: 1}
		}, retriever.PlanIndex, false, false},
		// A walk that gives up after one tuple: the statement's exact arm
		// must make up the rows.
		{"index walk cut short", func() retriever.Config {
			return retriever.Config{MaxScanTuples: 1, EfSearch: 1}
		}, retriever.PlanIndex, false, true},
		{"strict order", func() retriever.Config { return retriever.Config{StrictOrder: true} }, retriever.PlanIndex, false, false},
	}
	queries := []struct {
		name     string
		k        int
		minScore *float64
		extra    string // the oracle's version of the query's extra condition
		// fewer than k rows qualify: the walk always stops short and the
		// statement's exact arm answers, so every plan is exact.
		fewerThanK bool
	}{
		{"k=10", 10, nil, "", false},
		{"k=60", 60, nil, "", false},
		{"min_score leaves fewer than k", 200, &minScore, "1 - (c.embedding <=> $6::float4[]::vector) >= 0.3", true},
	}
	for _, plan := range plans {
		for _, qc := range queries {
			for _, id := range []string{"alice", "bob", "dave"} {
				for topic := range 3 {
					name := fmt.Sprintf("%s/%s/%s/topic%d", plan.name, qc.name, id, topic)
					t.Run(name, func(t *testing.T) {
						u := f.User(t, id)
						vec := f.Topic(topic * 7)
						cfg := plan.cfg()
						var ran []retriever.Plan
						cfg.OnPlan = func(p retriever.Plan) { ran = append(ran, p) }
						s := e2e.NewSearcher(t, cfg)
						q := retriever.Query{Resource: "chunks", Embedding: vec, K: qc.k, MinScore: qc.minScore}
						req := filter.Request{Subject: u.Subject()}
						// The first search reads the embedding's dimension and
						// fills the estimate.
						if _, _, err := s.Search(ctx, f.Pool, f.Policy, req, q); err != nil {
							t.Fatal(err)
						}
						rb := &recordingBatcher{db: f.Pool}
						res, _, err := s.Search(ctx, rb, f.Policy, req, q)
						if err != nil {
							t.Fatal(err)
						}
						if rb.batches != 1 {
							t.Errorf("%d round trips, want 1", rb.batches)
						}
						if got := ran[len(ran)-1]; got != plan.want {
							t.Errorf("ran plan %s, want %s", got, plan.want)
						}
						checkPlanAnswer(t, f, u, vec, qc.k, qc.extra, res, plan.exact || qc.fewerThanK, plan.approx)
					})
				}
			}
		}
	}
}

func checkPlanAnswer(t *testing.T, f *e2e.Fixture, u e2e.User, q []float32, k int, extra string, res []retriever.Result, exact, approx bool) {
	t.Helper()
	want := f.ExactTopK(t, u, q, k, extra)
	got := make([]string, len(res))
	for i, r := range res {
		got[i] = r.ID
		if i > 0 && r.Score > res[i-1].Score {
			t.Errorf("result %d (score %v) ranks below a less similar one (%v)", i, r.Score, res[i-1].Score)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, the oracle has %d permitted rows for this query (k=%d)", len(got), len(want), k)
	}
	if bad := f.Invisible(t, u, got); len(bad) > 0 {
		t.Fatalf("rows %v are not visible to %s", bad, u.ID)
	}
	if exact && !slices.Equal(got, want) {
		t.Errorf("exact answer expected: got %v, oracle %v", got, want)
	}
	if approx {
		return
	}
	common := 0
	for _, id := range got {
		if slices.Contains(want, id) {
			common++
		}
	}
	if common < len(want)*8/10 {
		t.Errorf("%d of the exact top %d found: got %v, oracle %v", common, len(want), got, want)
	}
}

// TestSearchStatementTextCarriesNoValues: pgx caches prepared statements
// by text, so subjects whose fragments have the same shape must send the
// same text, and no subject's values may appear in it.
func TestSearchStatementTextCarriesNoValues(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	byShape := map[string][]string{}
	s := e2e.NewSearcher(t, retriever.Config{})
	q := retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 10}
	// Reads the embedding's dimension, so each search below is its own batch only.
	if _, _, err := s.Search(ctx, f.Pool, f.Policy, filter.Request{Subject: f.User(t, "alice").Subject()}, q); err != nil {
		t.Fatal(err)
	}
	for _, u := range f.Data.Users {
		du := f.User(t, u.ID)
		rb := &recordingBatcher{db: f.Pool}
		_, frag, err := s.Search(ctx, rb, f.Policy, filter.Request{Subject: du.Subject()}, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range append([]string{du.ID, du.Tenant}, du.Groups...) {
			for _, sql := range rb.sql {
				if strings.Contains(sql, "'"+v+"'") {
					t.Errorf("%s: value %q is in the statement text", du.ID, v)
				}
			}
		}
		if prev, ok := byShape[frag.Shape()]; ok && !slices.Equal(prev, rb.sql) {
			t.Errorf("%s: same fragment shape as an earlier subject, different statements:\n%q\n%q", du.ID, rb.sql, prev)
		}
		byShape[frag.Shape()] = rb.sql
	}
	if len(byShape) >= len(f.Data.Users) {
		t.Errorf("every one of %d subjects has its own statement shape: nothing is shared", len(f.Data.Users))
	}
}

// TestCachedStatementsMatchBuilt: a search whose shape was seen before
// binds its values into the cached text; they must be exactly the values,
// in the order, that rendering the statements afresh gives. The cache is
// primed by another subject with other filter values; subjects with and
// without the metadata mask, filters, min_score and several k.
func TestCachedStatementsMatchBuilt(t *testing.T) {
	f := e2e.Shared(t)
	minA, minB := 0.2, 0.45
	filters := [][2]retriever.Filter{
		{nil, nil},
		{{"source": json.RawMessage(`"wiki"`)}, {"source": json.RawMessage(`"drive"`)}},
		{
			{"source": json.RawMessage(`{"$in": ["wiki", "drive"]}`), "metadata.year": json.RawMessage(`{"$gte": 2021}`)},
			{"source": json.RawMessage(`{"$in": ["chat", "mail"]}`), "metadata.year": json.RawMessage(`{"$gte": 1999}`)},
		},
	}
	users := []string{"alice", "bob", "carol", "dave"}
	s := e2e.NewSearcher(t, retriever.Config{})
	for i, id := range users {
		u, other := f.User(t, id), f.User(t, users[(i+1)%len(users)])
		for fi, flt := range filters {
			for _, k := range []int{1, 10} {
				for _, ms := range [][2]*float64{{nil, nil}, {&minA, &minB}} {
					q := retriever.Query{Resource: "chunks", Embedding: f.Topic(3), K: k, Filter: flt[0], MinScore: ms[0]}
					primer := retriever.Query{Resource: "chunks", Embedding: f.Topic(9), K: k, Filter: flt[1], MinScore: ms[1]}
					cached, built, err := s.CachedAndBuilt(f.Policy, filter.Request{Subject: u.Subject()}, q,
						filter.Request{Subject: other.Subject()}, primer)
					if err != nil {
						t.Fatalf("%s filter %d k %d: %v", id, fi, k, err)
					}
					if !reflect.DeepEqual(cached, built) {
						t.Errorf("%s filter %d k %d min_score %v: cached statements differ from built ones:\ncached %#v\nbuilt  %#v", id, fi, k, ms[0] != nil, cached, built)
					}
				}
			}
		}
	}
}

// TestReloadedPolicyNeverReusesText: two policies that differ only inside
// a string literal must never share a cached statement.
func TestReloadedPolicyNeverReusesText(t *testing.T) {
	compile := func(src string) *filter.Policy {
		set, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte(src)})
		if err != nil {
			t.Fatal(err)
		}
		p, err := filter.Compile(set)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const src = `version: 1
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    id: id
    content: content
    embedding: embedding
    metadata: metadata
    allow:
      - name: team
        when: "source = 'hr payroll'"
`
	before := compile(strings.Replace(src, "'hr payroll'", "'hr  payroll'", 1))
	after := compile(src)
	req := filter.Request{Subject: &policy.Subject{ID: "u", Tenant: "t"}}
	q := retriever.Query{Resource: "chunks", Embedding: []float32{1, 0}, K: 5}
	s := e2e.NewSearcher(t, retriever.Config{})
	a, _, err := s.SearchStatement(before, req, q)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.SearchStatement(after, req, q)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a, "'hr  payroll'") || !strings.Contains(b, "'hr payroll'") || strings.Contains(b, "'hr  payroll'") {
		t.Errorf("the second policy's statement does not carry its own literal:\n%s\n%s", a, b)
	}
}
