package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever/auth"
)

const mcpResource = "https://rag.test/mcp"

var allScopes = []string{"ragfence:retrieve", "ragfence:query", "ragfence:access"}

// mcpToken is a token as an authorization server issues it to an MCP host
// for a user: aud the resource, the host in client_id, scopes.
func (e *accessEnv) mcpToken(t *testing.T, subject, clientID, audience string, scopes []string, lifetime time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(e.secret, auth.MintClaims{Subject: subject, Tenant: "acme", Attributes: map[string]any{"clearance": 3},
		Audience: audience, ClientID: clientID, Scopes: scopes, ID: subject + "-" + clientID + "-mcp", Lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// bearer is an http.Client that sends token with every request.
func bearer(token string) *http.Client {
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (e *accessEnv) mcpSession(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "ragfence-test", Version: "1"}, nil)
	s, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: e.urls[0] + "/mcp", HTTPClient: bearer(token)}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// retrieveIDs are the ids of /v1/retrieve for token, with the demo query.
func (e *accessEnv) retrieveIDs(t *testing.T, token string) []string {
	t.Helper()
	var q map[string]any
	_ = json.Unmarshal(e.query, &q)
	var resp struct{ Results []struct{ ID string } }
	if status, code := e.call(t, 0, http.MethodPost, "/v1/retrieve", token, q, &resp); status != http.StatusOK {
		t.Fatalf("/v1/retrieve: %d %s", status, code)
	}
	ids := []string{}
	for _, r := range resp.Results {
		ids = append(ids, r.ID)
	}
	return ids
}

// toolIDs calls the retrieve tool with the demo query.
func (e *accessEnv) toolIDs(t *testing.T, s *mcp.ClientSession) ([]string, *mcp.CallToolResult) {
	t.Helper()
	var q map[string]any
	_ = json.Unmarshal(e.query, &q)
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "retrieve", Arguments: q})
	if err != nil {
		t.Fatalf("retrieve tool: %v", err)
	}
	if res.IsError {
		return nil, res
	}
	var out struct{ Results []struct{ ID string } }
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, r := range out.Results {
		ids = append(ids, r.ID)
	}
	return ids, res
}

func toolCode(res *mcp.CallToolResult) string {
	b, _ := json.Marshal(res.StructuredContent)
	var body struct{ Error struct{ Code string } }
	_ = json.Unmarshal(b, &body)
	return body.Error.Code
}

