package retriever_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
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
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/auth"
)

// The end-to-end tests share one seeded database per test binary (seeding
// and indexing the demo data is the slow part); every test builds its own
// server and audit writer on it. They do not run in parallel: one of them
// terminates the database's connections.

// fixedNow is every test clock: the verifier's, the server's and the
// tokens' iat. It is far from the real time on purpose, so a mix-up of the
// injected clock and the wall clock shows.
var fixedNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// testSecret signs every test token.
var testSecret = []byte("ragfence-e2e-secret-0123456789-abcdefghijklmnop")

// maskedPolicy is the demo policy plus a mask on metadata, so a column the
// response carries is masked for subjects without pii-reader.
var maskedPolicy = strings.Replace(string(demo.Policy),
	"    mask:\n",
	"    mask:\n      - column: metadata\n        unless: \"'pii-reader' = ANY (subject.roles)\"\n", 1)

// e2eFixture is the shared database and what every server is built from.
type e2eFixture struct {
	dsn      string
	pool     *pgxpool.Pool
	data     *demo.Dataset
	policy   *filter.Policy
	verifier *auth.Verifier
}

var (
	fixtureOnce sync.Once
	shared      *e2eFixture
	fixtureErr  error  // setup failed: every test fails
	fixtureSkip string // no database: every test skips (testdb decides)
	setupTB     = &mainTB{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	setupTB.cleanup()
	os.Exit(code)
}

// sharedEnv returns the shared fixture, set up by the first test or
// benchmark that asks.
func sharedEnv(t testing.TB) *e2eFixture {
	t.Helper()
	fixtureOnce.Do(func() {
		start := time.Now()
		shared, fixtureSkip, fixtureErr = setupTB.run(newFixture)
		t.Logf("shared fixture ready in %s", time.Since(start).Round(time.Millisecond))
	})
	switch {
	case fixtureSkip != "":
		t.Skip(fixtureSkip)
	case fixtureErr != nil:
		t.Fatalf("shared fixture: %v", fixtureErr)
	}
	return shared
}

func newFixture(tb testing.TB) *e2eFixture {
	ctx := context.Background()
	f := &e2eFixture{dsn: testdb.Database(tb)}
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
		tb.Fatal(err)
	}
	if f.data, _, err = demo.Seed(ctx, conn, demo.Config{Chunks: 4000}, true); err != nil {
		tb.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(f.dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = 8
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	if f.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.pool.Close)
	if maskedPolicy == string(demo.Policy) {
		tb.Fatal("the demo policy has no mask list to add the metadata mask to")
	}
	set, err := policy.Parse(policy.Source{Name: "demo-masked.yaml", Data: []byte(maskedPolicy)})
	if err != nil {
		tb.Fatal(err)
	}
	if f.policy, err = filter.Compile(set); err != nil {
		tb.Fatal(err)
	}
	f.verifier, err = auth.New(ctx, auth.Config{HMACSecret: testSecret, Now: func() time.Time { return fixedNow }, Attributes: []string{"clearance"}})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// mainTB lets the shared fixture use testdb, which takes a testing.TB, from
// outside any one test: cleanups run after every test, Fatal and Skip end
// the setup. Only the methods testdb and newFixture call are implemented.
type mainTB struct {
	testing.TB // nil; never called
	mu         sync.Mutex
	cleanups   []func()
}

type setupFatal struct{ msg string }
type setupSkip struct{ msg string }

func (*mainTB) Helper()                      {}
func (*mainTB) Fatal(args ...any)            { panic(setupFatal{fmt.Sprint(args...)}) }
func (*mainTB) Fatalf(f string, args ...any) { panic(setupFatal{fmt.Sprintf(f, args...)}) }
func (*mainTB) Skip(args ...any)             { panic(setupSkip{fmt.Sprint(args...)}) }
func (*mainTB) Errorf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, "fixture cleanup: "+f+"\n", args...)
}

func (m *mainTB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

// run calls setup, turning its Fatal and Skip into results.
func (m *mainTB) run(setup func(testing.TB) *e2eFixture) (f *e2eFixture, skip string, err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case setupFatal:
			err = errors.New(r.msg)
		case setupSkip:
			skip = r.msg
		default:
			panic(r)
		}
	}()
	return setup(m), "", nil
}

// cleanup runs the cleanups, last first, as testing does.
func (m *mainTB) cleanup() {
	m.mu.Lock()
	fs := m.cleanups
	m.cleanups = nil
	m.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "fixture cleanup: %v\n", r)
				}
			}()
			fs[i]()
		}()
	}
}

// verifierAuth adapts auth.Verifier to retriever.Authenticator, as serve does.
type verifierAuth struct{ v *auth.Verifier }

