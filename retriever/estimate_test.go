package retriever_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
)

// itemsPolicy lets a subject of group a see every row of their tenant.
const itemsPolicy = `version: 1
resources:
  items:
    table: items
    tenant: tenant_id
    id: id
    content: body
    embedding: embedding
    metadata: meta
    columns: [id, tenant_id, grp, body, meta, embedding]
    allow:
      - name: member
        when: grp = ANY (subject.groups)
`

// itemsRows loads ten tenants of n rows (t0..t9) and one of 20 (tiny),
// every row in group a, with random 8-dimensional embeddings.
func itemsRows(n int) string {
	return fmt.Sprintf(`INSERT INTO items
	SELECT g, CASE WHEN g <= %[1]d THEN 't' || (g %% 10) ELSE 'tiny' END, 'a', 'body ' || g, '{}',
		(SELECT array_agg(random() - 0.5) FROM generate_series(1, 8) WHERE g > 0)::vector
	FROM generate_series(1, %[1]d + 20) g`, 10*n)
}

// TestPlanChoiceOnPartitionedParent: a policy's selectivity is measured
// against the partition it reads. Ten tenants of 1000 rows and one of 20,
// partitioned by tenant, the partitions analyzed (autovacuum analyzes
// them) and the parent not (autovacuum never does: its reltuples stays -1).
// With k = 50 and ExactRows 100, t3 (1000 rows, all permitted) walks its
// partition's index with ef_search 150, and tiny is read exactly; both
// estimates are kept. Once the parent is analyzed (reltuples 10020, every
// tenant's rows), measuring t3 against it would ask for ef_search 1503, past
// MaxEfSearch, and read it exactly: the choice must stay the same.
func TestPlanChoiceOnPartitionedParent(t *testing.T) {
	pool, _ := testdb.Schema(t)
	parts := []string{"CREATE TABLE items (id bigint, tenant_id text NOT NULL, grp text, body text, meta jsonb, embedding vector(8)) PARTITION BY LIST (tenant_id)"}
	var leaves []string
	for _, tenant := range []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "tiny"} {
		parts = append(parts, fmt.Sprintf("CREATE TABLE items_%s PARTITION OF items FOR VALUES IN ('%[1]s')", tenant))
		leaves = append(leaves, "items_"+tenant)
	}
	parts = append(parts, itemsRows(1000), "SET max_parallel_maintenance_workers = 0", // pgvector #959
		"CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops)",
		"ANALYZE "+strings.Join(leaves, ", "))
	execAll(t, pool, parts...)
	if n := reltuples(t, pool, "items"); n != -1 {
		t.Fatalf("the parent's reltuples is %v before it is analyzed, want -1", n)
	}
	p := compileItems(t)
	checkChoice(t, pool, p, "t3", retriever.PlanIndex, true)
	checkChoice(t, pool, p, "tiny", retriever.PlanExact, true)
	execAll(t, pool, "ANALYZE items")
	checkChoice(t, pool, p, "t3", retriever.PlanIndex, true)
	checkChoice(t, pool, p, "tiny", retriever.PlanExact, true)
}

// TestNoEstimateWithoutARowCount: a table (ten tenants of 100 rows, and
// tiny) loaded after its indexes were
// built and never analyzed has no row count (reltuples -1). Its searches
// keep no estimate: each walks the index and leaves the rest to the
// planner and the statement's exact fallback (the planner's guesses
// without statistics would otherwise pin a plan for the estimates' ttl).
// Once analyzed, the estimate is kept.
func TestNoEstimateWithoutARowCount(t *testing.T) {
	pool, _ := testdb.Schema(t)
	execAll(t, pool, "CREATE TABLE items (id bigint, tenant_id text NOT NULL, grp text, body text, meta jsonb, embedding vector(8))",
		"CREATE INDEX items_tenant_idx ON items (tenant_id)",
		"SET max_parallel_maintenance_workers = 0", // pgvector #959
		"CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops)",
		itemsRows(100)) // row by row into the HNSW index: few
	if n := reltuples(t, pool, "items"); n != -1 {
		t.Skipf("reltuples is %v: autovacuum analyzed the table already", n)
	}
	p := compileItems(t)
	checkChoice(t, pool, p, "t3", retriever.PlanIndex, false)
	execAll(t, pool, "ANALYZE items")
	checkChoice(t, pool, p, "tiny", retriever.PlanExact, true)
}

// checkChoice searches three times as a group-a subject of tenant, with a
// new Estimates, and checks the plan of the third search and whether it
// needed an estimate (an EXPLAIN in its batch).
func checkChoice(t *testing.T, pool *pgxpool.Pool, p *filter.Policy, tenant string, want retriever.Plan, kept bool) {
	t.Helper()
	var ran []retriever.Plan
	s, err := retriever.NewSearcher(retriever.Config{Estimates: retriever.NewEstimates(10, time.Minute), ExactRows: 100,
		OnPlan: func(p retriever.Plan) { ran = append(ran, p) }})
	if err != nil {
		t.Fatal(err)
	}
	req := filter.Request{Subject: &policy.Subject{ID: "u", Tenant: tenant, Groups: []string{"a"}}}
	q := retriever.Query{Resource: "items", Embedding: []float32{1, 0, 0, 0, 0, 0, 0, 0}, K: 50}
	rows := q.K
	if tenant == "tiny" {
		rows = 20
	}
	rb := &recordingBatcher{db: pool}
	for i := range 3 {
		var db retriever.Batcher = pool
		if i == 2 {
			db = rb
		}
		res, _, err := s.Search(context.Background(), db, p, req, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != rows {
			t.Errorf("%s: %d results, want %d", tenant, len(res), rows)
		}
	}
	if got := ran[2]; got != want {
		t.Errorf("%s: the third search ran plan %s, want %s", tenant, got, want)
	}
	estimated := false
	for _, sql := range rb.sql {
		estimated = estimated || strings.HasPrefix(sql, "EXPLAIN")
	}
	if estimated == kept {
		t.Errorf("%s: estimate kept = %v, want %v", tenant, !estimated, kept)
	}
}

func compileItems(t *testing.T) *filter.Policy {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: "items.yaml", Data: []byte(itemsPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func execAll(t *testing.T, pool *pgxpool.Pool, stmts ...string) {
	t.Helper()
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, s := range stmts {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	// SET applies to this connection only; do not hand it on.
	if _, err := conn.Exec(context.Background(), "RESET ALL"); err != nil {
		t.Fatal(err)
	}
}

func reltuples(t *testing.T, pool *pgxpool.Pool, table string) float64 {
	t.Helper()
	var n float64
	if err := pool.QueryRow(context.Background(), "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