// An MCP host with a token for a user retrieves and queries through
// ragfence and sees exactly what that user's agent may see.
func TestMCPToolsEndToEnd(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	user := env.mcpSession(t, env.mcpToken(t, "mcp-user", "", mcpResource, allScopes, 10*time.Minute))
	tools, err := user.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" || tool.InputSchema == nil {
			t.Errorf("tool %s has no description or input schema", tool.Name)
		}
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "access,retrieve,sql_query" {
		t.Fatalf("tools %v", names)
	}
	// The same ids as /v1/retrieve for the same user and query.
	got, res := env.toolIDs(t, user)
	if res.IsError || len(got) == 0 {
		t.Fatalf("retrieve tool failed: %+v", res.Content)
	}
	if want := env.retrieveIDs(t, env.token(t, "mcp-user", "", "")); !slices.Equal(got, want) {
		t.Errorf("retrieve tool %v, /v1/retrieve %v", got, want)
	}
	// An agent named by client_id sees what it sees acting by act.
	agent := env.mcpSession(t, env.mcpToken(t, "mcp-user", "summarizer", mcpResource, allScopes, 10*time.Minute))
	got, res = env.toolIDs(t, agent)
	if want := env.retrieveIDs(t, env.token(t, "mcp-user", "summarizer", "")); res.IsError || !slices.Equal(got, want) {
		t.Errorf("agent by client_id: %v (error %v), by act: %v", got, res.IsError, want)
	}
	// A client without a grant sees nothing, and is told so.
	stranger := env.mcpSession(t, env.mcpToken(t, "mcp-user", "unknown-host", mcpResource, allScopes, 10*time.Minute))
	if _, res := env.toolIDs(t, stranger); !res.IsError || toolCode(res) != "agent_not_granted" {
		t.Errorf("a client without a grant: %+v", res.Content)
	}
	// sql_query: the user's rows only; a write and an error-based probe are refused.
	var before int
	conn := env.db(t)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM chunks").Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, probe := range []struct{ name, sql string }{
		{"a write", "DELETE FROM chunks"},
		{"an error-based probe", "SELECT 1 / (classification - 5) FROM chunks"},
	} {
		res, err := agent.CallTool(ctx, &mcp.CallToolParams{Name: "sql_query", Arguments: map[string]any{"sql": probe.sql}})
		if err != nil || !res.IsError || toolCode(res) == "" {
			t.Errorf("%s: %v %+v, want a refusal with a code", probe.name, err, res)
		}
	}
	var after int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM chunks").Scan(&after); err != nil || after != before {
		t.Errorf("chunks %d -> %d (%v)", before, after, err)
	}
	res, err = agent.CallTool(ctx, &mcp.CallToolParams{Name: "sql_query", Arguments: map[string]any{
		"sql": "SELECT id, source FROM chunks ORDER BY id", "limit": 5}})
	if err != nil || res.IsError {
		t.Fatalf("sql_query: %v %+v", err, res)
	}
	var rows struct {
		Rows []struct {
			ID     json.Number
			Source string
		}
		Truncated bool
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &rows); err != nil || len(rows.Rows) != 5 || !rows.Truncated {
		t.Fatalf("sql_query rows: %s (%v)", b, err)
	}
	for _, r := range rows.Rows {
		if r.Source != "wiki" && r.Source != "drive" {
			t.Errorf("the summarizer saw a %s chunk through sql_query", r.Source)
		}
	}
	// access names the agent's grant.
	res, err = agent.CallTool(ctx, &mcp.CallToolParams{Name: "access", Arguments: map[string]any{}})
	if err != nil || res.IsError || !strings.Contains(fmtJSON(res.StructuredContent), `"docs-only"`) {
		t.Errorf("access: %v %s", err, fmtJSON(res.StructuredContent))
	}
	// Every call is audited, with the channel and the tool (the audit
	// writer batches: poll briefly).
	var audited string
	for deadline := time.Now().Add(2 * time.Second); audited != "access,retrieve,sql_query" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(DISTINCT detail->>'tool', ',' ORDER BY detail->>'tool'), '')
			FROM ragfence.audit_log WHERE detail->>'channel' = 'mcp' AND detail ? 'tool'`).Scan(&audited); err != nil {
			t.Fatal(err)
		}
	}
	if audited != "access,retrieve,sql_query" {
		t.Errorf("audited MCP tools %q", audited)
	}
}

func fmtJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// The resource server's duties: metadata, challenges, audience and scope.
func TestMCPAuthorization(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil, "--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")
	metaURL := "https://rag.test/.well-known/oauth-protected-resource/mcp"
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, err := http.Get(env.urls[0] + path)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Resource               string   `json:"resource"`
			AuthorizationServers   []string `json:"authorization_servers"`
			ScopesSupported        []string `json:"scopes_supported"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&meta)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || meta.Resource != mcpResource || !slices.Equal(meta.AuthorizationServers, []string{"https://auth.test"}) ||
			!slices.Equal(meta.ScopesSupported, allScopes) || !slices.Equal(meta.BearerMethodsSupported, []string{"header"}) {
			t.Errorf("%s: %d %+v", path, resp.StatusCode, meta)
		}
	}
	initialize := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	call := []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"retrieve","arguments":{"collection":"chunks","embedding":[1,0]}}}`)
	revoked := env.mcpToken(t, "mcp-revoked", "", mcpResource, allScopes, 10*time.Minute)
	mustRun(t, ctx, "revoke", "--db", env.dsn, "--tenant", "acme", "--token", "mcp-revoked--mcp")
	time.Sleep(100 * time.Millisecond)
	for _, tc := range []struct {
		name, token string
		body        []byte
		status      int
		challenge   []string
	}{
		{"no token", "", initialize, 401, []string{`resource_metadata="` + metaURL + `"`, `scope="ragfence:retrieve ragfence:query ragfence:access"`}},
		{"another resource's token", env.mcpToken(t, "mcp-user", "", "https://other.test/mcp", allScopes, 10*time.Minute), initialize, 401,
			[]string{`resource_metadata="` + metaURL + `"`, `error="invalid_token"`}},
		{"a token without audience", env.token(t, "mcp-user", "", ""), initialize, 401, []string{`error="invalid_token"`}},
		{"expired", expiredToken(t, env), initialize, 401, []string{`error="invalid_token"`}},
		{"revoked", revoked, initialize, 401, []string{`error="invalid_token"`}},
		{"insufficient scope", env.mcpToken(t, "mcp-user", "", mcpResource, []string{"ragfence:access"}, 10*time.Minute), call, 403,
			[]string{`error="insufficient_scope"`, `scope="ragfence:retrieve"`, `resource_metadata="` + metaURL + `"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, env.urls[0]+"/mcp", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			challenge := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tc.status, challenge)
			}
			for _, want := range tc.challenge {
				if !strings.HasPrefix(challenge, "Bearer ") || !strings.Contains(challenge, want) {
					t.Errorf("WWW-Authenticate %q lacks %s", challenge, want)
				}
			}
		})
	}
	// A session is bound to its user.
	alice := env.mcpSession(t, env.mcpToken(t, "mcp-alice", "", mcpResource, allScopes, 10*time.Minute))
	req, _ := http.NewRequest(http.MethodPost, env.urls[0]+"/mcp", bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", alice.ID())
	req.Header.Set("Authorization", "Bearer "+env.mcpToken(t, "mcp-mallory", "", mcpResource, allScopes, 10*time.Minute))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("another user's token used alice's session: %d", resp.StatusCode)
	}
}

func expiredToken(t *testing.T, env *accessEnv) string {
	t.Helper()
	tok, err := auth.Mint(env.secret, auth.MintClaims{Subject: "mcp-user", Tenant: "acme", Audience: mcpResource, Scopes: allScopes,
		IssuedAt: time.Now().Add(-time.Hour), Lifetime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