func (a verifierAuth) Authenticate(ctx context.Context, header string) (retriever.Identity, error) {
	id, err := a.v.Verify(ctx, header)
	if err != nil {
		return retriever.Identity{}, err
	}
	return retriever.Identity{Subject: id.Subject, Agent: id.Agent}, nil
}

// testServer is one retriever over HTTP with its own audit writer.
type testServer struct {
	*httptest.Server
	srv    *retriever.Server
	writer *audit.Writer
	log    *syncBuffer
	now    time.Time // the server's clock: every audit record's decided_at
}

type serverOptions struct {
	pool *pgxpool.Pool // default: the fixture's
	// auditPool is where the audit writer writes; default the fixture's.
	auditPool *pgxpool.Pool
	now       time.Time // default: fixedNow
	embedder  retriever.Embedder
}

// newServer builds a retriever on the fixture's database (or opt.pool) with
// the masked demo policy, a real verifier and a real audit writer.
func newServer(t *testing.T, opt serverOptions) *testServer {
	t.Helper()
	f := sharedEnv(t)
	if opt.pool == nil {
		opt.pool = f.pool
	}
	if opt.auditPool == nil {
		opt.auditPool = f.pool
	}
	if opt.now.IsZero() {
		opt.now = fixedNow
	}
	ts := &testServer{log: &syncBuffer{}, now: opt.now}
	logger := slog.New(slog.NewJSONHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := audit.New(opt.auditPool, audit.Config{FlushInterval: 10 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ts.writer = w
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if opt.auditPool != f.pool {
			// Records for a database that is down are lost, as they must be.
			ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		}
		defer cancel()
		if err := w.Close(ctx); err != nil && opt.auditPool == f.pool {
			t.Errorf("audit writer close: %v", err)
		}
	})
	now := opt.now
	ts.srv, err = retriever.New(retriever.Config{
		Pool: opt.pool, Policies: retriever.StaticPolicy(f.policy), Auth: verifierAuth{f.verifier},
		Audit: w, Logger: logger, Now: func() time.Time { return now }, Embedder: opt.embedder,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = httptest.NewServer(ts.srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// syncBuffer is a log sink for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// user returns the demo user with id.
func (f *e2eFixture) user(t testing.TB, id string) demoUser {
	t.Helper()
	for _, u := range f.data.Users {
		if u.ID == id {
			return demoUser{ID: u.ID, Tenant: u.TenantID, Roles: u.Roles, Groups: u.Groups, Clearance: int(u.Clearance)}
		}
	}
	t.Fatalf("no demo user %q", id)
	return demoUser{}
}

type demoUser struct {
	ID, Tenant    string
	Roles, Groups []string
	Clearance     int
}

// token mints a valid token for the demo user, acting through agent if set.
func (f *e2eFixture) token(t testing.TB, userID, agent string) string {
	t.Helper()
	u := f.user(t, userID)
	return mintToken(t, auth.MintClaims{Subject: u.ID, Tenant: u.Tenant, Roles: u.Roles, Groups: u.Groups,
		Attributes: map[string]any{"clearance": u.Clearance}, Agent: agent, IssuedAt: fixedNow})
}

func mintToken(t testing.TB, c auth.MintClaims) string {
	t.Helper()
	tok, err := auth.Mint(testSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// topic returns the centre of demo topic i: a query vector with many
// chunks near it.
func (f *e2eFixture) topic(i int) []float32 { return f.data.Topics[i%len(f.data.Topics)].Centre }

// reply is one HTTP exchange's answer.
type reply struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

// decisionID is the X-Decision-Id header.
func (r reply) decisionID() string { return r.header.Get("X-Decision-Id") }

// errorCode is error.code of an error body, or "".
func (r reply) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// response decodes a 200 /v1/retrieve body.
func (r reply) response(t testing.TB) retriever.Response {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s %s: status %d, want 200: %s", r.method, r.path, r.status, r.body)
	}
	var resp retriever.Response
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return resp
}

func (r reply) String() string {
	return fmt.Sprintf("%s %s -> %d %s", r.method, r.path, r.status, r.body)
}

// httpDo sends one request and checks the answer against the OpenAPI document
// (see openapi_test.go): every answer of every test is checked.
func httpDo(t testing.TB, method, url, contentType, authorization string, body []byte) reply {
	t.Helper()
	r, err := httpSend(http.DefaultClient, method, url, contentType, authorization, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	checkAgainstOpenAPI(t, r)
	return r
}

func httpSend(client *http.Client, method, url, contentType, authorization string, body []byte) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{method: method, path: req.URL.Path, status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// retrieve posts body (marshalled unless it is []byte) to /v1/retrieve with
// token as the bearer token ("" for none), and checks the answer carries a
// decision id.
func (ts *testServer) retrieve(t testing.TB, token string, body any) reply {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	authz := ""
	if token != "" {
		authz = "Bearer " + token
	}
	r := httpDo(t, http.MethodPost, ts.URL+"/v1/retrieve", "application/json", authz, raw)
	if r.decisionID() == "" {
		t.Errorf("%v: no X-Decision-Id header", r)
	}
	return r
}

// retrieveBody is a /v1/retrieve body.
type retrieveBody struct {
	Collection string         `json:"collection"`
	Embedding  []float32      `json:"embedding"`
	K          int            `json:"k,omitempty"`
	Filter     map[string]any `json:"filter,omitempty"`
	MinScore   *float64       `json:"min_score,omitempty"`
	Explain    bool           `json:"explain,omitempty"`
}

// wantError checks an error answer's status and error.code.
func wantError(t testing.TB, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.errorCode() != code {
		t.Errorf("%v: want %d %s", r, status, code)
	}
}

// ids returns the results' ids, in order.
func resultIDs(resp retriever.Response) []string {
	out := make([]string, len(resp.Results))
	for i, r := range resp.Results {
		out[i] = r.ID
	}
	return out
}

// chunkRow is what the tests check of a returned chunk, read straight from
// the table.
type chunkRow struct {
	tenant, owner, visibility, source string
	acl                               []string
	classification                    int
	metadata                          map[string]any
	distance                          float64
}

// chunks reads the rows with ids, and each one's cosine distance to q.
func (f *e2eFixture) chunks(t testing.TB, ids []string, q []float32) map[string]chunkRow {
	t.Helper()
	ctx := context.Background()
	rows, err := f.pool.Query(ctx, `SELECT id::text, tenant_id, owner_id, visibility, source, acl_groups, classification, metadata,
			embedding <=> $2::float4[]::vector
		FROM chunks WHERE id::text = ANY($1)`, ids, q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]chunkRow{}
	for rows.Next() {
		var id string
		var c chunkRow
		if err := rows.Scan(&id, &c.tenant, &c.owner, &c.visibility, &c.source, &c.acl, &c.classification, &c.metadata, &c.distance); err != nil {
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

// visibleSQL restates the demo policy for a user independently of ragfence:
// the oracle the answers are checked against. $1 tenant, $2 user id,
// $3 groups, $4 roles, $5 clearance.
const visibleSQL = `c.tenant_id = $1
	AND (c.visibility = 'tenant'
		OR (c.visibility = 'group' AND c.acl_groups && $3::text[])
		OR c.owner_id = $2
		OR EXISTS (SELECT 1 FROM document_grants g WHERE g.tenant_id = $1 AND g.document_id = c.document_id AND g.user_id = $2)
		OR 'admin' = ANY ($4::text[]))
	AND c.classification <= $5`

// invisible returns the ids among ids that u may not see by the oracle.
func (f *e2eFixture) invisible(t testing.TB, u demoUser, ids []string) []string {
	t.Helper()
	var out []string
	err := f.pool.QueryRow(context.Background(),
		`SELECT coalesce(array_agg(c.id::text ORDER BY c.id), '{}') FROM chunks c
		 WHERE c.id::text = ANY($6) AND NOT (`+visibleSQL+`)`,
		u.Tenant, u.ID, u.Groups, u.Roles, u.Clearance, ids).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exactTopK returns the ids of the k chunks nearest q that u may see, by a
// sequential scan: the answer an exact search would give.
func (f *e2eFixture) exactTopK(t testing.TB, u demoUser, q []float32, k int, extra string) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
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
	rows, err := tx.Query(ctx, `SELECT c.id::text FROM chunks c WHERE `+visibleSQL+` AND (`+extra+`)
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

// auditRow is a row of ragfence.audit_log.
type auditRow struct {
	decidedAt                                   time.Time
	subject, tenant, resource, outcome, version string
	agent                                       *string
	rules, rowIDs                               []string
	rowCount                                    int
	latencyMS                                   float64
	detail                                      map[string]any
}

// auditRows reads the audit rows of the decision ids.
func (f *e2eFixture) auditRows(t testing.TB, ids []string) map[string]auditRow {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT decision_id, decided_at, subject, tenant, resource, outcome,
			policy_version, agent, rules, row_ids, row_count, latency_ms, detail
		FROM ragfence.audit_log WHERE decision_id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]auditRow{}
	for rows.Next() {
		var id string
		var a auditRow
		if err := rows.Scan(&id, &a.decidedAt, &a.subject, &a.tenant, &a.resource, &a.outcome, &a.version,
			&a.agent, &a.rules, &a.rowIDs, &a.rowCount, &a.latencyMS, &a.detail); err != nil {
			t.Fatal(err)
		}
		out[id] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// closeWriter flushes and stops ts's audit writer.
func (ts *testServer) closeWriter(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.writer.Close(ctx); err != nil {
		t.Fatalf("audit writer close: %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }
