package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgvector "github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
)

// K is the number of results every strategy asks for.
const K = 10

// postfilterFactor is how many candidates application post-filtering
// fetches per wanted result, as RAG frameworks commonly do.
const postfilterFactor = 10

// Policy is the benchmark's ragfence policy; the RLS policy in Load says
// the same thing in CREATE POLICY terms.
const Policy = `version: 1
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    id: id
    content: content
    embedding: embedding
    metadata: metadata
    columns: [id, tenant_id, acl, content, metadata, embedding]
    allow:
      - name: group-member
        when: acl && subject.groups
`

// Strategy names, as in the JSON output.
const (
	Unfiltered  = "unfiltered"
	Postfilter  = "postfilter"
	RLS         = "rls"
	InjectPlain = "inject-plain"
	Ragfence    = "ragfence"
	// SQL is the statement an application or agent writes, run through
	// filter.Wrap in strict mode: the rewriter fences the table and moves
	// the ordering into the fence (see package rewrite). SQLCondition adds
	// a condition that could raise on a row's data, which stays outside the
	// fence, in trusted mode: their difference is what such a condition
	// costs.
	SQL          = "sql"
	SQLCondition = "sql-condition"
	Exact        = "exact"
)

// Strategies lists them in the order the report shows them.
var Strategies = []string{Unfiltered, Postfilter, RLS, InjectPlain, Ragfence, SQL, SQLCondition, Exact}

// User is a benchmark subject: one cell's group in the benchmark tenant.
type User struct {
	Placement   Placement
	Selectivity float64
	Subject     *policy.Subject
}

// NewUser returns the subject of a cell.
func NewUser(tenant string, p Placement, sel float64) User {
	return User{Placement: p, Selectivity: sel, Subject: &policy.Subject{
		ID: "bench-" + Group(p, sel), Tenant: tenant, Groups: []string{Group(p, sel)},
	}}
}

// searcher runs one strategy's query and returns the ids, nearest first.
type searcher func(ctx context.Context, u User, q []float32) ([]int64, error)

// Env is what the strategies run against.
type Env struct {
	Pool    *pgxpool.Pool // the table owner
	RLSPool *pgxpool.Pool // rlsRole, subject to row-level security
	Policy  *filter.Policy
	// Searcher runs the ragfence strategy (retriever.NewSearcher, whose
	// Config tunes it); shared by every cell, as serve shares one.
	Searcher *retriever.Searcher
}

// CompilePolicy parses and compiles Policy.
func CompilePolicy() (*filter.Policy, error) {
	set, err := policy.Parse(policy.Source{Name: "bench-policy.yaml", Data: []byte(Policy)})
	if err != nil {
		return nil, err
	}
	return filter.Compile(set)
}

func (e *Env) searcher(name string) searcher {
	switch name {
	case Unfiltered:
		return e.unfiltered
	case Postfilter:
		return e.postfilter
	case RLS:
		return e.rls
	case InjectPlain:
		return e.injectPlain
	case Ragfence:
		return e.ragfence
	case SQL:
		return e.wrapped(filter.Wrap(e.Pool, e.Policy, filter.Untrusted()),
			"SELECT id FROM chunks ORDER BY embedding <=> $1 LIMIT $2")
	case SQLCondition:
		return e.wrapped(filter.Wrap(e.Pool, e.Policy),
			"SELECT id FROM chunks WHERE id / 1 >= 0 ORDER BY embedding <=> $1 LIMIT $2")
	case Exact:
		return e.exact
	}
	panic("bench: unknown strategy " + name)
}

// unfiltered is the floor: the index walk with no filter and the server's
// default settings.
func (e *Env) unfiltered(ctx context.Context, _ User, q []float32) ([]int64, error) {
	return ids(e.Pool.Query(ctx, "SELECT id FROM chunks ORDER BY embedding <=> $1 LIMIT $2", pgvector.NewVector(q), K))
}

