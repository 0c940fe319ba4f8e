package retriever_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever"
)

// zeroEmbedder answers every text with the zero vector, as a broken
// embedding model might.
type zeroEmbedder struct{ dim int }

func (z zeroEmbedder) Embed(context.Context, string) ([]float32, error) {
	return make([]float32, z.dim), nil
}

// TestUndefinedQueryVectorsRefused: a query vector whose cosine distance is
// undefined as pgvector computes it (a float32 norm of zero, or one that
// overflows) is refused with 400 invalid_embedding, whether sent or
// embedded, and audited as invalid, never as allowed.
func TestUndefinedQueryVectorsRefused(t *testing.T) {
	f := sharedEnv(t)
	dim := len(f.topic(0))
	vec := func(edit func(v []float32)) []float32 {
		v := make([]float32, dim)
		edit(v)
		return v
	}
	ts := newServer(t, serverOptions{})
	embedded := newServer(t, serverOptions{embedder: zeroEmbedder{dim}})
	tok := f.token(t, "alice", "")
	cases := []struct {
		name   string
		ts     *testServer
		body   any
		status int
	}{
		{"zero", ts, retrieveBody{Collection: "chunks", Embedding: vec(func([]float32) {})}, 400},
		{"subnormal", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) { v[0] = 1e-45 })}, 400},
		{"negative subnormal", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) { v[1] = -1e-45 })}, 400},
		{"every square underflows float32", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) {
			for i := range v {
				v[i] = 1e-23
			}
		})}, 400},
		{"a square overflows float32", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) { v[0] = 2e19 })}, 400},
		{"the sum overflows float32", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) {
			for i := range v {
				v[i] = 1e18
			}
		})}, 400},
		{"embedder answers zeros", embedded, map[string]any{"collection": "chunks", "query": "anything"}, 400},
		// The smallest norm that is not zero in float32 is defined.
		{"tiny but not zero", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) { v[0] = 1e-22 }), K: 5}, 200},
		{"large but finite", ts, retrieveBody{Collection: "chunks", Embedding: vec(func(v []float32) { v[0], v[1] = 1e18, -1e18 }), K: 5}, 200},
	}
	outcome := map[string]string{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.ts.retrieve(t, tok, tc.body)
			if tc.status == 200 {
				for _, res := range r.response(t).Results {
					if math.IsNaN(res.Score) || res.Score < -1 || res.Score > 1 {
						t.Errorf("result %s scores %v", res.ID, res.Score)
					}
				}
				outcome[r.decisionID()] = "allowed"
				return
			}
			wantError(t, r, tc.status, "invalid_embedding")
			outcome[r.decisionID()] = "invalid"
		})
	}
	ts.closeWriter(t)
	embedded.closeWriter(t)
	rows := f.auditRows(t, sortedKeys(outcome))
	for id, want := range outcome {
		if rows[id].outcome != want {
			t.Errorf("decision %s audited as %q, want %q", id, rows[id].outcome, want)
		}
		if want == "invalid" && rows[id].detail["error"] != "invalid_embedding" {
			t.Errorf("decision %s: detail %v", id, rows[id].detail)
		}
	}

	// Search, the library path, refuses them too.
	u := f.user(t, "alice")
	_, _, err := retriever.Search(context.Background(), f.pool, f.policy, filter.Request{Subject: u.subject()},
		retriever.Query{Resource: "chunks", Embedding: vec(func(v []float32) { v[3] = 1e-40 }), K: 3}, retriever.Options{})
	var re *retriever.RequestError
	if !errors.As(err, &re) || re.Code != retriever.CodeInvalidEmbedding {
		t.Errorf("Search: %v, want invalid_embedding", err)
	}
}

