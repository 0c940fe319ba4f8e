package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
	"github.com/ragfence/ragfence/revocation"
)

// textPool is a pool on dsn configured for Config.QueryPool, with one
// connection: each call reuses the connection the one before used, so a
// call that leaves it in a bad state fails the next.
func textPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	service.ConfigureQueryPool(cfg)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// queryService is a service on the shared fixture that runs queries on a
// text pool; edit, when set, changes its Config.
func queryService(t *testing.T, log service.AuditLog, edit func(*service.Config)) *service.Service {
	t.Helper()
	f := e2e.Shared(t)
	cfg := service.Config{
		Pool: f.Pool, Policies: retriever.StaticPolicy(f.Policy), Auth: service.TokenAuth{Verifier: f.Verifier},
		Audit: log, Logger: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)),
		Now: func() time.Time { return e2e.FixedNow }, QueryPool: textPool(t, f.DSN), StatementTimeout: 30 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// as is a call of the demo user's (through agent, if set).
func as(t *testing.T, user, agent, sql string, args ...any) service.QueryCall {
	return service.QueryCall{Caller: service.Caller{Authorization: "Bearer " + e2e.Shared(t).Token(t, user, agent), Channel: "mcp"},
		SQL: sql, Args: args}
}

// column is one column of every row, as text.
func column(t *testing.T, res *service.QueryResult, name string) []string {
	t.Helper()
	out := make([]string, len(res.Rows))
	for i, raw := range res.Rows {
		var row map[string]json.RawMessage
		if err := json.Unmarshal(raw, &row); err != nil {
			t.Fatalf("row %s: %v", raw, err)
		}
		v, ok := row[name]
		if !ok {
			t.Fatalf("row %s has no column %s", raw, name)
		}
		out[i] = string(v)
		var s string
		if json.Unmarshal(v, &s) == nil && string(v) != "null" {
			out[i] = s
		}
	}
	return out
}

