package mcpserver_test

// Red-team tests of authenticate's scope check, without a database: the
// server runs with a fake authenticator (the token's text is its scopes)
// and a fake audit log, which says which tool the SDK dispatched. A call
// the scope check lets through reaches its tool, and the tool's audit
// record names it, whether or not the tool then succeeds.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/mcpserver"
	"github.com/ragfence/ragfence/retriever/service"
)

// scopeAuth accepts "Bearer <scopes, comma-separated>" for one user.
type scopeAuth struct{}

func (scopeAuth) Authenticate(_ context.Context, h string) (service.Identity, error) {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return service.Identity{}, &retriever.Error{Code: retriever.CodeUnauthenticated, Msg: "no token"}
	}
	scopes := strings.Split(tok, ",")
	if tok == "none" {
		scopes = nil
	}
	return service.Identity{Subject: &policy.Subject{ID: "u", Tenant: "acme", Attributes: map[string]any{"clearance": json.Number("3")}},
		Scopes: scopes, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// toolLog is an AuditLog that keeps the tool of each record.
type toolLog struct {
	mu    sync.Mutex
	tools []string
}

func (l *toolLog) Enqueue(_ context.Context, r audit.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	tool, _ := r.Detail["tool"].(string)
	if tool != "" { // a refusal before any tool ran names none
		l.tools = append(l.tools, tool)
	}
	return nil
}
func (l *toolLog) Depth() int     { return 0 }
func (l *toolLog) Healthy() error { return nil }
func (l *toolLog) ran() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tools...)
}

// newScopeServer is the MCP endpoint over the demo policy, with scopes
// required (and per collection when collectionScopes).
func newScopeServer(t *testing.T, collectionScopes bool) (string, *toolLog) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, demo.Policy, 0o644); err != nil {
		t.Fatal(err)
	}
	policies, err := retriever.NewPolicyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	// A pool that is never reached: nothing here needs rows.
	pool, err := pgxpool.New(context.Background(), "postgres://ragfence@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := &toolLog{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := service.New(service.Config{Pool: pool, Policies: policies, Auth: scopeAuth{}, Audit: log, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mcpserver.New(mcpserver.Config{Service: svc, Auth: scopeAuth{}, Resource: "https://rag.test/mcp",
		AuthorizationServers: []string{"https://auth.test"}, RequireScopes: true, CollectionScopes: collectionScopes,
		Collections: policies.Load().Set().Names, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL + mcpserver.Path, log
}

type answer struct {
	status    int
	challenge string
	session   string
	body      []byte
}

func post(t *testing.T, url, token, session, proto string, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if proto != "" {
		req.Header.Set("Mcp-Protocol-Version", proto)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Mcp-Session-Id"), b}
}

// session opens an initialized session for token.
func session(t *testing.T, url, token string) string {
	t.Helper()
	a := post(t, url, token, "", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if a.status != http.StatusOK || a.session == "" {
		t.Fatalf("initialize: %d %s", a.status, a.body)
	}
	if a := post(t, url, token, a.session, "2025-06-18", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); a.status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", a.status, a.body)
	}
	return a.session
}

// dispatched reports whether the SDK answered JSON-RPC id 7 with a tool
// result (the tool ran), from a JSON or event-stream body.
func dispatched(a answer) bool {
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "data:")
		var m struct {
			ID     any             `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.ID == float64(7) && len(m.Result) > 0 {
			return true
		}
	}
	return false
}

// The scope check must read a JSON-RPC body as the SDK dispatches it.
// encoding/json (authenticate) matches names in any letter case and takes
// the last; the SDK (segmentio/encoding, DontMatchCaseInsensitiveStructFields)
// matches them exactly. encoding/json refuses data after the value and a
// value of the wrong type, and authenticate then requires no scope; the
// SDK reads the first value and ignores names it does not know.
func TestRedteamScopeCheckParserDifferential(t *testing.T) {
	url, log := newScopeServer(t, false)
	const token = "ragfence:access" // no ragfence:query
	sid := session(t, url, token)
	const args = `"arguments":{"sql":"SELECT id FROM chunks"}`
	sql := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query",` + args + `}}`
	for _, tc := range []struct {
		name, body string
		batch      bool
	}{
		{name: "plain", body: sql},
		{name: "name twice", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"access","name":"sql_query",` + args + `}}`},
		{name: "escaped name", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql\u005fquery",` + args + `}}`},
		{name: "batch", body: "[" + sql + "]", batch: true},
		{name: "Name", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query","Name":"access",` + args + `}}`},
		{name: "METHOD", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","METHOD":"ping","params":{"name":"sql_query",` + args + `}}`},
		{name: "Method of another type", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","Method":0,"params":{"name":"sql_query",` + args + `}}`},
		{name: "trailing value", body: sql + "{}"},
		{name: "trailing bracket", body: sql + "]"},
		{name: "trailing NUL", body: sql + "\x00"},
		{name: "batch with a mistyped ping", body: "[" + sql + `,{"jsonrpc":"2.0","id":8,"method":"ping","params":{"name":1}}]`, batch: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(log.ran())
			proto := "2025-06-18"
			if tc.batch {
				proto = ""
			}
			a := post(t, url, token, sid, proto, tc.body)
			ran := log.ran()[before:]
			if dispatched(a) || len(ran) > 0 {
				t.Fatalf("scope bypass: HTTP %d, tools run %v, for a token without ragfence:query", a.status, ran)
			}
			// A body two readers could read apart is refused as ambiguous
			// (400 invalid_request) before any scope is judged.
			scoped := a.status == http.StatusForbidden && strings.Contains(a.challenge, `scope="ragfence:query"`)
			ambiguous := a.status == http.StatusBadRequest && strings.Contains(a.challenge, `error="invalid_request"`)
			if !scoped && !ambiguous {
				t.Errorf("HTTP %d %q, want 403 naming ragfence:query or 400 invalid_request", a.status, a.challenge)
			}
		})
	}
}

// With per-collection scopes, the collection authenticate reads must be
// the one the tool searches.
func TestRedteamCollectionScopeParserDifferential(t *testing.T) {
	url, log := newScopeServer(t, true)
	const token = "ragfence:retrieve:public"
	sid := session(t, url, token)
	call := func(params string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":` + params + `}`
	}
	for _, tc := range []struct{ name, body string }{
		{"plain", call(`{"name":"retrieve","arguments":{"collection":"chunks","embedding":[1,0]}}`)},
		{"collection twice", call(`{"name":"retrieve","arguments":{"collection":"public","collection":"chunks","embedding":[1,0]}}`)},
		{"Arguments beside arguments", call(`{"name":"retrieve","arguments":{"collection":"chunks","embedding":[1,0]},"Arguments":{"collection":"public"}}`)},
		{"Collection beside collection", call(`{"name":"retrieve","arguments":{"collection":"chunks","Collection":"public","embedding":[1,0]}}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(log.ran())
			a := post(t, url, token, sid, "2025-06-18", tc.body)
			// The SDK refuses arguments its schema does not know before the
			// tool runs; a run tool is the bypass.
			if ran := log.ran()[before:]; len(ran) > 0 {
				t.Fatalf("collection scope bypass: HTTP %d, tools run %v, for a token scoped to public", a.status, ran)
			}
		})
	}
}