// planOptions are the ways Search runs: each of its plans and arms.
var planOptions = []struct {
	name string
	opt  func() retriever.Options
}{
	{"planner decides", func() retriever.Options { return retriever.Options{} }},
	{"exact", func() retriever.Options {
		return retriever.Options{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1 << 30}
	}},
	{"index", func() retriever.Options {
		return retriever.Options{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1, EfFactor: 1}
	}},
	{"index walk cut short", func() retriever.Options { return retriever.Options{MaxScanTuples: 1, EfSearch: 1} }},
	{"strict order", func() retriever.Options { return retriever.Options{StrictOrder: true} }},
}

// search runs q as u with opt twice, so an estimate-driven plan is the one
// that answers.
func search(t *testing.T, db retriever.Batcher, f *e2eFixture, u demoUser, q retriever.Query, opt retriever.Options) []retriever.Result {
	t.Helper()
	req := filter.Request{Subject: u.subject()}
	if opt.Estimates != nil {
		if _, _, err := retriever.Search(context.Background(), db, f.policy, req, q, opt); err != nil {
			t.Fatal(err)
		}
	}
	res, _, err := retriever.Search(context.Background(), db, f.policy, req, q, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestStoredZeroVectorsNeverBreakASearch: rows whose stored vector has a
// zero norm have no cosine distance. In every plan and arm, with and
// without min_score, they never fail a search and never come back (so no
// NaN score), and a search still returns k rows whenever k rows with a
// distance are permitted. The rows are added in a transaction the searches
// run in, so the shared fixture never sees them.
func TestStoredZeroVectorsNeverBreakASearch(t *testing.T) {
	f := sharedEnv(t)
	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the rows are the test's only
	u := f.user(t, "alice")
	q := f.topic(2)
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
	for _, plan := range planOptions {
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
				t.Run(fmt.Sprintf("%s/%s/min_score=%v", plan.name, tc.name, ms != nil), func(t *testing.T) {
					res := search(t, tx, f, u, retriever.Query{Resource: "chunks", Embedding: q, K: tc.k, Filter: tc.filter, MinScore: ms}, plan.opt())
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
	f := sharedEnv(t)
	ctx := context.Background()
	minScore := 0.2
	for _, tc := range []struct {
		name, user string
		q          retriever.Query
	}{
		{"plain", "alice", retriever.Query{Resource: "chunks", Embedding: f.topic(1), K: 10}},
		{"plain carol", "carol", retriever.Query{Resource: "chunks", Embedding: f.topic(1), K: 10}},
		{"filter", "alice", retriever.Query{Resource: "chunks", Embedding: f.topic(1), K: 10, Filter: retriever.Filter{
			"classification": json.RawMessage(`{"$in": [0, 1]}`), "source": json.RawMessage(`{"$nin": ["slack"]}`)}}},
		{"min_score", "alice", retriever.Query{Resource: "chunks", Embedding: f.topic(1), K: 10, MinScore: &minScore}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := f.user(t, tc.user)
			sql, args, err := retriever.SearchStatement(f.policy, filter.Request{Subject: u.subject()}, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := f.pool.Begin(ctx)
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

// TestFilterListsTakeTheColumnsType: $in and $nin on a column that is not
// text compare values of the column's type, and values of another type
// are 400 invalid_filter, not 500.
func TestFilterListsTakeTheColumnsType(t *testing.T) {
	f := sharedEnv(t)
	ts := newServer(t, serverOptions{})
	q := f.topic(4)
	carol := f.user(t, "carol")
	tok := f.token(t, "carol", "")
	for _, tc := range []struct {
		name   string
		filter map[string]any
		sql    string
	}{
		{"integer $in", map[string]any{"classification": map[string]any{"$in": []int{0, 1}}}, "c.classification IN (0, 1)"},
		{"integer $nin", map[string]any{"classification": map[string]any{"$nin": []int{0}}}, "c.classification <> 0"},
		{"integer $in as strings", map[string]any{"classification": map[string]any{"$in": []string{"1"}}}, "c.classification = 1"},
		{"text $in with quotes", map[string]any{"source": map[string]any{"$in": []string{"wiki", `dr"ive\`, "{jira}"}}}, "c.source = 'wiki'"},
		{"metadata $in", map[string]any{"metadata.year": map[string]any{"$in": []int{2022, 2023}}}, "c.metadata->'year' IN ('2022', '2023')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: q, K: 10, Filter: tc.filter}).response(t)
			checkResults(t, f, carol, q, 10, resp, tc.sql)
		})
	}
	for _, tc := range []struct {
		name string
		list string
	}{
		{"text for an integer", `["secret"]`},
		{"boolean for an integer", `[true]`},
		{"fraction for an integer", `[1.5]`},
		{"out of range", `[0, 99999999999]`},
		{"null", `[null]`},
		{"object", `[{"a": 1}]`},
		{"not a list", `3`},
	} {
		for _, op := range []string{"$in", "$nin"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				body := fmt.Sprintf(`{"collection": "chunks", "embedding": %s, "filter": {"classification": {%q: %s}}}`, mustMarshal(q), op, tc.list)
				wantError(t, ts.retrieve(t, tok, []byte(body)), http.StatusBadRequest, "invalid_filter")
			})
		}
	}
}

// ownDemo is a small demo database of a test's own, for tests that write
// rows the shared fixture must not see. Its users are the shared
// fixture's, so f.token works for it.
func ownDemo(t *testing.T, chunks int) *pgxpool.Pool {
	t.Helper()
	f := sharedEnv(t)
	ctx := context.Background()
	dsn := testdb.Database(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
		t.Fatal(err)
	}
	d, _, err := demo.Seed(ctx, conn, demo.Config{Chunks: chunks}, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range d.Users {
		if w := f.data.Users[i]; u.ID != w.ID || u.TenantID != w.TenantID || !slices.Equal(u.Groups, w.Groups) {
			t.Fatalf("the demo's users depend on its size: %+v, shared %+v", u, w)
		}
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestOtherTenantsDataCannotFailASearch: rows alice may not see (another
// tenant's, and private rows of her own tenant) with unusual data (zero
// vectors, metadata that is an array, a string, null, a year that is text
// or an object or huge, extreme classifications) never make her searches
// fail, whatever filter, min_score and k, and change none of her exact
// answers.
func TestOtherTenantsDataCannotFailASearch(t *testing.T) {
	f := sharedEnv(t)
	pool := ownDemo(t, 600)
	ctx := context.Background()
	alice, dave := f.user(t, "alice"), f.user(t, "dave")
	if alice.Tenant == dave.Tenant {
		t.Fatal("alice and dave share a tenant")
	}
	q := f.topic(5)
	minScore := 0.1
	filters := []map[string]any{
		nil,
		{"metadata.year": map[string]any{"$gte": 2000}},
		{"metadata.year": map[string]any{"$in": []int{2021, 2024}}, "metadata.lang": map[string]any{"$nin": []string{"xx"}}},
		{"metadata.topic": map[string]any{"$ne": "billing"}, "metadata.lang": "en"},
		{"classification": map[string]any{"$in": []int{0, 1, 2}}, "source": map[string]any{"$nin": []string{"slack"}}},
		{"classification": map[string]any{"$lt": 3}, "source": map[string]any{"$gt": ""}},
	}
	type request struct {
		body retrieveBody
		q    retriever.Query
	}
	var requests []request
	for _, flt := range filters {
		for _, ms := range []*float64{nil, &minScore} {
			for _, k := range []int{1, 10, 100} {
				raw := retriever.Filter{}
				for key, v := range flt {
					raw[key] = mustMarshal(v)
				}
				if flt == nil {
					raw = nil
				}
				requests = append(requests, request{
					body: retrieveBody{Collection: "chunks", Embedding: q, K: k, Filter: flt, MinScore: ms},
					q:    retriever.Query{Resource: "chunks", Embedding: q, K: k, Filter: raw, MinScore: ms},
				})
			}
		}
	}
	exact := func() retriever.Options {
		return retriever.Options{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1 << 30}
	}
	answers := func() [][]retriever.Result {
		var out [][]retriever.Result
		for _, r := range requests {
			out = append(out, searchOn(t, pool, f, alice, r.q, exact()))
		}
		return out
	}
	before := answers()

	vecLiteral := func(v []float32) string { return string(mustMarshal(v)) }
	zero := vecLiteral(make([]float32, len(q)))
	metadata := []string{`[1, 2]`, `"a string"`, `null`, `{"year": "2024a"}`, `{"year": {"nested": 1}}`,
		`{"year": 1e300}`, `{"year": -1e-300, "lang": ["en"]}`, `{"lang": null, "topic": 7}`, `{"year": [2024]}`,
		`{"": 1, "year": true}`, `{"year": "` + strings.Repeat("9", 5000) + `"}`}
	var n int
	insert := func(tenant, owner, visibility string, classification int, meta, embedding string) {
		n++
		_, err := pool.Exec(ctx, `INSERT INTO chunks (id, tenant_id, document_id, owner_id, visibility, acl_groups, classification, source, content, metadata, created_at, embedding)
			SELECT 8000000 + $1::int, $2, (SELECT id FROM documents WHERE tenant_id = $2 LIMIT 1), $3, $4, '{}', $5, $6, 'unusual', $7::jsonb, now(), $8::vector`,
			n, tenant, owner, visibility, classification, strings.Repeat("\\", n%3)+"src'\"", meta, embedding)
		if err != nil {
			t.Fatalf("insert %s: %v", meta, err)
		}
	}
	for _, meta := range metadata {
		for _, emb := range []string{zero, vecLiteral(q)} {
			insert(dave.Tenant, dave.ID, "tenant", 0, meta, emb)
			insert(dave.Tenant, dave.ID, "tenant", math.MaxInt32, meta, emb)
			// alice's tenant, but private to someone else: not hers to see.
			insert(alice.Tenant, "nobody", "private", math.MinInt32, meta, emb)
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE chunks"); err != nil {
		t.Fatal(err)
	}

	after := answers()
	for i := range requests {
		if !slices.EqualFunc(before[i], after[i], func(a, b retriever.Result) bool { return a.ID == b.ID && a.Score == b.Score }) {
			t.Errorf("request %d (%+v): the answer changed with rows alice may not see:\nbefore %v\nafter  %v", i, requests[i].body, before[i], after[i])
		}
	}
	// Every plan, and the server: never an error.
	for _, plan := range planOptions {
		for _, r := range requests {
			searchOn(t, pool, f, alice, r.q, plan.opt())
		}
	}
	ts := newServer(t, serverOptions{pool: pool})
	tok := f.token(t, "alice", "")
	for _, r := range requests {
		for _, res := range ts.retrieve(t, tok, r.body).response(t).Results {
			if strings.HasPrefix(res.ID, "8000") && len(res.ID) == 7 {
				t.Errorf("%+v: returned an inserted row %s", r.body, res.ID)
			}
		}
	}
}

// searchOn is search on a pool, failing the test on any error.
func searchOn(t *testing.T, pool *pgxpool.Pool, f *e2eFixture, u demoUser, q retriever.Query, opt retriever.Options) []retriever.Result {
	t.Helper()
	return search(t, pool, f, u, q, opt)
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

// batchLog records, for a pool, every statement it runs outside a batch
// and the first statement of every batch.
type batchLog struct {
	mu            sync.Mutex
	plain, leader []string
}

func (l *batchLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.plain = append(l.plain, d.SQL)
	return ctx
}

func (l *batchLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *batchLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = append(l.leader, d.Batch.QueuedQueries[0].SQL)
	return ctx
}

func (l *batchLog) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (l *batchLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func (l *batchLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.plain, l.leader = nil, nil
}

// TestStatementsRunWithoutJITAndWithTheTimeout: every statement a search
// sends runs with JIT off and the configured statement timeout, in every
// plan; and every statement the server runs for a request (the catalog
// read of the embedding's dimension included) is sent in a batch after the
// settings.
func TestStatementsRunWithoutJITAndWithTheTimeout(t *testing.T) {
	f := sharedEnv(t)
	u := f.user(t, "alice")
	for _, plan := range planOptions {
		t.Run(plan.name, func(t *testing.T) {
			opt := plan.opt()
			opt.StatementTimeout = 1234 * time.Millisecond
			p := &settingsProbe{db: f.pool}
			search(t, p, f, u, retriever.Query{Resource: "chunks", Embedding: f.topic(0), K: 5}, opt)
			if p.jit != "off" || p.timeout != "1234ms" || p.iterativeScans != "relaxed_order" && !opt.StrictOrder {
				t.Errorf("the search ran with jit=%s statement_timeout=%s hnsw.iterative_scan=%s", p.jit, p.timeout, p.iterativeScans)
			}
		})
	}

	log := &batchLog{}
	cfg, err := pgxpool.ParseConfig(f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = log
	cfg.MaxConns = 1
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(context.Background()); err != nil { // connects, outside any request
		t.Fatal(err)
	}
	log.reset()
	ts := newServer(t, serverOptions{pool: pool})
	tok := f.token(t, "alice", "")
	for range 2 {
		ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: f.topic(0), K: 3}).response(t)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.plain) > 0 {
		t.Errorf("statements run outside a batch, without the settings: %q", log.plain)
	}
	if len(log.leader) < 3 { // the dimension, then two searches
		t.Errorf("%d batches for two requests", len(log.leader))
	}
	for _, sql := range log.leader {
		if !strings.Contains(sql, "set_config('jit', 'off', true)") || !strings.Contains(sql, "set_config('statement_timeout'") {
			t.Errorf("a batch does not start with the settings: %q", sql)
		}
	}
}

// TestRequestBodiesAreStrictJSON: duplicate keys (at the top, in the
// filter, in an operator object) and names that match a field only in
// another letter case are 400 invalid_json, as encoding/json alone would
// have accepted them.
func TestRequestBodiesAreStrictJSON(t *testing.T) {
	f := sharedEnv(t)
	ts := newServer(t, serverOptions{})
	tok := f.token(t, "alice", "")
	emb := string(mustMarshal(f.topic(1)))
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"strict and valid", `{"collection": "chunks", "embedding": ` + emb + `, "k": 2, "filter": {"source": {"$in": ["wiki"]}}}`, 200},
		{"duplicate collection", `{"collection": "chunks", "collection": "payroll", "embedding": ` + emb + `}`, 400},
		{"duplicate k", `{"collection": "chunks", "embedding": ` + emb + `, "k": 2, "k": 100}`, 400},
		{"duplicate embedding", `{"collection": "chunks", "embedding": ` + emb + `, "embedding": ` + emb + `}`, 400},
		{"duplicate through an escape", `{"collection": "chunks", "embedding": ` + emb + `, "\u006b": 2, "k": 3}`, 400},
		{"duplicate filter field", `{"collection": "chunks", "embedding": ` + emb + `, "filter": {"source": "wiki", "source": "jira"}}`, 400},
		{"duplicate operator", `{"collection": "chunks", "embedding": ` + emb + `, "filter": {"metadata.year": {"$gte": 2020, "$gte": 1900}}}`, 400},
		{"upper-case field", `{"Collection": "chunks", "embedding": ` + emb + `}`, 400},
		{"case variant beside the field", `{"collection": "chunks", "embedding": ` + emb + `, "K": 100}`, 400},
		{"Kelvin sign for k", `{"collection": "chunks", "embedding": ` + emb + `, "\u212a": 3}`, 400},
		{"long s for the field", `{"collection": "chunks", "embedding": ` + emb + `, "min_\u017fcore": 0.5}`, 400},
		{"trailing brace", `{"collection": "chunks", "embedding": ` + emb + `}}`, 400},
		{"trailing bracket", `{"collection": "chunks", "embedding": ` + emb + `}]`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.retrieve(t, tok, []byte(tc.body))
			if tc.status == 200 {
				r.response(t)
				return
			}
			wantError(t, r, tc.status, "invalid_json")
		})
	}
}
