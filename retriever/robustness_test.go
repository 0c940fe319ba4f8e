package retriever_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// TestSearchRefusesUndefinedQueryVectors: Search, the library path, refuses
// a query vector whose cosine distance is undefined as pgvector computes it
// (httpapi's TestUndefinedQueryVectorsRefused is the server's answer).
func TestSearchRefusesUndefinedQueryVectors(t *testing.T) {
	f := e2e.Shared(t)
	u := f.User(t, "alice")
	vec := make([]float32, len(f.Topic(0)))
	vec[3] = 1e-40
	s := e2e.NewSearcher(t, retriever.Config{})
	_, _, err := s.Search(context.Background(), f.Pool, f.Policy, filter.Request{Subject: u.Subject()},
		retriever.Query{Resource: "chunks", Embedding: vec, K: 3})
	var re *retriever.Error
	if !errors.As(err, &re) || re.Code != retriever.CodeInvalidEmbedding {
		t.Errorf("Search: %v, want invalid_embedding", err)
	}
}

// TestStoredZeroVectorsNeverBreakASearch: rows whose stored vector has a
// zero norm have no cosine distance. In every plan and arm, with and
// without min_score, they never fail a search and never come back (so no
// NaN score), and a search still returns k rows whenever k rows with a
// distance are permitted. The rows are added in a transaction the searches
// run in, so the shared fixture never sees them.
func TestStoredZeroVectorsNeverBreakASearch(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	tx, err := f.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the rows are the test's only
	u := f.User(t, "alice")
	q := f.Topic(2)
	// Three rows alice sees with source 'zz-defined' have a distance; six
	// more (tenant-wide, so visible to her) have zero vectors, among them
	// copies of the rows nearest q.
	_, err = tx.Exec(ctx, `
		INSERT INTO chunks (id, tenant_id, document_id, owner_id, visibility, acl_groups, classification, source, content, metadata, created_at, embedding)
		SELECT 9000000 + row_number() OVER (ORDER BY c.embedding <=> $2::float4[]::vector), c.tenant_id, c.document_id, c.owner_id, 'tenant', '{}', 0,
			CASE WHEN row_number() OVER (ORDER BY c.embedding <=> $2::float4[]::vector) <= 3 THEN 'zz-defined' ELSE 'zz-undefined' END,
			c.content, c.metadata, c.created_at, c.embedding
		FROM chunks c WHERE c.tenant_id = $1 ORDER BY c.embedding <=> $2::float4[]::vector LIMIT 9`, u.Tenant, q)
	if err != nil {
		t.Fatal(err)
	}
	zero := "[" + strings.TrimSuffix(strings.Repeat("0,", len(q)), ",") + "]"
	if _, err := tx.Exec(ctx, `UPDATE chunks SET embedding = $1::vector, source = 'zz-defined' WHERE source = 'zz-undefined'`, zero); err != nil {
		t.Fatal(err)
	}
	// And one of the nearest rows itself, of every source.
	if _, err := tx.Exec(ctx, `INSERT INTO chunks (id, tenant_id, document_id, owner_id, visibility, acl_groups, classification, source, content, metadata, created_at, embedding)
		SELECT 9000100 + row_number() OVER (), tenant_id, document_id, owner_id, 'tenant', '{}', 0, source, content, metadata, created_at, $2::vector
		FROM chunks WHERE tenant_id = $1 AND source <> 'zz-defined' LIMIT 5`, u.Tenant, zero); err != nil {
		t.Fatal(err)
	}
	minScore := -1.0
	for _, plan := range e2e.Plans {
		for _, tc := range []struct {
			name   string
			filter retriever.Filter
			k      int
			want   int
		}{
			{"fewer defined than k", retriever.Filter{"source": json.RawMessage(`"zz-defined"`)}, 10, 3},
			{"exactly the defined", retriever.Filter{"source": json.RawMessage(`"zz-defined"`)}, 3, 3},
			{"fewer than the defined", retriever.Filter{"source": json.RawMessage(`"zz-defined"`)}, 2, 2},
			{"no filter", nil, 60, 60},
		} {
			for _, ms := range []*float64{nil, &minScore} {
				t.Run(fmt.Sprintf("%s/%s/min_score=%v", plan.Name, tc.name, ms != nil), func(t *testing.T) {
					res := e2e.Search(t, tx, f, u, retriever.Query{Resource: "chunks", Embedding: q, K: tc.k, Filter: tc.filter, MinScore: ms}, plan.Config())
					if len(res) != tc.want {
						t.Errorf("%d results, want %d", len(res), tc.want)
					}
					for _, r := range res {
						if math.IsNaN(r.Score) {
							t.Errorf("result %s has a NaN score", r.ID)
						}
					}
					var zeros int
					ids := make([]string, len(res))
					for i, r := range res {
						ids[i] = r.ID
					}
					if err := tx.QueryRow(ctx, `SELECT count(*) FROM chunks WHERE id::text = ANY($1) AND embedding = $2::vector`, ids, zero).Scan(&zeros); err != nil {
						t.Fatal(err)
					}
					if zeros > 0 {
						t.Errorf("%d zero vectors among the results", zeros)
					}
				})
			}
		}
	}
}

