package main

// Red-team tests of the MCP front door (issue 15): the scope check, the
// audience, session binding, identity, sql_query, token passthrough and
// the challenges. Each test fails when a defence breaks and passes while
// it holds; every server and fake runs on loopback.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ragfence/ragfence/internal/testdb"
)

// rtClient bounds every raw request of these tests.
var rtClient = &http.Client{Timeout: 8 * time.Second}

// rtAnswer is one raw answer of /mcp: the status, the challenge, the
// headers and the JSON-RPC messages of the body (a JSON body or the data
// of its server-sent events).
type rtAnswer struct {
	status    int
	challenge string
	header    http.Header
	body      []byte
	msgs      []map[string]any
}

// rtPost sends body to /mcp as an MCP host would (or as an attacker
// would: body is sent byte for byte). proto, when set, is the
// Mcp-Protocol-Version header; without it the SDK assumes 2025-03-26,
// which still allows JSON-RPC batches.
func rtPost(t *testing.T, url, token, session, proto string, body []byte) rtAnswer {
	t.Helper()
	return rtDo(t, http.MethodPost, url, token, session, proto, body)
}

func rtDo(t *testing.T, method, url, token, session, proto string, body []byte) rtAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if proto != "" {
		req.Header.Set("Mcp-Protocol-Version", proto)
	}
	resp, err := rtClient.Do(req)
	if err != nil {
		t.Fatalf("%s /mcp: %v", method, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := rtAnswer{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), header: resp.Header, body: raw}
	decode := func(b []byte) {
		b = bytes.TrimSpace(b)
		var many []map[string]any
		if json.Unmarshal(b, &many) == nil {
			a.msgs = append(a.msgs, many...)
			return
		}
		var one map[string]any
		if json.Unmarshal(b, &one) == nil {
			a.msgs = append(a.msgs, one)
		}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				decode([]byte(data))
			}
		}
	} else if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		decode(raw)
	}
	return a
}

const rtProto = "2025-06-18"

// rtSession opens an initialized MCP session with token, by hand, and
// returns its id.
func (e *accessEnv) rtSession(t *testing.T, token string) string {
	t.Helper()
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + rtProto +
		`","capabilities":{},"clientInfo":{"name":"redteam","version":"1"}}}`)
	a := rtPost(t, e.urls[0]+"/mcp", token, "", "", init)
	sid := a.header.Get("Mcp-Session-Id")
	if a.status != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %q %s", a.status, a.challenge, a.body)
	}
	if a := rtPost(t, e.urls[0]+"/mcp", token, sid, rtProto, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); a.status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", a.status, a.body)
	}
	return sid
}

// toolRan is the result of the tools/call with JSON-RPC id in a, when the
// tool ran and answered without a tool error.
func (a rtAnswer) toolRan(id float64) (map[string]any, bool) {
	for _, m := range a.msgs {
		if m["id"] != id {
			continue
		}
		res, ok := m["result"].(map[string]any)
		if !ok || res["isError"] == true {
			return nil, false
		}
		sc, _ := res["structuredContent"].(map[string]any)
		return sc, sc != nil
	}
	return nil, false
}

