package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/httpapi"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
)

// The HTTP tests share one seeded database per test binary (see package
// e2e); every test builds its own server and audit writer on it.

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// testServer is one retriever over HTTP with its own audit writer.
type testServer struct {
	*httptest.Server
	srv    *httpapi.Server
	writer *audit.Writer
	log    *syncBuffer
	now    time.Time // the server's clock: every audit record's decided_at
}

type serverOptions struct {
	pool *pgxpool.Pool // default: the fixture's
	// auditPool is where the audit writer writes; default the fixture's.
	auditPool *pgxpool.Pool
	now       time.Time // default: e2e.FixedNow
	embedder  service.Embedder
}

// newServer builds a retriever on the fixture's database (or opt.pool) with
// the masked demo policy, a real verifier and a real audit writer.
func newServer(t *testing.T, opt serverOptions) *testServer {
	t.Helper()
	f := e2e.Shared(t)
	if opt.pool == nil {
		opt.pool = f.Pool
	}
	if opt.auditPool == nil {
		opt.auditPool = f.Pool
	}
	if opt.now.IsZero() {
		opt.now = e2e.FixedNow
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
		if opt.auditPool != f.Pool {
			// Records for a database that is down are lost, as they must be.
			ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		}
		defer cancel()
		if err := w.Close(ctx); err != nil && opt.auditPool == f.Pool {
			t.Errorf("audit writer close: %v", err)
		}
	})
	now := opt.now
	svc, err := service.New(service.Config{
		Pool: opt.pool, Policies: retriever.StaticPolicy(f.Policy), Auth: service.TokenAuth{Verifier: f.Verifier},
		Audit: w, Logger: logger, Now: func() time.Time { return now }, Embedder: opt.embedder,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ts.srv, err = httpapi.New(httpapi.Config{Service: svc, Logger: logger}); err != nil {
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
func (r reply) response(t testing.TB) service.Response {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s %s: status %d, want 200: %s", r.method, r.path, r.status, r.body)
	}
	var resp service.Response
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

// resultIDs returns the results' ids, in order.
func resultIDs(resp service.Response) []string {
	out := make([]string, len(resp.Results))
	for i, r := range resp.Results {
		out[i] = r.ID
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