// TestIndexPlanStillUsesHNSW checks the index plan's own plan: the walk in
// ann is an index scan of the HNSW index ordered by the distance, for
// plain, filtered and min_score searches (whose condition is the scan's
// filter), as it was before the NaN rows were dropped: for alice and for
// carol, who sees a third of the fixture's rows (a condition on the
// distance inside the walk moved her plan off the index).
func TestIndexPlanStillUsesHNSW(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	searcher := e2e.NewSearcher(t, retriever.Config{})
	minScore := 0.2
	for _, tc := range []struct {
		name, user string
		q          retriever.Query
	}{
		{"plain", "alice", retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 10}},
		{"plain carol", "carol", retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 10}},
		{"filter", "alice", retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 10, Filter: retriever.Filter{
			"classification": json.RawMessage(`{"$in": [0, 1]}`), "source": json.RawMessage(`{"$nin": ["slack"]}`)}}},
		{"min_score", "alice", retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 10, MinScore: &minScore}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := f.User(t, tc.user)
			sql, args, err := searcher.SearchStatement(f.Policy, filter.Request{Subject: u.Subject()}, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := f.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck // read-only
			// The settings Search sends (see settingsSQL).
			if _, err := tx.Exec(ctx, `SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = 100;
				SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off`); err != nil {
				t.Fatal(err)
			}
			var doc []byte
			if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&doc); err != nil {
				t.Fatal(err)
			}
			var plans []struct {
				Plan planNode `json:"Plan"`
			}
			if err := json.Unmarshal(doc, &plans); err != nil {
				t.Fatal(err)
			}
			var scan *planNode
			var nodes []string
			plans[0].Plan.walk(func(n *planNode) {
				nodes = append(nodes, n.Type+" "+n.Index)
				if n.Type == "Index Scan" && n.Index == "chunks_embedding_idx" {
					scan = n
				}
			})
			if scan == nil {
				t.Fatalf("no index scan of chunks_embedding_idx: %q", nodes)
			}
			if !strings.Contains(scan.Order, "<=>") {
				t.Errorf("the index scan orders by %q", scan.Order)
			}
			if tc.q.MinScore != nil && !strings.Contains(scan.Filter, "vector_dims") {
				t.Errorf("the index scan filters %q, without the min_score condition", scan.Filter)
			}
		})
	}
}

// planNode is what the tests read of an EXPLAIN (FORMAT JSON) node.
type planNode struct {
	Type   string     `json:"Node Type"`
	Index  string     `json:"Index Name"`
	Order  string     `json:"Order By"`
	Filter string     `json:"Filter"`
	Plans  []planNode `json:"Plans"`
}

func (n *planNode) walk(visit func(*planNode)) {
	visit(n)
	for i := range n.Plans {
		n.Plans[i].walk(visit)
	}
}

// settingsProbe sends a search's batch with a last statement that reads
// the transaction's settings, after everything the search queued.
type settingsProbe struct {
	db             retriever.Batcher
	jit, timeout   string
	iterativeScans string
}