// demoArgs are the retrieve tool's arguments for the demo query.
func (e *accessEnv) demoArgs(t *testing.T) map[string]any {
	t.Helper()
	var q map[string]any
	if err := json.Unmarshal(e.query, &q); err != nil {
		t.Fatal(err)
	}
	return q
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A token without ragfence:query must never run sql_query, whichever way
// the JSON-RPC body is spelled. authenticate reads the body with
// encoding/json (names matched in any letter case, the last one wins, and
// a body it cannot decode needs no scope); the SDK reads it with
// segmentio/encoding in exact case and stops at the first JSON value. Each
// spelling below is one the SDK dispatches as tools/call of sql_query.
func TestRedteamMCPScopeCheckReadsTheBodyAsTheSDKDoes(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	token := env.mcpToken(t, "rt-scope", "", mcpResource, []string{"ragfence:access"}, 10*time.Minute)
	sid := env.rtSession(t, token)
	const args = `"arguments":{"sql":"SELECT id FROM chunks ORDER BY id","limit":3}`
	sql := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query",` + args + `}}`
	for _, tc := range []struct {
		name, body string
		batch      bool // sent without Mcp-Protocol-Version, so that the SDK takes a batch
	}{
		// Spellings both readers agree on: refused today.
		{name: "plain", body: sql},
		{name: "duplicate name, the last one is sql_query", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"access","name":"sql_query",` + args + `}}`},
		{name: "unicode escape in the tool name", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql\u005fquery",` + args + `}}`},
		{name: "unicode escape in the key", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"n\u0061me":"sql_query",` + args + `}}`},
		{name: "escaped method", body: `{"jsonrpc":"2.0","id":7,"method":"tools\/call","params":{"name":"sql_query",` + args + `}}`},
		{name: "batch", body: `[` + sql + `]`, batch: true},
		{name: "batch behind a ping", body: `[{"jsonrpc":"2.0","id":6,"method":"ping"},` + sql + `]`, batch: true},
		// Spellings the two readers disagree on.
		{name: "params.Name in another letter case", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query","Name":"access",` + args + `}}`},
		{name: "METHOD in another letter case", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","METHOD":"ping","params":{"name":"sql_query",` + args + `}}`},
		{name: "data after the JSON object", body: sql + ` {}`},
		{name: "a closing bracket after the JSON object", body: sql + `]`},
		{name: "Params of another type, in another letter case", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query",` + args + `},"Params":0}`},
		{name: "batch with a ping whose params encoding/json cannot type", body: `[` + sql + `,{"jsonrpc":"2.0","id":8,"method":"ping","params":{"name":1}}]`, batch: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proto := rtProto
			if tc.batch {
				proto = ""
			}
			a := rtPost(t, env.urls[0]+"/mcp", token, sid, proto, []byte(tc.body))
			if rows, ran := a.toolRan(7); ran {
				t.Fatalf("scope bypass: sql_query ran for a token with only ragfence:access (HTTP %d): %s", a.status, mustJSON(t, rows))
			}
			// A body two readers could read apart is refused as ambiguous
			// (400 invalid_request) before any scope is judged.
			scoped := a.status == http.StatusForbidden && strings.Contains(a.challenge, `error="insufficient_scope"`)
			ambiguous := a.status == http.StatusBadRequest && strings.Contains(a.challenge, `error="invalid_request"`)
			if !scoped && !ambiguous {
				t.Errorf("HTTP %d %q, want 403 insufficient_scope or 400 invalid_request: %s", a.status, a.challenge, a.body)
			}
		})
	}
}

