package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever/auth"
)

// guardedPolicy adds guardrails to the demo policy, one per clearance so
// each case's user meets only its own.
func guardedPolicy(p string) string {
	return p + `
guardrails:
  - name: agent-bulk-read
    who: agents
    when: subject.clearance = 1
    window: 1h
    max_rows: 200
    action: throttle
  - name: agent-cap
    who: agents
    when: subject.clearance = 2
    window: 1h
    max_rows: 30
    action: cap
    cap_k: 3
  - name: agent-hammering
    who: {agent: summarizer}
    when: subject.clearance = 3
    window: 1h
    max_requests: 5
    action: suspend
    suspend_for: 15m
`
}

// webhookSink collects the JSON bodies posted to it.
type webhookSink struct {
	mu     sync.Mutex
	events []map[string]any
}

func (s *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var e map[string]any
	if json.Unmarshal(b, &e) == nil {
		s.mu.Lock()
		s.events = append(s.events, e)
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *webhookSink) of(guardrail string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, e := range s.events {
		if e["guardrail"] == guardrail {
			out = append(out, e)
		}
	}
	return out
}

func (e *accessEnv) clearanceToken(t *testing.T, subject, agent string, clearance int) string {
	t.Helper()
	tok, err := auth.Mint(e.secret, auth.MintClaims{Subject: subject, Tenant: "acme", Attributes: map[string]any{"clearance": clearance},
		Agent: agent, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// search is one /v1/retrieve on instance i with the demo query: the
// status, rows, and the response's headers and decision.
func (e *accessEnv) search(t *testing.T, i int, token string) (int, int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.urls[i]+"/v1/retrieve", bytes.NewReader(e.query))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Results  []json.RawMessage
		Decision map[string]any
		Error    map[string]any
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body.Error != nil {
		body.Decision = body.Error
	}
	return resp.StatusCode, len(body.Results), resp.Header, body.Decision
}

// An agent hammering two instances is throttled with 429 and Retry-After
// once its budget is spent, within 25% of max_rows in total; its user
// alone is never throttled; the alert reaches the webhook.
func TestGuardrailsAcrossInstances(t *testing.T) {
	ctx := context.Background()
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	// Windows are aligned to the hour: a case must not straddle two.
	if left := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)); left < time.Minute {
		time.Sleep(left + time.Second)
	}
	env := newAccessEnv(t, ctx, testdb.Database(t), guardedPolicy, "--alert-webhook", hook.URL, "--guardrail-sync", "50ms",
		"--mcp-resource", mcpResource, "--authorization-server", "https://auth.test")

	t.Run("throttle", func(t *testing.T) {
		agent := env.clearanceToken(t, "gr-throttle", "summarizer", 1)
		served, throttled, pending := 0, 0, 0
		var retryAfter string
		// A 429 while servers share out what is left of the budget is
		// retried after the next sync, as a client honouring Retry-After
		// would (sooner: the test knows the sync interval).
		for n := 0; n < 400 && throttled < 4; n++ {
			status, rows, h, d := env.search(t, n%2, agent)
			switch {
			case status == http.StatusOK:
				served += rows
			case status == http.StatusTooManyRequests && d["code"] == "guardrail_throttled":
				if msg, _ := d["message"].(string); !strings.Contains(msg, "is spent") {
					pending++
					time.Sleep(60 * time.Millisecond)
					continue
				}
				throttled++
				retryAfter = h.Get("Retry-After")
			default:
				t.Fatalf("status %d: %v", status, d)
			}
		}
		t.Logf("%d pending 429s while the budget was shared", pending)
		secs, _ := strconv.Atoi(retryAfter)
		t.Logf("served %d rows (max_rows 200) before throttling; Retry-After %s s", served, retryAfter)
		if throttled == 0 || served > 250 || served < 150 || secs < 1 || secs > 3600 {
			t.Errorf("served %d rows, throttled %d times, Retry-After %q: want throttling within 25%% of 200 and a Retry-After within the 1h window",
				served, throttled, retryAfter)
		}
		user := env.clearanceToken(t, "gr-throttle", "", 1)
		for i := range 10 {
			if status, _, _, d := env.search(t, i%2, user); status != http.StatusOK {
				t.Fatalf("the user without an agent was refused: %d %v", status, d)
			}
		}
	})
	t.Run("MCP calls count with HTTP ones", func(t *testing.T) {
		tok, err := auth.Mint(env.secret, auth.MintClaims{Subject: "gr-mcp", Tenant: "acme", Attributes: map[string]any{"clearance": 1},
			Audience: mcpResource, ClientID: "summarizer", Scopes: allScopes, Lifetime: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		session := env.mcpSession(t, tok)
		viaMCP := 0
		for n := 0; viaMCP < 150 && n < 200; n++ {
			ids, res := env.toolIDs(t, session)
			switch {
			case !res.IsError:
				viaMCP += len(ids)
			case toolCode(res) == "guardrail_throttled":
				time.Sleep(60 * time.Millisecond) // the servers sharing out the budget
			default:
				t.Fatalf("retrieve tool: %s", fmtJSON(res.StructuredContent))
			}
		}
		// The rows the MCP calls read are spent: HTTP is throttled within
		// what is left of the budget.
		viaHTTP := 0
		for n := 0; n < 200; n++ {
			status, rows, _, d := env.search(t, n%2, env.clearanceToken(t, "gr-mcp", "summarizer", 1))
			if status == http.StatusOK {
				viaHTTP += rows
				continue
			}
			if msg, _ := d["message"].(string); status == http.StatusTooManyRequests && strings.Contains(msg, "is spent") {
				t.Logf("%d rows over MCP, then %d over HTTP, before throttling", viaMCP, viaHTTP)
				if viaMCP+viaHTTP > 250 {
					t.Errorf("served %d rows over MCP and HTTP, max_rows 200", viaMCP+viaHTTP)
				}
				return
			}
			time.Sleep(60 * time.Millisecond)
		}
		t.Errorf("never throttled: %d rows over MCP, %d over HTTP", viaMCP, viaHTTP)
	})
	t.Run("cap", func(t *testing.T) {
		agent := env.clearanceToken(t, "gr-cap", "summarizer", 2)
		var capped int
		for n := 0; n < 20; n++ {
			status, rows, _, d := env.search(t, n%2, agent)
			if status != http.StatusOK {
				t.Fatalf("status %d %v", status, d) // a cap serves, even while the budget is shared out
			}
			if d["capped_by"] == "agent-cap" {
				capped++
				if rows > 3 {
					t.Errorf("capped to %d rows, want at most 3", rows)
				}
			}
		}
		if capped == 0 {
			t.Error("no response was capped")
		}
	})
	t.Run("suspend", func(t *testing.T) {
		agent := env.clearanceToken(t, "gr-suspend", "summarizer", 3)
		var refused bool
		for n := 0; n < 200 && !refused; n++ {
			status, _, _, d := env.search(t, n%2, agent)
			refused = status == http.StatusForbidden && d["code"] == "agent_revoked"
			if status == http.StatusTooManyRequests { // the servers sharing out the budget
				time.Sleep(60 * time.Millisecond)
			}
		}
		if !refused {
			t.Fatal("the hammering agent was never suspended")
		}
		// Every instance refuses it from then on, through the revocation.
		if took := env.untilBoth(t, agent, http.StatusForbidden, "agent_revoked", time.Second); took > time.Second {
			t.Errorf("suspension reached both instances after %s", took)
		}
		var n int
		if err := env.db(t).QueryRow(ctx, `SELECT count(*) FROM ragfence.revocations
			WHERE kind = 'agent' AND agent = 'summarizer' AND subject = 'gr-suspend' AND created_by = 'guardrail:agent-hammering'
			AND lifted_at IS NULL AND ends_at > now()`).Scan(&n); err != nil || n != 1 {
			t.Errorf("%d suspensions in force (%v), want 1", n, err)
		}
		if status, _, _, _ := env.search(t, 0, env.clearanceToken(t, "gr-suspend", "", 3)); status != http.StatusOK {
			t.Errorf("the suspended agent's user alone was refused: %d", status)
		}
	})
	// Each action alerted, with the fields an operator's receiver reads.
	deadline := time.Now().Add(3 * time.Second)
	for _, g := range []string{"agent-bulk-read", "agent-cap", "agent-hammering"} {
		for len(sink.of(g)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		events := sink.of(g)
		if len(events) == 0 {
			t.Errorf("no alert for %s", g)
			continue
		}
		for _, k := range []string{"guardrail", "action", "tenant", "subject", "agent", "collection", "observed", "limit", "window", "decision_id", "time"} {
			if _, ok := events[0][k]; !ok {
				t.Errorf("alert of %s lacks %q: %v", g, k, events[0])
			}
		}
	}
	// And each is an audit record (written in batches: poll briefly).
	var audited int
	conn := env.db(t)
	for deadline := time.Now().Add(2 * time.Second); audited != 3 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := conn.QueryRow(ctx, `SELECT count(DISTINCT detail->>'guardrail') FROM ragfence.audit_log WHERE outcome = 'guardrail'`).Scan(&audited); err != nil {
			t.Fatal(err)
		}
	}
	if audited != 3 {
		t.Errorf("guardrails audited: %d, want 3", audited)
	}
}
