package retriever_test

// The knowledge base partitioned by tenant (migrate --partition-by-tenant):
// every statement ragfence sends reads one partition of each table, the
// index plan walks that partition's HNSW index, the answers are the exact
// oracle's, and plan choice measures a policy against its tenant's
// partition. Checked on the plans (EXPLAIN), then on the rows.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// partChunks sizes the partitioned demo: acme, half of it, holds enough
// rows that its tenant admin (carol) is let through more than
// DefaultExactRows of them, so the default plan choice walks the index.
const partChunks = 16000

// tiny is a tenant with a few rows, given its partition after its rows were
// loaded into the DEFAULT partition, and never analyzed.
var tiny = e2e.User{ID: "tina", Tenant: "tiny", Clearance: 3}

// TestPartitionedByTenant runs on one database seeded by demo.Seed with
// PartitionByTenant, shared by its subtests.
func TestPartitionedByTenant(t *testing.T) {
	f := partitionedFixture(t)
	t.Run("search statements read one partition", func(t *testing.T) { testSearchPrunes(t, f) })
	t.Run("answers are the oracle's", func(t *testing.T) { testPartitionedAnswers(t, f) })
	t.Run("plan choice on the parent", func(t *testing.T) { testPartitionedPlanChoice(t, f) })
	t.Run("rewritten statements read one partition", func(t *testing.T) { testRewritePrunes(t, f) })
}

func partitionedFixture(t *testing.T) *e2e.Fixture {
	t.Helper()
	ctx := context.Background()
	f := &e2e.Fixture{DSN: testdb.Database(t)}
	conn, err := pgx.Connect(ctx, f.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if f.Data, _, err = demo.Seed(ctx, conn, demo.Config{Chunks: partChunks, PartitionByTenant: true}, true); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d chunks, partitioned by tenant, in %s", partChunks, time.Since(start).Round(time.Millisecond))
	addTinyTenant(t, conn)
	if f.Pool, err = e2e.NewPool(f.DSN, 4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Pool.Close)
	if f.Policy, err = e2e.CompileMaskedPolicy(); err != nil {
		t.Fatal(err)
	}
	return f
}

// addTinyTenant loads 30 tenant-wide chunks (copies of acme's) for tiny
// into the DEFAULT partition, then gives tiny its partitions, as an
// operator adds a tenant (docs/scaling.md).
func addTinyTenant(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	_, err := conn.Exec(ctx, `
		INSERT INTO tenants VALUES ('tiny', 'Tiny');
		INSERT INTO documents (id, tenant_id, owner_id, title, source, visibility, created_at)
			VALUES (1000000, 'tiny', 'tina', 'tiny', 'wiki', 'tenant', now());
		INSERT INTO chunks (id, tenant_id, document_id, owner_id, visibility, classification, source, content, metadata, created_at, embedding)
			SELECT 1000000 + id, 'tiny', 1000000, 'tina', 'tenant', 0, source, content, metadata, created_at, embedding
			FROM chunks WHERE tenant_id = 'acme' ORDER BY id LIMIT 30;`)
	if err != nil {
		t.Fatal(err)
	}
	var before int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM chunks__default").Scan(&before); err != nil || before != 30 {
		t.Fatalf("the DEFAULT partition holds %d rows (%v), want tiny's 30", before, err)
	}
	if _, err := conn.Exec(ctx, "SELECT add_tenant_partitions('tiny'); SELECT add_tenant_partitions('tiny')"); err != nil {
		t.Fatalf("add_tenant_partitions, twice: %v", err)
	}
	var moved, left int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM chunks_tiny), (SELECT count(*) FROM chunks__default)").Scan(&moved, &left); err != nil {
		t.Fatal(err)
	}
	if moved != 30 || left != 0 {
		t.Fatalf("after add_tenant_partitions chunks_tiny holds %d rows and the DEFAULT partition %d, want 30 and 0", moved, left)
	}
}