// With --mcp-collection-scopes, retrieve on chunks needs
// ragfence:retrieve:chunks. A token scoped to another collection must not
// reach chunks by naming that collection where authenticate reads it and
// chunks where the SDK does.
func TestRedteamMCPCollectionScopeCannotBeSteered(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test",
		"--mcp-collection-scopes")
	// The token may retrieve from a collection "public" only.
	token := env.mcpToken(t, "rt-coll", "", mcpResource, []string{"ragfence:retrieve:public", "ragfence:access"}, 10*time.Minute)
	sid := env.rtSession(t, token)
	q := env.demoArgs(t)
	q["collection"] = "chunks"
	chunks := mustJSON(t, q)
	q["collection"] = "public"
	public := mustJSON(t, q)
	q["collection"] = "CHUNKS"
	upper := mustJSON(t, q)
	call := func(params string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":` + params + `}`
	}
	for _, tc := range []struct {
		name, body string
	}{
		{"plain", call(`{"name":"retrieve","arguments":` + chunks + `}`)},
		{"collection named twice, chunks last", call(`{"name":"retrieve","arguments":` + strings.Replace(chunks, `{`, `{"collection":"public",`, 1) + `}`)},
		{"Collection in another letter case inside arguments", call(`{"name":"retrieve","arguments":` + strings.Replace(chunks, `{`, `{"Collection":"public",`, 1) + `}`)},
		{"collection in upper case", call(`{"name":"retrieve","arguments":` + upper + `}`)},
		{"Arguments in another letter case beside arguments", call(`{"name":"retrieve","arguments":` + chunks + `,"Arguments":` + public + `}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := rtPost(t, env.urls[0]+"/mcp", token, sid, rtProto, []byte(tc.body))
			if out, ran := a.toolRan(7); ran {
				if results, _ := out["results"].([]any); len(results) > 0 {
					t.Fatalf("collection scope bypass: a token for ragfence:retrieve:public got %d chunks (HTTP %d)", len(results), a.status)
				}
			}
		})
	}
}

// slackQuery is the demo query restricted to slack chunks: the user sees
// some, the summarizer (wiki and drive only) none.
func (e *accessEnv) slackQuery(t *testing.T) map[string]any {
	t.Helper()
	q := e.demoArgs(t)
	q["filter"] = map[string]any{"source": "slack"}
	q["k"] = 10
	return q
}

// v1IDs are the ids /v1/retrieve answers token for q, and the status.
func (e *accessEnv) v1IDs(t *testing.T, token string, q map[string]any, header map[string]string) ([]string, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.urls[0]+"/v1/retrieve", strings.NewReader(mustJSON(t, q)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := rtClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Results []struct{ ID string } }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	ids := []string{}
	for _, r := range out.Results {
		ids = append(ids, r.ID)
	}
	return ids, resp.StatusCode
}

// An MCP token is minted for the MCP resource and names the OAuth client,
// the agent. On the HTTP API, when serve has no --audience (as in the
// README's example), it must not be worth more than on /mcp. The API's
// verifier does not read the client claim, so the agent's token speaks
// for its user alone: beyond the agent's grant, without any scope, and
// able to decide its user's approvals.
func TestRedteamMCPTokenIsNotAUserTokenOnTheHTTPAPI(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	// The summarizer's MCP token, with the access scope only.
	agentMCP := env.mcpToken(t, "rt-v1", "summarizer", mcpResource, []string{"ragfence:access"}, 10*time.Minute)
	q := env.slackQuery(t)
	asUser, _ := env.v1IDs(t, env.token(t, "rt-v1", "", ""), q, nil)
	asAgent, _ := env.v1IDs(t, env.token(t, "rt-v1", "summarizer", ""), q, nil)
	if len(asUser) == 0 || len(asAgent) != 0 {
		t.Fatalf("fixture: the user sees %d slack chunks, the summarizer %d; want some and none", len(asUser), len(asAgent))
	}
	got, status := env.v1IDs(t, agentMCP, q, nil)
	if status == http.StatusOK && len(got) > 0 {
		t.Errorf("the summarizer's MCP token (aud %s, client_id summarizer, scope ragfence:access) on /v1/retrieve "+
			"got %d slack chunks, the summarizer's grant allows none (its user's answer: %v)", mcpResource, len(got), slices.Equal(got, asUser))
	}
	// The agent's MCP token must not decide its user's approvals.
	ask := map[string]any{"collection": "chunks", "rule": "classified", "reason": "red team"}
	var req approvalAnswer
	if status, code := env.call(t, 0, http.MethodPost, "/v1/approvals", env.token(t, "rt-v1", "summarizer", ""), ask, &req); status != http.StatusCreated {
		t.Fatalf("the summarizer asks: %d %s", status, code)
	}
	if status, _ := env.call(t, 0, http.MethodPost, "/v1/approvals/"+req.ID+"/approve", agentMCP, nil, nil); status == http.StatusOK {
		t.Errorf("the summarizer's MCP token approved the summarizer's own request for classified rows, as its user")
	}
}

// Audience (RFC 8707): aud must contain the resource exactly.
func TestRedteamMCPAudienceIsExact(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	mint := func(aud any) string {
		claims := map[string]any{"sub": "rt-aud", "tenant": "acme", "clearance": 3, "scope": strings.Join(allScopes, " "),
			"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()}
		if aud != nil {
			claims["aud"] = aud
		}
		return rtSign(t, env.secret, claims)
	}
	for _, tc := range []struct {
		name   string
		aud    any
		status int
	}{
		{"a list holding the resource", []any{"https://other.test/api", mcpResource}, http.StatusOK},
		{"the resource", mcpResource, http.StatusOK},
		{"a list without the resource", []any{"https://other.test/api", "https://rag.test/"}, http.StatusUnauthorized},
		{"a prefix", "https://rag.test/mc", http.StatusUnauthorized},
		{"the origin", "https://rag.test", http.StatusUnauthorized},
		{"a suffix", mcpResource + "/extra", http.StatusUnauthorized},
		{"a longer path", mcpResource + "x", http.StatusUnauthorized},
		{"a trailing slash", mcpResource + "/", http.StatusUnauthorized},
		{"http instead of https", "http://rag.test/mcp", http.StatusUnauthorized},
		{"another port", "https://rag.test:8443/mcp", http.StatusUnauthorized},
		{"a query", mcpResource + "?x=1", http.StatusUnauthorized},
		{"an empty list", []any{}, http.StatusUnauthorized},
		{"an empty string", "", http.StatusUnauthorized},
		{"a number", 1, http.StatusUnauthorized},
		{"none", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := rtPost(t, env.urls[0]+"/mcp", mint(tc.aud), "", "", init)
			if a.status != tc.status {
				t.Errorf("aud %v: %d, want %d (%s)", tc.aud, a.status, tc.status, a.body)
			}
			if tc.status == http.StatusUnauthorized && !strings.Contains(a.challenge, `error="invalid_token"`) {
				t.Errorf("aud %v: challenge %q", tc.aud, a.challenge)
			}
		})
	}
}

// rtSign signs claims as the demo's authorization server would.
func rtSign(t *testing.T, secret []byte, claims map[string]any) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A session is bound to the user and the client that opened it, and dies
// with their right to use it.
func TestRedteamMCPSessionBinding(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	url := env.urls[0] + "/mcp"
	alice := env.mcpToken(t, "rt-alice", "", mcpResource, allScopes, 10*time.Minute)
	sid := env.rtSession(t, alice)
	list := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	if a := rtPost(t, url, alice, sid, rtProto, list); a.status != http.StatusOK {
		t.Fatalf("alice's own session: %d %s", a.status, a.body)
	}
	claims := func(extra map[string]any) string {
		c := map[string]any{"sub": "rt-alice", "tenant": "acme", "clearance": 3, "aud": mcpResource, "scope": strings.Join(allScopes, " "),
			"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return rtSign(t, env.secret, c)
	}
	others := []struct{ name, token string }{
		{"another user", env.mcpToken(t, "rt-mallory", "", mcpResource, allScopes, 10*time.Minute)},
		{"the same user through another client", env.mcpToken(t, "rt-alice", "summarizer", mcpResource, allScopes, 10*time.Minute)},
		{"the same user through a client named by azp", claims(map[string]any{"azp": "summarizer"})},
		{"the same user with an act claim", claims(map[string]any{"act": map[string]any{"sub": "summarizer"}})},
		{"the same user id in another tenant", claims(map[string]any{"tenant": "globex"})},
	}
	for _, o := range others {
		t.Run(o.name, func(t *testing.T) {
			call := []byte(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"access","arguments":{}}}`)
			if a := rtPost(t, url, o.token, sid, rtProto, call); a.status == http.StatusOK || len(a.msgs) > 0 {
				t.Errorf("POST on alice's session: %d %s", a.status, a.body)
			}
			if a := rtDo(t, http.MethodGet, url, o.token, sid, rtProto, nil); a.status == http.StatusOK {
				t.Errorf("GET (the session's event stream) on alice's session: %d", a.status)
			}
			if a := rtDo(t, http.MethodDelete, url, o.token, sid, rtProto, nil); a.status < 400 {
				t.Errorf("DELETE of alice's session: %d", a.status)
			}
			if a := rtPost(t, url, alice, sid, rtProto, list); a.status != http.StatusOK {
				t.Fatalf("alice's session after the attempt: %d %s", a.status, a.body)
			}
		})
	}
	// Revoking alice ends her session's use at once, with the challenge.
	mustRun(t, ctx, "revoke", "--db", env.dsn, "--tenant", "acme", "--subject", "rt-alice")
	var a rtAnswer
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if a = rtPost(t, url, alice, sid, rtProto, list); a.status != http.StatusOK {
			break
		}
	}
	if a.status != http.StatusUnauthorized || !strings.Contains(a.challenge, `error="invalid_token"`) {
		t.Errorf("alice revoked, on her session: %d %q", a.status, a.challenge)
	}
	if a := rtDo(t, http.MethodGet, url, alice, sid, rtProto, nil); a.status != http.StatusUnauthorized {
		t.Errorf("alice revoked, GET on her session: %d", a.status)
	}
}