// visibleIDs are the first n chunk ids u may see by the oracle.
func visibleIDs(t *testing.T, u e2e.User, n int) []string {
	t.Helper()
	rows, err := e2e.Shared(t).Pool.Query(context.Background(), `SELECT c.id::text FROM chunks c WHERE `+e2e.VisibleSQL+` ORDER BY c.id LIMIT $6`,
		u.Tenant, u.ID, u.Groups, u.Roles, u.Clearance, n)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// A user's statement returns exactly the rows the oracle lets them see,
// the masked column masked; an agent's, only its grant's; arguments bind.
func TestQueryReturnsOnlyPermittedRows(t *testing.T) {
	f := e2e.Shared(t)
	svc := queryService(t, &recordingLog{}, nil)
	ctx := context.Background()
	alice := f.User(t, "alice")

	res, err := svc.Query(ctx, as(t, "alice", "", "SELECT id FROM chunks ORDER BY id LIMIT 5"))
	if err != nil {
		t.Fatal(err)
	}
	ids := column(t, res, "id")
	if want := visibleIDs(t, alice, 5); !slices.Equal(ids, want) || !slices.Equal(res.Columns, []string{"id"}) || res.Truncated || res.DecisionID == "" {
		t.Errorf("alice's first 5 chunks: %+v (ids %v), want ids %v", res, ids, want)
	}
	var hidden int
	if err := f.Pool.QueryRow(ctx, "SELECT count(*) FROM (SELECT id::text FROM chunks ORDER BY id LIMIT 5) c WHERE NOT (c.id = ANY($1))", ids).Scan(&hidden); err != nil || hidden == 0 {
		t.Fatalf("the first 5 chunks are all alice's (%v): the test proves nothing", err)
	}

	res, err = svc.Query(ctx, as(t, "alice", "", "SELECT id, owner_id, contact_email, source FROM chunks WHERE source = $1 AND classification <= $2 ORDER BY id", "wiki", 1.0))
	if err != nil {
		t.Fatal(err)
	}
	if bad := f.Invisible(t, alice, column(t, res, "id")); len(bad) > 0 || len(res.Rows) == 0 {
		t.Errorf("%d rows, of which %v are not visible to alice", len(res.Rows), bad)
	}
	owners, emails := column(t, res, "owner_id"), column(t, res, "contact_email")
	for i, src := range column(t, res, "source") {
		if src != "wiki" || (owners[i] != "alice" && emails[i] != "null") {
			t.Errorf("row %s: source %s, contact_email %s; want wiki, masked unless alice owns it", res.Rows[i], src, emails[i])
		}
	}

	res, err = svc.Query(ctx, as(t, "alice", "summarizer", "SELECT id, source FROM chunks ORDER BY id"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range column(t, res, "source") {
		if src != "wiki" && src != "drive" {
			t.Errorf("the summarizer read a %s chunk", src)
		}
	}
	if bad := f.Invisible(t, alice, column(t, res, "id")); len(bad) > 0 {
		t.Errorf("the summarizer read %v, which alice may not see", bad)
	}
}

// Limit bounds the rows and Truncated says more existed; the rest of a
// large result is not waited for, and the connection serves the next call.
func TestQueryLimit(t *testing.T) {
	svc := queryService(t, &recordingLog{}, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		sql       string
		limit     int
		rows      int
		truncated bool
	}{
		{"SELECT id FROM chunks ORDER BY id", 3, 3, true},
		{"SELECT id FROM chunks ORDER BY id LIMIT 3", 3, 3, false},
		{"SELECT id FROM chunks ORDER BY id LIMIT 2", 3, 2, false},
		{"SELECT id FROM chunks", 0, service.DefaultQueryLimit, true},
		{"SELECT id FROM chunks", service.MaxQueryLimit, service.MaxQueryLimit, true},
		// Billions of rows: without the cancel, reading them takes longer
		// than the test allows.
		{"SELECT a.id, b.content FROM chunks a, chunks b, chunks c", 1, 1, true},
		{"SELECT id FROM chunks WHERE id < 0", 0, 0, false},
	} {
		call := as(t, "alice", "", tc.sql)
		call.Limit = tc.limit
		start := time.Now()
		res, err := svc.Query(ctx, call)
		if err != nil || len(res.Rows) != tc.rows || res.Truncated != tc.truncated || res.Rows == nil {
			t.Errorf("%s, limit %d: %v; want %d rows, truncated %v", tc.sql, tc.limit, err, tc.rows, tc.truncated)
			continue
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s, limit %d: took %v", tc.sql, tc.limit, d)
		}
	}
}

// Refused statements and calls: each with its stable code, audited under
// the decision id the caller got, with nothing written and no hidden value
// observed or echoed.
func TestQueryRefusals(t *testing.T) {
	f := e2e.Shared(t)
	log := &recordingLog{}
	svc := queryService(t, log, nil)
	ctx := context.Background()
	var before int
	if err := f.Pool.QueryRow(ctx, "SELECT count(*) FROM chunks").Scan(&before); err != nil {
		t.Fatal(err)
	}
	limited := func(n int, call service.QueryCall) service.QueryCall { call.Limit = n; return call }
	for _, tc := range []struct {
		name    string
		call    service.QueryCall
		code    retriever.Code
		outcome string
		msg     string // in the message, when set
	}{
		{"delete", as(t, "alice", "", "DELETE FROM chunks"), "not_a_query", "invalid", ""},
		{"data-modifying CTE", as(t, "alice", "", "WITH d AS (DELETE FROM chunks RETURNING id) SELECT id FROM d"), "write", "invalid", ""},
		{"for update", as(t, "alice", "", "SELECT id FROM chunks FOR UPDATE"), "write", "invalid", ""},
		{"two statements", as(t, "alice", "", "SELECT 1; DELETE FROM chunks"), "not_a_query", "invalid", ""},
		{"system catalog", as(t, "alice", "", "SELECT * FROM pg_authid"), "system_catalog", "invalid", ""},
		{"syntax", as(t, "alice", "", "SELEC id FROM chunks"), "syntax", "invalid", ""},
		{"param out of range", as(t, "alice", "", "SELECT id FROM chunks WHERE id = $2", "1"), "param_out_of_range", "invalid", ""},
		{"agent without a grant", as(t, "alice", "bot", "SELECT id FROM chunks"), retriever.CodeAgentNotGranted, "denied", ""},
		{"bad argument", as(t, "alice", "", "SELECT id FROM chunks WHERE id = $1::int8", "secret-arg-value"), retriever.CodeInvalidQuery, "invalid",
			"invalid_text_representation (SQLSTATE 22P02)"},
		{"undefined column", as(t, "alice", "", "SELECT id FROM chunks WHERE nope = 1"), retriever.CodeInvalidQuery, "invalid",
			"undefined_column (SQLSTATE 42703)"},
		{"argument of no SQL type", as(t, "alice", "", "SELECT $1::text", map[string]any{"a": 1}), retriever.CodeInvalidQuery, "invalid", ""},
		{"no sql", as(t, "alice", "", " "), retriever.CodeInvalidQuery, "invalid", ""},
		{"negative limit", limited(-1, as(t, "alice", "", "SELECT 1")), service.CodeInvalidLimit, "invalid", ""},
		{"limit too large", limited(service.MaxQueryLimit+1, as(t, "alice", "", "SELECT 1")), service.CodeInvalidLimit, "invalid", ""},
		{"no token", service.QueryCall{SQL: "SELECT id FROM chunks", Caller: service.Caller{Channel: "mcp"}}, retriever.CodeUnauthenticated, "unauthenticated", ""},
	} {
		n := len(log.records)
		res, err := svc.Query(ctx, tc.call)
		code := retriever.CodeOf(err)
		if res != nil || err == nil || code != tc.code || service.DecisionID(err) == "" {
			t.Errorf("%s: %v, %v (code %q); want %q with a decision id", tc.name, res, err, code, tc.code)
			continue
		}
		if strings.Contains(err.Error(), "secret-arg-value") {
			t.Errorf("%s: the message echoes the argument: %v", tc.name, err)
		}
		if len(log.records) != n+1 {
			t.Errorf("%s: %d audit records, want 1", tc.name, len(log.records)-n)
			continue
		}
		r := log.records[n]
		if r.DecisionID != service.DecisionID(err) || r.Outcome != tc.outcome || r.Detail["error"] != string(code) ||
			r.Detail["tool"] != "sql_query" || r.Detail["channel"] != "mcp" {
			t.Errorf("%s: audited as %+v; want outcome %s, error %s", tc.name, r, tc.outcome, code)
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v does not say %q", tc.name, err, tc.msg)
		}
	}
	var after int
	if err := f.Pool.QueryRow(ctx, "SELECT count(*) FROM chunks").Scan(&after); err != nil || after != before {
		t.Errorf("chunks: %d rows before, %d after (%v)", before, after, err)
	}
}

// A revoked agent is refused as Retrieve refuses it, in the call's one
// audit record, which names the revocation; its user is not.
func TestQueryRevoked(t *testing.T) {
	log := &recordingLog{}
	svc := queryService(t, log, func(c *service.Config) { c.Revocations = revokedAgent("summarizer") })
	ctx := context.Background()
	_, err := svc.Query(ctx, as(t, "alice", "summarizer", "SELECT id FROM chunks LIMIT 1"))
	if retriever.CodeOf(err) != service.CodeAgentRevoked || len(log.records) != 1 {
		t.Fatalf("revoked agent: %v, %d records; want agent_revoked, one record", err, len(log.records))
	}
	if r := log.records[0]; r.Outcome != "denied" || r.Detail["revocation_id"] != int64(7) || r.Agent != "summarizer" || r.DecisionID != service.DecisionID(err) {
		t.Errorf("revoked agent audited as %+v", r)
	}
	if _, err := svc.Query(ctx, as(t, "alice", "", "SELECT id FROM chunks LIMIT 1")); err != nil {
		t.Errorf("the agent's user: %v", err)
	}
}

// revokedAgent is a revocation state in which the agent is revoked.
type revokedAgent string

func (a revokedAgent) Check(c revocation.Caller) error {
	if c.Agent != string(a) {
		return nil
	}
	return &revocation.Error{Code: revocation.CodeAgentRevoked, Msg: "the agent is revoked",
		Revocation: &revocation.Revocation{ID: 7, Kind: revocation.KindAgent, Agent: c.Agent, CreatedAt: e2e.FixedNow}}
}

func (revokedAgent) Concerning(revocation.Caller) ([]revocation.Revocation, error) { return nil, nil }

// An error-based probe raises only on a row alice may not see (her
// clearance is 2; chunks of classification 3 exist): strict mode refuses
// it, or it runs without meeting the hidden rows. Either way no answer
// tells a hidden row's value.
func TestQueryErrorProbes(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	var classified int
	if err := f.Pool.QueryRow(ctx, "SELECT count(*) FROM chunks WHERE tenant_id = 'acme' AND classification = 3").Scan(&classified); err != nil || classified == 0 {
		t.Fatalf("no chunk of classification 3 (%v): the probes prove nothing", err)
	}
	svc := queryService(t, &recordingLog{}, nil)
	alice := f.User(t, "alice")
	for _, sql := range []string{
		"SELECT 1 / (classification - 3) AS x FROM chunks",
		"SELECT id FROM chunks WHERE 1 / (classification - 3) = 1",
		"SELECT id FROM chunks WHERE (CASE WHEN classification = 3 THEN content ELSE '1' END)::int = 1",
		"SELECT id FROM chunks WHERE classification = 3 AND content::int = 0",
		"SELECT id FROM chunks ORDER BY 1 / (classification - 3)",
		"SELECT (SELECT 1 / (c.classification - 3) FROM chunks c WHERE c.id = chunks.id) AS x FROM chunks",
		"SELECT id FROM chunks WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.classification = 3 AND c.content::int = 0)",
		"SELECT count(*) / sum(CASE WHEN classification = 3 THEN 1 ELSE 0 END) AS n FROM chunks",
	} {
		call := as(t, "alice", "", sql)
		call.Limit = service.MaxQueryLimit
		res, err := svc.Query(ctx, call)
		switch code := retriever.CodeOf(err); {
		case err == nil:
			if ids := idsOf(t, res); len(ids) > 0 {
				if bad := f.Invisible(t, alice, ids); len(bad) > 0 {
					t.Errorf("%s: returned hidden rows %v", sql, bad)
				}
			}
		case code == retriever.CodeInvalidQuery || code == retriever.CodeInternal:
			t.Errorf("%s: the statement met a hidden row: %v", sql, err)
		case rewriteCodes[code]:
		default:
			t.Errorf("%s: %v; want refused by the rewriter, or no hidden row met", sql, err)
		}
	}
	// What strict mode lets through sees no hidden row to count.
	res, err := svc.Query(ctx, as(t, "alice", "", "SELECT count(*) AS n FROM chunks WHERE classification = 3"))
	if err != nil || len(res.Rows) != 1 || string(res.Rows[0]) != `{"n":0}` {
		t.Errorf("alice counts the classified chunks: %v, %v; want n 0", res, err)
	}
}

// rewriteCodes are the codes of strict mode's refusals.
var rewriteCodes = map[retriever.Code]bool{"operator_not_allowed": true, "expression_not_allowed": true, "function_not_allowed": true}

// idsOf is the id column of res, when it has one.
func idsOf(t *testing.T, res *service.QueryResult) []string {
	if !slices.Contains(res.Columns, "id") {
		return nil
	}
	return column(t, res, "id")
}

// The database's failures: a statement that outlives the timeout, a
// database that cannot be reached, a service without a query pool.
func TestQueryFailures(t *testing.T) {
	ctx := context.Background()
	slow := queryService(t, &recordingLog{}, func(c *service.Config) { c.StatementTimeout = 20 * time.Millisecond })
	_, err := slow.Query(ctx, as(t, "alice", "", "SELECT count(*) AS n FROM chunks a, chunks b, chunks c"))
	if retriever.CodeOf(err) != retriever.CodeTimeout || !strings.Contains(err.Error(), "20ms") {
		t.Errorf("slow statement: %v, want timeout", err)
	}
	if _, err := slow.Query(ctx, as(t, "alice", "", "SELECT 1 AS one")); err != nil {
		t.Errorf("the call after a timeout: %v", err)
	}

	log := &recordingLog{}
	down := queryService(t, log, func(c *service.Config) {
		c.QueryPool = textPool(t, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	})
	_, err = down.Query(ctx, as(t, "alice", "", "SELECT 1"))
	if retriever.CodeOf(err) != retriever.CodeUnavailable || len(log.records) != 1 || log.records[0].Outcome != "error" {
		t.Errorf("database down: %v, audited %+v; want unavailable, outcome error", err, log.records)
	}

	none := queryService(t, &recordingLog{}, func(c *service.Config) { c.QueryPool = nil })
	if _, err := none.Query(ctx, as(t, "alice", "", "SELECT 1")); retriever.CodeOf(err) != retriever.CodeInternal {
		t.Errorf("no query pool: %v, want internal", err)
	}
	binary := queryService(t, &recordingLog{}, func(c *service.Config) { c.QueryPool = e2e.Shared(t).Pool })
	if _, err := binary.Query(ctx, as(t, "alice", "", "SELECT 1")); retriever.CodeOf(err) != retriever.CodeInternal {
		t.Errorf("a query pool not configured for text: %v, want internal", err)
	}
}

// Every call leaves its record in the audit log under the decision id the
// caller got, with the tool, channel, address and row count and never the
// arguments; a call whose record is refused gets no answer.
func TestQueryAudited(t *testing.T) {
	f := e2e.Shared(t)
	w, err := audit.New(f.Pool, audit.Config{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc := queryService(t, w, nil)
	ctx := context.Background()
	addr := netip.MustParseAddr("198.51.100.8")
	call := as(t, "alice", "", "SELECT id FROM chunks WHERE source = $1 ORDER BY id LIMIT 4", "audit-secret-arg")
	call.ClientAddr = addr
	res, err := svc.Query(ctx, call)
	if err != nil || len(res.Rows) != 0 {
		t.Fatalf("allowed call: %v, %v", res, err)
	}
	call.Args = []any{"wiki"}
	res, err = svc.Query(ctx, call)
	if err != nil || len(res.Rows) != 4 {
		t.Fatalf("allowed call: %v, %v", res, err)
	}
	call.SQL = "DELETE FROM chunks WHERE source = $1"
	_, err = svc.Query(ctx, call)
	refused := service.DecisionID(err)
	if refused == "" {
		t.Fatalf("refused call: %v", err)
	}
	closeWriter(t, w)

	rows := f.AuditRows(t, []string{res.DecisionID, refused})
	allowed, denied := rows[res.DecisionID], rows[refused]
	if allowed.Outcome != "allowed" || allowed.Subject != "alice" || allowed.Tenant != "acme" || allowed.Detail["tool"] != "sql_query" ||
		allowed.Detail["rows"] != 4.0 || allowed.Detail["truncated"] != false || allowed.Detail["channel"] != "mcp" || allowed.Version == "" {
		t.Errorf("allowed call audited as %+v", allowed)
	}
	if denied.Outcome != "invalid" || denied.Detail["error"] != "not_a_query" || denied.Detail["tool"] != "sql_query" {
		t.Errorf("refused call audited as %+v", denied)
	}
	var leaked int
	if err := f.Pool.QueryRow(ctx, "SELECT count(*) FROM ragfence.audit_log WHERE detail::text LIKE '%audit-secret-arg%'").Scan(&leaked); err != nil || leaked != 0 {
		t.Errorf("%d audit records hold an argument (%v)", leaked, err)
	}

	full := queryService(t, &recordingLog{refuse: errors.New("audit queue full")}, nil)
	res, err = full.Query(ctx, as(t, "alice", "", "SELECT id FROM chunks LIMIT 1"))
	if res != nil || retriever.CodeOf(err) != retriever.CodeUnavailable || service.DecisionID(err) == "" {
		t.Errorf("audit refused: %v, %v; want no answer, unavailable, a decision id", res, err)
	}
}

// ExampleQueryResult shows the JSON a front door sends for a result.
func ExampleQueryResult() {
	res := service.QueryResult{DecisionID: "d-1", Columns: []string{"id", "source"},
		Rows: []json.RawMessage{json.RawMessage(`{"id":1,"source":"wiki"}`)}}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	// Output: {"decision_id":"d-1","columns":["id","source"],"rows":[{"id":1,"source":"wiki"}],"truncated":false}
}
