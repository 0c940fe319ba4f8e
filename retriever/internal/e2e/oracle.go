package e2e

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/auth"
)

// User is a demo user, as the oracles see them.
type User struct {
	ID, Tenant    string
	Roles, Groups []string
	Clearance     int
}

// Subject is u as a token's subject would be after the policy's checks.
func (u User) Subject() *policy.Subject {
	return &policy.Subject{ID: u.ID, Tenant: u.Tenant, Roles: u.Roles, Groups: u.Groups,
		Attributes: map[string]any{"clearance": u.Clearance}}
}

// User returns the demo user with id.
func (f *Fixture) User(t testing.TB, id string) User {
	t.Helper()
	for _, u := range f.Data.Users {
		if u.ID == id {
			return User{ID: u.ID, Tenant: u.TenantID, Roles: u.Roles, Groups: u.Groups, Clearance: int(u.Clearance)}
		}
	}
	t.Fatalf("no demo user %q", id)
	return User{}
}

// Token mints a valid token for the demo user, acting through agent if set.
func (f *Fixture) Token(t testing.TB, userID, agent string) string {
	t.Helper()
	u := f.User(t, userID)
	return MintToken(t, auth.MintClaims{Subject: u.ID, Tenant: u.Tenant, Roles: u.Roles, Groups: u.Groups,
		Attributes: map[string]any{"clearance": u.Clearance}, Agent: agent, IssuedAt: FixedNow})
}

// MintToken mints a token with Secret.
func MintToken(t testing.TB, c auth.MintClaims) string {
	t.Helper()
	tok, err := auth.Mint(Secret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Topic returns the centre of demo topic i: a query vector with many
// chunks near it.
func (f *Fixture) Topic(i int) []float32 { return f.Data.Topics[i%len(f.Data.Topics)].Centre }

// ChunkRow is what the tests check of a returned chunk, read straight from
// the table.
type ChunkRow struct {
	Tenant, Owner, Visibility, Source string
	ACL                               []string
	Classification                    int
	Metadata                          map[string]any
	Distance                          float64
}

// Chunks reads the rows with ids, and each one's cosine distance to q.
func (f *Fixture) Chunks(t testing.TB, ids []string, q []float32) map[string]ChunkRow {
	t.Helper()
	ctx := context.Background()
	rows, err := f.Pool.Query(ctx, `SELECT id::text, tenant_id, owner_id, visibility, source, acl_groups, classification, metadata,
			embedding <=> $2::float4[]::vector
		FROM chunks WHERE id::text = ANY($1)`, ids, q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ChunkRow{}
	for rows.Next() {
		var id string
		var c ChunkRow
		if err := rows.Scan(&id, &c.Tenant, &c.Owner, &c.Visibility, &c.Source, &c.ACL, &c.Classification, &c.Metadata, &c.Distance); err != nil {
			t.Fatal(err)
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			t.Errorf("result id %q is not a chunk", id)
		}
	}
	return out
}

// VisibleSQL restates the demo policy for a user independently of ragfence:
// the oracle the answers are checked against. $1 tenant, $2 user id,
// $3 groups, $4 roles, $5 clearance.
const VisibleSQL = `c.tenant_id = $1
	AND (c.visibility = 'tenant'
		OR (c.visibility = 'group' AND c.acl_groups && $3::text[])
		OR c.owner_id = $2
		OR EXISTS (SELECT 1 FROM document_grants g WHERE g.tenant_id = $1 AND g.document_id = c.document_id AND g.user_id = $2)
		OR 'admin' = ANY ($4::text[]))
	AND c.classification <= $5`

// Invisible returns the ids among ids that u may not see by the oracle.
func (f *Fixture) Invisible(t testing.TB, u User, ids []string) []string {
	t.Helper()
	var out []string
	err := f.Pool.QueryRow(context.Background(),
		`SELECT coalesce(array_agg(c.id::text ORDER BY c.id), '{}') FROM chunks c
		 WHERE c.id::text = ANY($6) AND NOT (`+VisibleSQL+`)`,
		u.Tenant, u.ID, u.Groups, u.Roles, u.Clearance, ids).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ExactTopK returns the ids of the k chunks nearest q that u may see, by a
// sequential scan: the answer an exact search would give. extra is a
// further condition on c ($6 is q), or "".
func (f *Fixture) ExactTopK(t testing.TB, u User, q []float32, k int, extra string) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := f.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, "SET LOCAL enable_indexscan = off"); err != nil {
		t.Fatal(err)
	}
	if extra == "" {
		extra = "TRUE"
	}
	rows, err := tx.Query(ctx, `SELECT c.id::text FROM chunks c WHERE `+VisibleSQL+` AND (`+extra+`)
		ORDER BY c.embedding <=> $6::float4[]::vector, c.id LIMIT $7`,
		u.Tenant, u.ID, u.Groups, u.Roles, u.Clearance, q, k)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// AuditRow is a row of ragfence.audit_log.
type AuditRow struct {
	DecidedAt                                   time.Time
	Subject, Tenant, Resource, Outcome, Version string
	Agent                                       *string
	Rules, RowIDs                               []string
	RowCount                                    int
	LatencyMS                                   float64
	Detail                                      map[string]any
}

// AuditRows reads the audit rows of the decision ids.
func (f *Fixture) AuditRows(t testing.TB, ids []string) map[string]AuditRow {
	t.Helper()
	rows, err := f.Pool.Query(context.Background(), `SELECT decision_id, decided_at, subject, tenant, resource, outcome,
			policy_version, agent, rules, row_ids, row_count, latency_ms, detail
		FROM ragfence.audit_log WHERE decision_id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]AuditRow{}
	for rows.Next() {
		var id string
		var a AuditRow
		if err := rows.Scan(&id, &a.DecidedAt, &a.Subject, &a.Tenant, &a.Resource, &a.Outcome, &a.Version,
			&a.Agent, &a.Rules, &a.RowIDs, &a.RowCount, &a.LatencyMS, &a.Detail); err != nil {
			t.Fatal(err)
		}
		out[id] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// MustMarshal is v as JSON.
func MustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// PtrTo returns a pointer to a copy of v.
func PtrTo[T any](v T) *T { return &v }

// SortedKeys returns m's keys, sorted.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