// Who the agent is: act first, then client_id, then azp; a client with no
// grant sees nothing, through either tool.
func TestRedteamMCPAgentIdentity(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	q := env.slackQuery(t)
	mint := func(extra map[string]any) string {
		c := map[string]any{"sub": "rt-id", "tenant": "acme", "clearance": 3, "aud": mcpResource, "scope": strings.Join(allScopes, " "),
			"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		return rtSign(t, env.secret, c)
	}
	if user, _ := env.v1IDs(t, env.token(t, "rt-id", "", ""), q, nil); len(user) == 0 {
		t.Fatal("fixture: the user sees no slack chunk")
	}
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"act summarizer, client_id of a client without a grant", mint(map[string]any{"act": map[string]any{"sub": "summarizer"}, "client_id": "unknown-host"})},
		{"act of an agent without a grant, client_id summarizer", mint(map[string]any{"act": map[string]any{"sub": "unknown-host"}, "client_id": "summarizer"})},
		{"azp summarizer", mint(map[string]any{"azp": "summarizer"})},
		{"client_id without a grant, azp summarizer", mint(map[string]any{"client_id": "unknown-host", "azp": "summarizer"})},
		{"client_id summarizer, another user", mint(map[string]any{"sub": "rt-id-other", "client_id": "summarizer"})},
		{"client_id in upper case", mint(map[string]any{"client_id": "summarizer", "CLIENT_ID": "x"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := rtPost(t, env.urls[0]+"/mcp", tc.token, "", "", []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
			if a.status == http.StatusUnauthorized {
				return // refused outright: nothing to see
			}
			s := env.mcpSession(t, tc.token)
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "retrieve", Arguments: q})
			if err != nil {
				t.Fatal(err)
			}
			var out struct{ Results []any }
			_ = json.Unmarshal([]byte(fmtJSON(res.StructuredContent)), &out)
			if !res.IsError && len(out.Results) > 0 {
				t.Errorf("retrieve: %d slack chunks, beyond the summarizer's grant", len(out.Results))
			}
			res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "sql_query", Arguments: map[string]any{"sql": "SELECT id FROM chunks WHERE source = 'slack'"}})
			if err != nil {
				t.Fatal(err)
			}
			var rows struct{ Rows []any }
			_ = json.Unmarshal([]byte(fmtJSON(res.StructuredContent)), &rows)
			if !res.IsError && len(rows.Rows) > 0 {
				t.Errorf("sql_query: %d slack rows, beyond the summarizer's grant", len(rows.Rows))
			}
		})
	}
}