func (p *settingsProbe) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	b.Queue(`SELECT current_setting('jit'), current_setting('statement_timeout'), current_setting('hnsw.iterative_scan')`).
		QueryRow(func(row pgx.Row) error { return row.Scan(&p.jit, &p.timeout, &p.iterativeScans) })
	return p.db.SendBatch(ctx, b)
}

// TestStatementsRunWithoutJITAndWithTheTimeout: every statement a search
// sends runs with JIT off and the configured statement timeout, in every
// plan (httpapi's TestRequestStatementsRunAfterTheSettings checks every
// statement of a request).
func TestStatementsRunWithoutJITAndWithTheTimeout(t *testing.T) {
	f := e2e.Shared(t)
	u := f.User(t, "alice")
	for _, plan := range e2e.Plans {
		t.Run(plan.Name, func(t *testing.T) {
			cfg := plan.Config()
			cfg.StatementTimeout = 1234 * time.Millisecond
			p := &settingsProbe{db: f.Pool}
			e2e.Search(t, p, f, u, retriever.Query{Resource: "chunks", Embedding: f.Topic(0), K: 5}, cfg)
			if p.jit != "off" || p.timeout != "1234ms" || p.iterativeScans != "relaxed_order" && !cfg.StrictOrder {
				t.Errorf("the search ran with jit=%s statement_timeout=%s hnsw.iterative_scan=%s", p.jit, p.timeout, p.iterativeScans)
			}
		})
	}
}

// TestSearchChecksTheQuery: Search refuses, before any search statement, a
// vector of another dimension than the column's (invalid_embedding), an
// unknown collection and a k below 1. The searcher reads the dimension once,
// in a batch of its own after the request settings; later searches are one
// round trip again, and a refused one none.
func TestSearchChecksTheQuery(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	req := filter.Request{Subject: f.User(t, "alice").Subject()}
	s := e2e.NewSearcher(t, retriever.Config{})
	rb := &recordingBatcher{db: f.Pool}
	good := retriever.Query{Resource: "chunks", Embedding: f.Topic(0), K: 3}
	if _, _, err := s.Search(ctx, rb, f.Policy, req, good); err != nil {
		t.Fatal(err)
	}
	if rb.batches != 2 || !strings.Contains(rb.sql[0], "set_config('statement_timeout'") ||
		!strings.Contains(rb.sql[0], "set_config('jit', 'off', true)") || !strings.Contains(rb.sql[1], "atttypmod") {
		t.Fatalf("first search: %d round trips, statements %q; want the dimension after the settings, then the search", rb.batches, rb.sql)
	}
	for _, tc := range []struct {
		name string
		q    retriever.Query
		code retriever.Code
	}{
		{"wrong dimension", retriever.Query{Resource: "chunks", Embedding: good.Embedding[1:], K: 3}, retriever.CodeInvalidEmbedding},
		{"no embedding", retriever.Query{Resource: "chunks", K: 3}, retriever.CodeInvalidEmbedding},
		{"not finite", retriever.Query{Resource: "chunks", Embedding: append([]float32{float32(math.NaN())}, good.Embedding[1:]...), K: 3}, retriever.CodeInvalidEmbedding},
		{"unknown collection", retriever.Query{Resource: "payroll", Embedding: good.Embedding, K: 3}, retriever.CodeUnknownCollection},
		{"k of 0", retriever.Query{Resource: "chunks", Embedding: good.Embedding}, retriever.CodeInvalidK},
	} {
		if _, _, err := s.Search(ctx, rb, f.Policy, req, tc.q); retriever.CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
		if err := s.Check(ctx, rb, f.Policy, tc.q); retriever.CodeOf(err) != tc.code {
			t.Errorf("%s: Check says %v, want %s", tc.name, err, tc.code)
		}
	}
	if _, _, err := s.Search(ctx, rb, f.Policy, req, good); err != nil {
		t.Fatal(err)
	}
	if rb.batches != 3 {
		t.Errorf("%d round trips for two searches and refused ones, want 3", rb.batches)
	}
}
