package httpapi_test

import (
	"context"
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

	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
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
	f := e2e.Shared(t)
	dim := len(f.Topic(0))
	vec := func(edit func(v []float32)) []float32 {
		v := make([]float32, dim)
		edit(v)
		return v
	}
	ts := newServer(t, serverOptions{})
	embedded := newServer(t, serverOptions{embedder: zeroEmbedder{dim}})
	tok := f.Token(t, "alice", "")
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
	rows := f.AuditRows(t, e2e.SortedKeys(outcome))
	for id, want := range outcome {
		if rows[id].Outcome != want {
			t.Errorf("decision %s audited as %q, want %q", id, rows[id].Outcome, want)
		}
		if want == "invalid" && rows[id].Detail["error"] != "invalid_embedding" {
			t.Errorf("decision %s: detail %v", id, rows[id].Detail)
		}
	}

}

// TestFilterListsTakeTheColumnsType: $in and $nin on a column that is not
// text compare values of the column's type, and values of another type
// are 400 invalid_filter, not 500.
func TestFilterListsTakeTheColumnsType(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	q := f.Topic(4)
	carol := f.User(t, "carol")
	tok := f.Token(t, "carol", "")
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
				body := fmt.Sprintf(`{"collection": "chunks", "embedding": %s, "filter": {"classification": {%q: %s}}}`, e2e.MustMarshal(q), op, tc.list)
				wantError(t, ts.retrieve(t, tok, []byte(body)), http.StatusBadRequest, "invalid_filter")
			})
		}
	}
}

// TestOtherTenantsDataCannotFailASearch: rows alice may not see (another
// tenant's, and private rows of her own tenant) with unusual data (zero
// vectors, metadata that is an array, a string, null, a year that is text
// or an object or huge, extreme classifications) never make her searches
// fail, whatever filter, min_score and k, and change none of her exact
// answers.
func TestOtherTenantsDataCannotFailASearch(t *testing.T) {
	f := e2e.Shared(t)
	pool := e2e.OwnDemo(t, 600)
	ctx := context.Background()
	alice, dave := f.User(t, "alice"), f.User(t, "dave")
	if alice.Tenant == dave.Tenant {
		t.Fatal("alice and dave share a tenant")
	}
	q := f.Topic(5)
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
					raw[key] = e2e.MustMarshal(v)
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
	exact := func() retriever.Config {
		return retriever.Config{Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1 << 30}
	}
	answers := func() [][]retriever.Result {
		var out [][]retriever.Result
		for _, r := range requests {
			out = append(out, e2e.Search(t, pool, f, alice, r.q, exact()))
		}
		return out
	}
	before := answers()

	vecLiteral := func(v []float32) string { return string(e2e.MustMarshal(v)) }
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
	for _, plan := range e2e.Plans {
		for _, r := range requests {
			e2e.Search(t, pool, f, alice, r.q, plan.Config())
		}
	}
	ts := newServer(t, serverOptions{pool: pool})
	tok := f.Token(t, "alice", "")
	for _, r := range requests {
		for _, res := range ts.retrieve(t, tok, r.body).response(t).Results {
			if strings.HasPrefix(res.ID, "8000") && len(res.ID) == 7 {
				t.Errorf("%+v: returned an inserted row %s", r.body, res.ID)
			}
		}
	}
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

// TestRequestStatementsRunAfterTheSettings: every statement the server
// runs for a request (the catalog read of the embedding's dimension
// included) is sent in a batch after the settings (a statement timeout, no
// JIT). The searches' own settings are the library's test
// (TestStatementsRunWithoutJITAndWithTheTimeout).
func TestRequestStatementsRunAfterTheSettings(t *testing.T) {
	f := e2e.Shared(t)
	log := &batchLog{}
	cfg, err := pgpool.ParseConfig(f.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = log
	cfg.MaxConns = 1
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
	tok := f.Token(t, "alice", "")
	for range 2 {
		ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: f.Topic(0), K: 3}).response(t)
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
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	tok := f.Token(t, "alice", "")
	emb := string(e2e.MustMarshal(f.Topic(1)))
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