// Behind a trusted proxy, context.ip is the client's (X-Forwarded-For) on
// /v1/retrieve. The MCP endpoint must evaluate the same policy with the
// same address, or a rule on context.ip holds for every MCP call made
// through the proxy.
func TestRedteamMCPClientAddressBehindTrustedProxy(t *testing.T) {
	ctx := context.Background()
	offNetwork := func(p string) string {
		return strings.Replace(p, "        when: classification > subject.clearance\n",
			"        when: classification > subject.clearance\n"+
				"      - name: off-network\n"+
				"        when: NOT (context.ip << '10.0.0.0/8'::inet OR context.ip << '127.0.0.0/8'::inet)\n", 1)
	}
	env := newAccessEnv(t, ctx, testdb.Database(t), offNetwork, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test",
		"--trusted-proxies", "127.0.0.1/32")
	q := env.demoArgs(t)
	user := env.token(t, "rt-ip", "", "")
	if ids, _ := env.v1IDs(t, user, q, nil); len(ids) == 0 {
		t.Fatal("fixture: nothing visible from the proxy's own address")
	}
	external := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	if ids, status := env.v1IDs(t, user, q, external); status != http.StatusOK || len(ids) != 0 {
		t.Fatalf("fixture: /v1/retrieve from 203.0.113.9 through the proxy: %d, %d chunks; want none", status, len(ids))
	}
	tok := env.mcpToken(t, "rt-ip", "", mcpResource, allScopes, 10*time.Minute)
	hc := &http.Client{Timeout: 8 * time.Second, Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := mcp.NewClient(&mcp.Implementation{Name: "rt", Version: "1"}, nil)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: env.urls[0] + "/mcp", HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids, res := env.toolIDs(t, s)
	if res.IsError {
		t.Fatalf("retrieve tool: %+v", res.Content)
	}
	if len(ids) != 0 {
		t.Errorf("the retrieve tool from 203.0.113.9 through the trusted proxy got %d chunks that /v1/retrieve withholds (rule off-network on context.ip)", len(ids))
	}
	// The audit writer batches: poll briefly.
	addr := "(no record)"
	conn := env.db(t)
	for deadline := time.Now().Add(2 * time.Second); addr == "(no record)" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_ = conn.QueryRow(ctx, `SELECT coalesce(host(client_addr), '') FROM ragfence.audit_log
			WHERE subject = 'rt-ip' AND detail->>'channel' = 'mcp' ORDER BY id DESC LIMIT 1`).Scan(&addr)
	}
	if addr != "203.0.113.9" {
		t.Errorf("the MCP call's audit record has client_addr %q, want 203.0.113.9", addr)
	}
}

// No token is passed on: the embedder sees its own key, never the caller's
// token, in no header and no body.
func TestRedteamMCPTokenNeverReachesTheEmbedder(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var seen []string
	dim := 0
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b strings.Builder
		for k, vs := range r.Header {
			fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(vs, ","))
		}
		b.WriteString(r.URL.String() + "\n")
		b.Write(body)
		mu.Lock()
		seen = append(seen, b.String())
		n := dim
		mu.Unlock()
		v := make([]float64, n)
		v[0] = 1
		_ = json.NewEncoder(w).Encode(map[string]any{"data": []any{map[string]any{"index": 0, "embedding": v}}})
	}))
	defer fake.Close()
	keyFile := filepath.Join(t.TempDir(), "embed-key")
	writeFile(t, keyFile, []byte("rt-embedder-key\n"))
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test",
		"--embedder-url", fake.URL, "--embedder-model", "rt-model", "--embedder-key-file", keyFile)
	mu.Lock()
	dim = len(env.demoArgs(t)["embedding"].([]any))
	mu.Unlock()
	tok := env.mcpToken(t, "rt-embed", "", mcpResource, allScopes, 10*time.Minute)
	s := env.mcpSession(t, tok)
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "retrieve", Arguments: map[string]any{"collection": "chunks", "query": "quarterly revenue"}})
	if err != nil || res.IsError {
		t.Fatalf("retrieve by text: %v %+v", err, res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the embedder was never called")
	}
	sig := tok[strings.LastIndex(tok, ".")+1:]
	payload := strings.Split(tok, ".")[1]
	for _, req := range seen {
		if strings.Contains(req, sig) || strings.Contains(req, payload) {
			t.Errorf("the embedder received the caller's token:\n%s", req)
		}
		if !strings.Contains(req, "Authorization: Bearer rt-embedder-key\n") {
			t.Errorf("the embedder did not get its own key:\n%s", req)
		}
	}
}