// postfilter fetches K*postfilterFactor nearest rows and drops, in Go, what
// the policy denies. ef_search is raised to the fetch size in the same
// round trip: with the default 40 an HNSW scan returns at most 40 rows.
func (e *Env) postfilter(ctx context.Context, u User, q []float32) ([]int64, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT set_config('hnsw.ef_search', $1, true)", strconv.Itoa(K*postfilterFactor))
	out := make([]int64, 0, K)
	var (
		id     int64
		tenant string
		acl    []string
	)
	b.Queue("SELECT id, tenant_id, acl FROM chunks ORDER BY embedding <=> $1 LIMIT $2",
		pgvector.NewVector(q), K*postfilterFactor).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&id, &tenant, &acl}, func() error {
			if len(out) < K && tenant == u.Subject.Tenant && overlaps(acl, u.Subject.Groups) {
				out = append(out, id)
			}
			return nil
		})
		return err
	})
	return out, e.Pool.SendBatch(ctx, b).Close()
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// rls runs the unfiltered statement as a role under row-level security, the
// subject in session variables set in the same round trip.
func (e *Env) rls(ctx context.Context, u User, q []float32) ([]int64, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT set_config('ragfence.tenant', $1, true), set_config('ragfence.groups', $2, true)",
		u.Subject.Tenant, strings.Join(u.Subject.Groups, ","))
	var out []int64
	b.Queue("SELECT id FROM chunks ORDER BY embedding <=> $1 LIMIT $2", pgvector.NewVector(q), K).
		Query(func(rows pgx.Rows) (err error) {
			out, err = ids(rows, nil)
			return err
		})
	return out, e.RLSPool.SendBatch(ctx, b).Close()
}

// injectPlain is ragfence's fragment ANDed into the query, with the
// server's default index settings.
func (e *Env) injectPlain(ctx context.Context, u User, q []float32) ([]int64, error) {
	return e.fragmentQuery(ctx, u, q, "c.embedding <=> $1")
}

// exact is the ground truth: the fragment with an ORDER BY no index can
// serve ("+ 0"), so PostgreSQL computes every permitted row's distance.
func (e *Env) exact(ctx context.Context, u User, q []float32) ([]int64, error) {
	return e.fragmentQuery(ctx, u, q, "(c.embedding <=> $1) + 0")
}

func (e *Env) fragmentQuery(ctx context.Context, u User, q []float32, orderBy string) ([]int64, error) {
	frag, err := e.Policy.Fragment("chunks", filter.Request{Subject: u.Subject, Alias: "c"})
	if err != nil {
		return nil, err
	}
	sql := "SELECT c.id FROM chunks AS c WHERE " + frag.SQL(3) + " ORDER BY " + orderBy + " LIMIT $2"
	args := append([]any{pgvector.NewVector(q), K}, frag.Args()...)
	return ids(e.Pool.Query(ctx, sql, args...))
}

// ragfence is the product: retriever.Searcher.Search with its full strategy.
func (e *Env) ragfence(ctx context.Context, u User, q []float32) ([]int64, error) {
	res, _, err := e.Searcher.Search(ctx, e.Pool, e.Policy, filter.Request{Subject: u.Subject},
		retriever.Query{Resource: "chunks", Embedding: q, K: K})
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(res))
	for i, r := range res {
		if out[i], err = strconv.ParseInt(r.ID, 10, 64); err != nil {
			return nil, fmt.Errorf("bench: result id %q: %w", r.ID, err)
		}
	}
	return out, nil
}

// wrapped runs sql through the rewriter as the cell's subject.
func (e *Env) wrapped(db *filter.DB, sql string) searcher {
	return func(ctx context.Context, u User, q []float32) ([]int64, error) {
		return ids(db.Query(filter.WithSubject(ctx, u.Subject), sql, pgvector.NewVector(q), K))
	}
}

func ids(rows pgx.Rows, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}