// searchSettings are the settings Search sends (see settingsSQL), for
// EXPLAIN of its statements.
const searchSettings = `SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = 100;
	SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off`

// scan is a plan node that reads a relation.
type scan struct {
	Type     string `json:"Node Type"`
	Relation string `json:"Relation Name"`
	Index    string `json:"Index Name"`
	Order    string `json:"Order By"`
	Removed  int    `json:"Subplans Removed"`
}

// explainScans is EXPLAIN (FORMAT JSON) of sql after settings: the nodes
// that read a relation, and the number of partitions pruned at execution.
func explainScans(t *testing.T, db *e2e.Fixture, settings, sql string, args ...any) (scans []scan, removed int) {
	t.Helper()
	ctx := context.Background()
	var doc []byte
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if settings != "" {
			if _, err := tx.Exec(ctx, settings); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&doc)
	})
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, sql)
	}
	return readScans(t, doc)
}

func readScans(t *testing.T, doc []byte) (scans []scan, removed int) {
	t.Helper()
	var plans []struct{ Plan json.RawMessage }
	if err := json.Unmarshal(doc, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN: %v (%d plans)", err, len(plans))
	}
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var n struct {
			scan
			Plans []json.RawMessage `json:"Plans"`
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		if n.Relation != "" {
			scans = append(scans, n.scan)
		}
		removed += n.Removed
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(plans[0].Plan)
	return scans, removed
}

// partitionsOf returns the partitions of table scans reads, sorted.
func partitionsOf(scans []scan, table string) []string {
	var out []string
	for _, s := range scans {
		if strings.HasPrefix(s.Relation, table+"_") && !slices.Contains(out, s.Relation) {
			out = append(out, s.Relation)
		}
	}
	sort.Strings(out)
	return out
}

// checkOnePartition fails unless scans read, of chunks and of
// document_grants, at most the tenant's partition, and of chunks exactly it.
func checkOnePartition(t *testing.T, scans []scan, tenant string) {
	t.Helper()
	if got := partitionsOf(scans, "chunks"); !slices.Equal(got, []string{"chunks_" + tenant}) {
		t.Errorf("chunks partitions read: %v, want only chunks_%s; scans %+v", got, tenant, scans)
	}
	if got := partitionsOf(scans, "document_grants"); len(got) > 1 || len(got) == 1 && got[0] != "document_grants_"+tenant {
		t.Errorf("document_grants partitions read: %v, want at most document_grants_%s", got, tenant)
	}
	for _, s := range scans {
		if s.Relation == "chunks" || s.Relation == "document_grants" {
			t.Errorf("a scan of the partitioned parent %s itself: %+v", s.Relation, s)
		}
	}
}

// hnswIndexOf is the HNSW index of a partition, from the catalog.
func hnswIndexOf(t *testing.T, f *e2e.Fixture, partition string) string {
	t.Helper()
	var name string
	err := f.Pool.QueryRow(context.Background(), `
		SELECT i.indexrelid::regclass::text FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
		WHERE i.indrelid = $1::regclass AND am.amname = 'hnsw'`, partition).Scan(&name)
	if err != nil {
		t.Fatalf("the HNSW index of %s: %v", partition, err)
	}
	return name
}

// testSearchPrunes: the index, exact and estimate statements of subjects of
// every tenant read that tenant's partitions only, and the index plan walks
// the partition's HNSW index (the exact plan never does).
func testSearchPrunes(t *testing.T, f *e2e.Fixture) {
	s := e2e.NewSearcher(t, retriever.Config{})
	for _, id := range []string{"alice", "carol", "dave", "erin", "tina"} {
		u := partUser(t, f, id)
		q := retriever.Query{Resource: "chunks", Embedding: f.Topic(3), K: 10}
		req := filter.Request{Subject: u.Subject()}
		st, _, err := s.CachedAndBuilt(f.Policy, req, q, req, q)
		if err != nil {
			t.Fatal(err)
		}
		index, _ := explainScans(t, f, searchSettings, st.Index, st.IndexArgs...)
		checkOnePartition(t, index, u.Tenant)
		exact, _ := explainScans(t, f, searchSettings, st.Exact, st.ExactArgs...)
		checkOnePartition(t, exact, u.Tenant)
		permitted, _ := explainScans(t, f, searchSettings, st.Permitted, st.PermitArgs...)
		checkOnePartition(t, permitted, u.Tenant)
		if u.Tenant == tiny.Tenant {
			continue // 30 rows: the planner rightly sorts them rather than walk a graph
		}
		want := hnswIndexOf(t, f, "chunks_"+u.Tenant)
		if !slices.ContainsFunc(index, func(s scan) bool {
			return s.Type == "Index Scan" && s.Index == want && strings.Contains(s.Order, "<=>")
		}) {
			t.Errorf("%s: the index plan does not walk %s: %+v", id, want, index)
		}
		if slices.ContainsFunc(exact, func(s scan) bool { return s.Index == want }) {
			t.Errorf("%s: the exact plan walks %s", id, want)
		}
	}
}

// partUser is a demo user, or tiny's.
func partUser(t *testing.T, f *e2e.Fixture, id string) e2e.User {
	t.Helper()
	if id == tiny.ID {
		return tiny
	}
	return f.User(t, id)
}

// testPartitionedAnswers: each plan's answer is the oracle's exact top k,
// at this size the index walk's too (recall 1).
func testPartitionedAnswers(t *testing.T, f *e2e.Fixture) {
	plans := map[string]retriever.Config{
		"exact": {Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1 << 30},
		"index": {Estimates: retriever.NewEstimates(100, time.Minute), ExactRows: 1, EfFactor: 1},
	}
	for name, cfg := range plans {
		for _, id := range []string{"alice", "bob", "carol", "dave", "erin", "tina"} {
			for topic := range 4 {
				u := partUser(t, f, id)
				vec := f.Topic(topic * 5)
				for _, k := range []int{10, 40} {
					res := e2e.Search(t, f.Pool, f, u, retriever.Query{Resource: "chunks", Embedding: vec, K: k}, cfg)
					want := f.ExactTopK(t, u, vec, k, "")
					if got := resultIDs(res); !slices.Equal(got, want) {
						t.Errorf("%s plan, %s, topic %d, k=%d: got %v, oracle %v", name, id, topic*5, k, got, want)
					}
				}
			}
		}
	}
}

func resultIDs(rs []retriever.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// testPartitionedPlanChoice: with the default thresholds, carol (acme's
// admin, most of acme's partition, more than DefaultExactRows rows) walks
// the index and tina (30 rows) is read exactly, and both estimates are kept:
// the next search sends no EXPLAIN.
func testPartitionedPlanChoice(t *testing.T, f *e2e.Fixture) {
	for _, tc := range []struct {
		user string
		want retriever.Plan
	}{{"carol", retriever.PlanIndex}, {"tina", retriever.PlanExact}, {"dave", retriever.PlanExact}} {
		var ran []retriever.Plan
		cfg := retriever.Config{Estimates: retriever.NewEstimates(100, time.Minute), OnPlan: func(p retriever.Plan) { ran = append(ran, p) }}
		s := e2e.NewSearcher(t, cfg)
		req := filter.Request{Subject: partUser(t, f, tc.user).Subject()}
		q := retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 10}
		for range 2 {
			if _, _, err := s.Search(context.Background(), f.Pool, f.Policy, req, q); err != nil {
				t.Fatal(err)
			}
		}
		rb := &recordingBatcher{db: f.Pool}
		if _, _, err := s.Search(context.Background(), rb, f.Policy, req, q); err != nil {
			t.Fatal(err)
		}
		if got := ran[len(ran)-1]; got != tc.want {
			t.Errorf("%s: plan %s, want %s", tc.user, got, tc.want)
		}
		for _, sql := range rb.sql {
			if strings.HasPrefix(sql, "EXPLAIN") {
				t.Errorf("%s: the estimate was not kept: the third search sent %s", tc.user, sql)
			}
		}
	}
}

// testRewritePrunes: the statements filter.Wrap sends (the rewriter's
// fenced subqueries, each with its tenant predicate) read one partition of
// each table, planned for the subject's values and as a generic plan, which
// Wrap's prepared statements may get after five runs: then the partitions
// are pruned when it starts.
func testRewritePrunes(t *testing.T, f *e2e.Fixture) {
	db := filter.Wrap(f.Pool, grantsPolicy(t))
	vec := f.Topic(2)
	for _, tc := range []struct{ name, sql string }{
		{"select", "SELECT id, content FROM chunks ORDER BY embedding <=> $1::float4[]::vector LIMIT 5"},
		{"count", "SELECT count(*) FROM chunks WHERE source = 'wiki' AND $1::float4[] IS NOT NULL"},
		{"join grants", `SELECT c.id, g.user_id FROM chunks c JOIN document_grants g ON g.document_id = c.document_id
			WHERE $1::float4[] IS NOT NULL ORDER BY c.embedding <=> $1::float4[]::vector LIMIT 5`},
	} {
		for _, id := range []string{"alice", "dave", "tina"} {
			u := partUser(t, f, id)
			ctx := filter.WithSubject(context.Background(), u.Subject())
			sql, args, err := db.Rewrite(ctx, tc.sql, vec)
			if err != nil {
				t.Fatalf("%s as %s: %v", tc.name, id, err)
			}
			custom, _ := explainScans(t, f, "", sql, args...)
			checkOnePartition(t, custom, u.Tenant)
			generic, removed := explainGeneric(t, f, sql, args)
			checkOnePartition(t, generic, u.Tenant)
			if removed == 0 {
				t.Errorf("%s as %s: the generic plan prunes no partition when it starts", tc.name, id)
			}
			if tc.name == "join grants" && len(partitionsOf(custom, "document_grants")) != 1 {
				t.Errorf("%s as %s: document_grants is not read: %+v", tc.name, id, custom)
			}
		}
	}
}

// grantsPolicy is the demo policy with document_grants a resource too, so a
// statement may join it (the rewriter refuses a table the policy does not
// declare): the subject reads the grants made to them.
func grantsPolicy(t *testing.T) *filter.Policy {
	t.Helper()
	src := e2e.MaskedPolicy + `
  document_grants:
    table: document_grants
    tenant: tenant_id
    id: document_id
    columns: [tenant_id, document_id, user_id, permission]
    allow:
      - name: mine
        when: user_id = subject.id
`
	set, err := policy.Parse(policy.Source{Name: "demo-grants.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// explainGeneric is EXPLAIN (FORMAT JSON) EXECUTE of sql prepared with a
// generic plan, so partitions can only be pruned when it starts. EXECUTE
// takes its values as SQL, not as parameters: each is written as a literal
// of the prepared parameter's type.
func explainGeneric(t *testing.T, f *e2e.Fixture, sql string, args []any) ([]scan, int) {
	t.Helper()
	ctx := context.Background()
	var doc []byte
	err := pgx.BeginFunc(ctx, f.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE fenced AS "+sql); err != nil {
			return err
		}
		defer tx.Exec(ctx, "DEALLOCATE fenced") //nolint:errcheck // the transaction ends anyway
		var types []string
		if err := tx.QueryRow(ctx, "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'fenced'").Scan(&types); err != nil {
			return err
		}
		literals := make([]string, len(args))
		for i, a := range args {
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT quote_literal($1::%s::text) || '::%[1]s'", types[i]), a).Scan(&literals[i]); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) EXECUTE fenced("+strings.Join(literals, ", ")+")").Scan(&doc)
	})
	if err != nil {
		t.Fatalf("explain generic: %v\n%s", err, sql)
	}
	return readScans(t, doc)
}