// rtChallenge parses a WWW-Authenticate value of the Bearer scheme by RFC
// 7235's grammar (auth-param = token "=" quoted-string here), unquoting
// the values. ok is false when the value does not parse.
func rtChallenge(h string) (params map[string]string, ok bool) {
	rest, found := strings.CutPrefix(h, "Bearer ")
	if !found {
		return nil, false
	}
	params = map[string]string{}
	param := regexp.MustCompile(`^([!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+)="((?:[\t !#-\[\]-~\x{80}-\x{10FFFF}]|\\[\t -~\x{80}-\x{10FFFF}])*)"`)
	for {
		m := param.FindStringSubmatch(rest)
		if m == nil {
			return nil, false
		}
		params[m[1]] = regexp.MustCompile(`\\(.)`).ReplaceAllString(m[2], "$1")
		rest = rest[len(m[0]):]
		if rest == "" {
			return params, true
		}
		var sep bool
		if rest, sep = strings.CutPrefix(rest, ", "); !sep {
			return nil, false
		}
	}
}

// RFC 6750 section 3: scope is scope-token *( SP scope-token ) with
// scope-token = 1*( %x21 / %x23-5B / %x5D-7E ); error_description is
// %x20-21 / %x23-5B / %x5D-7E.
var (
	rtScopeList = regexp.MustCompile(`^[!#-\[\]-~]+( [!#-\[\]-~]+)*$`)
	rtDescChars = regexp.MustCompile(`^[ !#-\[\]-~]*$`)
)

// The challenges are RFC 6750 challenges: their syntax holds, whatever the
// caller sends, resource_metadata is the metadata URL of the configured
// resource (its port included) and serves that metadata, and a 403 names
// the one scope the call needs.
func TestRedteamMCPChallengesAreWellFormed(t *testing.T) {
	ctx := context.Background()
	const resource = "https://rag.test:8443/mcp"
	const metaURL = "https://rag.test:8443/.well-known/oauth-protected-resource/mcp"
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", resource, "--authorization-server", "https://auth.test",
		"--mcp-collection-scopes")
	url := env.urls[0] + "/mcp"
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	check := func(t *testing.T, a rtAnswer, status int, oauthErr string) map[string]string {
		t.Helper()
		if a.status != status {
			t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
		}
		p, ok := rtChallenge(a.challenge)
		if !ok {
			t.Fatalf("WWW-Authenticate %q does not parse as a Bearer challenge", a.challenge)
		}
		if p["resource_metadata"] != metaURL {
			t.Errorf("resource_metadata %q, want %q", p["resource_metadata"], metaURL)
		}
		if p["error"] != oauthErr {
			t.Errorf("error %q, want %q", p["error"], oauthErr)
		}
		if d, ok := p["error_description"]; ok && !rtDescChars.MatchString(d) {
			t.Errorf("error_description %q has characters RFC 6750 excludes", d)
		}
		if sc, ok := p["scope"]; ok && !rtScopeList.MatchString(sc) {
			t.Errorf("scope %q is not an RFC 6750 scope list", sc)
		}
		return p
	}
	t.Run("no token", func(t *testing.T) {
		p := check(t, rtPost(t, url, "", "", "", init), http.StatusUnauthorized, "")
		if p["scope"] == "" {
			t.Errorf("no scope in %v", p)
		}
	})
	t.Run("basic scheme", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(init))
		req.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
		resp, err := rtClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check(t, rtAnswer{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate")}, http.StatusUnauthorized, "")
	})
	t.Run("garbage token", func(t *testing.T) {
		check(t, rtPost(t, url, `a"b\c.é.`, "", "", init), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("wrong audience", func(t *testing.T) {
		check(t, rtPost(t, url, env.mcpToken(t, "rt-ch", "", mcpResource, allScopes, time.Minute), "", "", init), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("the metadata it names", func(t *testing.T) {
		for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
			resp, err := rtClient.Get(env.urls[0] + path)
			if err != nil {
				t.Fatal(err)
			}
			var meta struct {
				Resource        string   `json:"resource"`
				ScopesSupported []string `json:"scopes_supported"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&meta)
			resp.Body.Close()
			if meta.Resource != resource || !slices.Contains(meta.ScopesSupported, "ragfence:retrieve:chunks") {
				t.Errorf("%s: %+v", path, meta)
			}
		}
	})
	tok := env.mcpToken(t, "rt-ch", "", resource, []string{"ragfence:access"}, 10*time.Minute)
	sid := env.rtSession(t, tok)
	for _, coll := range []string{"chunks", `chunks", error="none`, "chunks ragfence:query", "chunks\\", "chünks"} {
		t.Run("403 for collection "+coll, func(t *testing.T) {
			body := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"retrieve","arguments":{"collection":` +
				mustJSON(t, coll) + `,"embedding":[1,0]}}}`
			p := check(t, rtPost(t, url, tok, sid, rtProto, []byte(body)), http.StatusForbidden, "insufficient_scope")
			if n := len(strings.Fields(p["scope"])); n != 1 {
				t.Errorf("scope %q names %d scopes; the call needs one", p["scope"], n)
			}
		})
	}
}

// rtToolText is a tool result's code (for an error) and its JSON.
func rtToolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String() + " " + fmtJSON(res.StructuredContent)
}

// sql_query through MCP: writes, several statements, error-based probes,
// dangerous functions, other tables and out-of-range limits are refused
// with a code and a message that quotes no row; arguments are values, not
// SQL; limit truncates exactly; every call is one audit record, without
// its arguments.
func TestRedteamMCPSQLQueryProbes(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	agent := env.mcpSession(t, env.mcpToken(t, "rt-sql", "summarizer", mcpResource, allScopes, 10*time.Minute))
	conn := env.db(t)
	// Values of rows the summarizer may not see, which no answer may quote.
	var hidden []string
	rows, err := conn.Query(ctx, `SELECT content FROM chunks WHERE source NOT IN ('wiki', 'drive') LIMIT 50`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		_ = rows.Scan(&c)
		hidden = append(hidden, c)
	}
	rows.Close()
	var before int
	_ = conn.QueryRow(ctx, "SELECT count(*) FROM chunks").Scan(&before)
	calls := 0
	sql := func(args map[string]any) *mcp.CallToolResult {
		t.Helper()
		calls++
		res, err := agent.CallTool(ctx, &mcp.CallToolParams{Name: "sql_query", Arguments: args})
		if err != nil {
			t.Fatalf("sql_query %v: %v", args, err)
		}
		text := rtToolText(res)
		for _, h := range hidden {
			if len(h) > 8 && strings.Contains(text, h) {
				t.Errorf("sql_query %v quoted a hidden row: %s", args, text)
			}
		}
		return res
	}
	for _, stmt := range []string{
		"SELECT 1; DELETE FROM chunks",
		"SELECT id FROM chunks; SELECT id FROM chunks",
		"UPDATE chunks SET content = 'x'",
		"INSERT INTO chunks (id) VALUES (-1)",
		"WITH d AS (DELETE FROM chunks RETURNING id) SELECT id FROM d",
		"SELECT id FROM chunks FOR UPDATE",
		"SELECT content::int FROM chunks",
		"SELECT id FROM chunks WHERE content::int > 0",
		"SELECT CASE WHEN source = 'slack' THEN 1/0 ELSE 1 END FROM chunks",
		"SELECT 1 / (classification - 5) FROM chunks",
		"SELECT pg_read_file('/etc/passwd')",
		"SELECT set_config('role', 'postgres', true)",
		"SELECT * FROM ragfence.audit_log",
		"SELECT * FROM ragfence.revocations",
		"SELECT rolname, rolpassword FROM pg_authid",
		"SELECT usename FROM pg_user",
		"SELECT * FROM document_grants",
		"COPY chunks TO STDOUT",
		"SELECT id FROM chunks c, LATERAL (SELECT pg_sleep(0)) s",
		"EXPLAIN SELECT id FROM chunks",
	} {
		res := sql(map[string]any{"sql": stmt})
		t.Logf("%s: %s", stmt, toolCode(res))
		if !res.IsError {
			t.Errorf("%s: answered %s", stmt, rtToolText(res))
		} else if toolCode(res) == "" {
			t.Errorf("%s: a refusal without a code: %s", stmt, rtToolText(res))
		}
	}
	var after int
	_ = conn.QueryRow(ctx, "SELECT count(*) FROM chunks").Scan(&after)
	if after != before {
		t.Errorf("chunks %d -> %d", before, after)
	}
	for _, limit := range []any{1001, 1000000, -1, 2147483648} {
		if res := sql(map[string]any{"sql": "SELECT id FROM chunks", "limit": limit}); !res.IsError {
			t.Errorf("limit %v: answered %d bytes", limit, len(rtToolText(res)))
		}
	}
	// Arguments are values: a quote in one is data.
	res := sql(map[string]any{"sql": "SELECT id FROM chunks WHERE source = $1", "args": []any{"wiki' OR source = 'slack"}})
	var quoted struct{ Rows []any }
	_ = json.Unmarshal([]byte(fmtJSON(res.StructuredContent)), &quoted)
	if res.IsError || len(quoted.Rows) != 0 {
		t.Errorf("a quote in an argument: %s", rtToolText(res))
	}
	res = sql(map[string]any{"sql": "SELECT $1::int", "args": []any{"rt-secret-arg-not-a-number"}})
	if !res.IsError || strings.Contains(rtToolText(res), "rt-secret-arg") {
		t.Errorf("an argument that does not cast: %s", rtToolText(res))
	}
	// Only the summarizer's rows, truncated exactly.
	var visible int
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM chunks WHERE tenant_id = 'acme' AND visibility = 'tenant' AND classification = 0 AND source IN ('wiki', 'drive')`).Scan(&visible)
	for _, limit := range []int{1, visible, 1000} {
		res := sql(map[string]any{"sql": "SELECT id, source FROM chunks WHERE visibility = 'tenant' AND classification = 0", "limit": limit})
		var out struct {
			Rows []struct {
				ID     json.Number
				Source string
			}
			Truncated bool
		}
		_ = json.Unmarshal([]byte(fmtJSON(res.StructuredContent)), &out)
		want := min(limit, visible)
		if res.IsError || len(out.Rows) != want || out.Truncated != (limit < visible) {
			t.Errorf("limit %d of %d visible rows: %d rows, truncated %v (%s)", limit, visible, len(out.Rows), out.Truncated, rtToolText(res)[:min(200, len(rtToolText(res)))])
		}
		for _, r := range out.Rows {
			if r.Source != "wiki" && r.Source != "drive" {
				t.Errorf("a %s row", r.Source)
			}
		}
	}
	// One audit record per call, channel mcp, tool sql_query, no argument.
	var n, leaked int
	for deadline := time.Now().Add(3 * time.Second); n < calls && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_ = conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE detail::text LIKE '%rt-secret-arg%' OR detail::text LIKE '%OR source%')
			FROM ragfence.audit_log WHERE subject = 'rt-sql' AND detail->>'channel' = 'mcp' AND detail->>'tool' = 'sql_query'`).Scan(&n, &leaked)
	}
	if n != calls || leaked != 0 {
		t.Errorf("%d sql_query calls, %d audit records (%d holding an argument)", calls, n, leaked)
	}
}

// A body over --max-body-bytes is refused before the SDK or a tool sees
// it; a caller without a token is refused whatever it sends, on every
// method.
func TestRedteamMCPBodiesAndMethods(t *testing.T) {
	ctx := context.Background()
	const max = 64 << 10
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test",
		"--max-body-bytes", fmt.Sprint(max))
	url := env.urls[0] + "/mcp"
	tok := env.mcpToken(t, "rt-body", "", mcpResource, allScopes, 10*time.Minute)
	sid := env.rtSession(t, tok)
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query","arguments":{"sql":"SELECT id FROM chunks","limit":1}}}`
	pad := func(n int) []byte { return []byte(call + strings.Repeat(" ", n-len(call))) }
	if a := rtPost(t, url, tok, sid, rtProto, pad(max)); a.status != http.StatusOK {
		t.Errorf("a body of exactly --max-body-bytes: %d %s", a.status, a.body)
	}
	if a := rtPost(t, url, tok, sid, rtProto, pad(max+1)); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body one byte over: %d %s", a.status, a.body)
	}
	big := pad(8 << 20)
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete, http.MethodPut, http.MethodPatch, http.MethodOptions} {
		body := big
		if method == http.MethodGet || method == http.MethodDelete {
			body = nil
		}
		start := time.Now()
		a := rtDo(t, method, url, "", sid, rtProto, body)
		if a.status != http.StatusUnauthorized || !strings.Contains(a.challenge, "resource_metadata=") {
			t.Errorf("%s without a token: %d %q", method, a.status, a.challenge)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("%s without a token took %s", method, time.Since(start))
		}
	}
	if a := rtDo(t, http.MethodPost, url+"?access_token="+tok, "", "", "", []byte(call)); a.status < 400 {
		t.Errorf("a token in the query: %d", a.status)
	}
}

// A tool call refused for its scope is a tool call refused: audited as
// /v1/retrieve audits a refusal, with the channel and the tool.
func TestRedteamMCPScopeRefusalIsAudited(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	tok := env.mcpToken(t, "rt-audit", "", mcpResource, []string{"ragfence:access"}, 10*time.Minute)
	sid := env.rtSession(t, tok)
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sql_query","arguments":{"sql":"SELECT id FROM chunks"}}}`
	if a := rtPost(t, env.urls[0]+"/mcp", tok, sid, rtProto, []byte(body)); a.status != http.StatusForbidden {
		t.Fatalf("sql_query without its scope: %d", a.status)
	}
	// /v1/retrieve audits a request it refuses (here: a bad token).
	env.v1IDs(t, env.token(t, "rt-audit", "", "")+"x", env.demoArgs(t), nil)
	var n int
	conn := env.db(t)
	for deadline := time.Now().Add(2 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM ragfence.audit_log WHERE subject = 'rt-audit' AND detail->>'channel' = 'mcp'`).Scan(&n)
	}
	if n == 0 {
		t.Errorf("a tools/call refused for insufficient scope left no audit record")
	}
}
