package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever/auth"
)

// accessEnv is two `ragfence serve` instances on one demo database.
type accessEnv struct {
	dsn    string
	urls   [2]string
	secret []byte
	query  []byte
}

// newAccessEnv seeds the demo into dsn and starts two servers on it with
// the demo's policy, changed by edit when given.
func newAccessEnv(t *testing.T, ctx context.Context, dsn string, edit func(string) string, extra ...string) *accessEnv {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, ctx, "migrate", "--db", dsn)
	mustRun(t, ctx, "demo", "--db", dsn, "--out", dir, "--chunks", "2000")
	files := demoFiles(t, dir)
	if edit != nil {
		writeFile(t, files.Policy, []byte(edit(string(mustRead(t, files.Policy)))))
	}
	env := &accessEnv{dsn: dsn}
	var err error
	if env.secret, err = os.ReadFile(files.Secret); err != nil {
		t.Fatal(err)
	}
	env.secret = bytes.TrimSpace(env.secret)
	for i := range env.urls {
		addr := freeAddr(t)
		env.urls[i] = "http://" + addr
		args := append([]string{"--db", dsn, "--policy", files.Policy, "--jwt-secret-file", files.Secret, "--addr", addr, "--log-level", "error"}, extra...)
		t.Cleanup(startServer(t, ctx, args...))
	}
	for _, p := range files.Requests {
		if env.query, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		break
	}
	return env
}

// token is a token for a user of its own, so that revoking it touches no
// other test.
func (e *accessEnv) token(t *testing.T, subject, agent, jti string) string {
	t.Helper()
	tok, err := auth.Mint(e.secret, auth.MintClaims{Subject: subject, Tenant: "acme", Attributes: map[string]any{"clearance": 3},
		Agent: agent, ID: jti, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// retrieve is one search on instance i: the status and error code.
func (e *accessEnv) retrieve(t *testing.T, i int, token string) (int, string) {
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
		Error struct{ Code, Message string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code
}

// untilBoth polls both instances until each answers want, and returns how
// long the slower one took.
func (e *accessEnv) untilBoth(t *testing.T, token string, want int, code string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, 2)
	for i := range e.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				status, c := e.retrieve(t, i, token)
				if status == want && c == code {
					took[i] = time.Since(start)
					return
				}
				if time.Since(start) > within+2*time.Second {
					took[i] = time.Since(start)
					t.Errorf("instance %d still answers %d %s, want %d %s", i, status, c, want, code)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return max(took[0], took[1])
}

// A revocation made with `ragfence revoke` is enforced by both instances
// within a second of the command returning; lifting it restores access.
func TestRevocationReachesEveryInstanceWithinASecond(t *testing.T) {
	ctx := context.Background()
	env := newAccessEnv(t, ctx, testdb.Database(t), nil)
	cases := []struct {
		name   string
		token  string
		revoke []string
		status int
		code   string
	}{
		{"subject", env.token(t, "rev-user-1", "", ""), []string{"--subject", "rev-user-1"}, http.StatusForbidden, "subject_revoked"},
		{"agent acting for the subject", env.token(t, "rev-user-2", "summarizer", ""), []string{"--subject", "rev-user-2"}, http.StatusForbidden, "subject_revoked"},
		{"agent for one user", env.token(t, "rev-user-3", "summarizer", ""), []string{"--agent", "summarizer", "--subject", "rev-user-3"}, http.StatusForbidden, "agent_revoked"},
		{"token", env.token(t, "rev-user-4", "", "jti-rev-4"), []string{"--token", "jti-rev-4"}, http.StatusUnauthorized, "token_revoked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range env.urls {
				if status, code := env.retrieve(t, i, tc.token); status != http.StatusOK {
					t.Fatalf("instance %d before revoking: %d %s", i, status, code)
				}
			}
			out := mustRun(t, ctx, append([]string{"revoke", "--db", env.dsn, "--tenant", "acme", "--reason", "test"}, tc.revoke...)...)
			took := env.untilBoth(t, tc.token, tc.status, tc.code, time.Second)
			t.Logf("%s: refused on both instances %s after `ragfence revoke` returned", tc.name, took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("refused after %s, want within 1s", took)
			}
			mustRun(t, ctx, "revoke", "--db", env.dsn, "--lift", strings.TrimSpace(out))
			if took := env.untilBoth(t, tc.token, http.StatusOK, "", time.Second); took > time.Second {
				t.Errorf("access restored after %s, want within 1s", took)
			}
		})
	}
	// Another user of the same tenant was never refused.
	other := env.token(t, "rev-bystander", "", "")
	for i := range env.urls {
		if status, code := env.retrieve(t, i, other); status != http.StatusOK {
			t.Errorf("a bystander got %d %s", status, code)
		}
	}
}

// With its notification connection cut, a server refuses every request
// with 503 revocation_state_stale within its bound, and serves again once
// the connection is back.
func TestStaleRevocationStateFailsClosed(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Database(t)
	proxy := testdb.NewProxy(t, dsn)
	const bound = time.Second
	env := newAccessEnv(t, ctx, dsn, nil, "--listen-db", proxy.DSN(dsn), "--revocation-staleness", bound.String())
	tok := env.token(t, "stale-user", "", "")
	if status, code := env.retrieve(t, 0, tok); status != http.StatusOK {
		t.Fatalf("before the cut: %d %s", status, code)
	}
	proxy.Cut()
	took := env.untilBoth(t, tok, http.StatusServiceUnavailable, "revocation_state_stale", bound+time.Second)
	t.Logf("503 revocation_state_stale %s after the cut (bound %s)", took.Round(time.Millisecond), bound)
	if took > bound+time.Second {
		t.Errorf("stale after %s, want within the bound %s (plus a heartbeat)", took, bound)
	}
	proxy.Restore()
	if took := env.untilBoth(t, tok, http.StatusOK, "", 3*time.Second); took > 3*time.Second {
		t.Errorf("recovered after %s", took)
	}
}

// call sends one JSON request to instance i and decodes the answer into out
// (when not nil); it returns the status and error code.
func (e *accessEnv) call(t *testing.T, i int, method, path, token string, body any, out any) (int, string) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, e.urls[i]+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw := new(bytes.Buffer)
	_, _ = raw.ReadFrom(resp.Body)
	var errBody struct{ Error struct{ Code string } }
	_ = json.Unmarshal(raw.Bytes(), &errBody)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, errBody.Error.Code
}

type classifiedAnswer struct {
	Results []struct {
		ID string `json:"id"`
	} `json:"results"`
	Decision struct {
		ApprovalRequired []string `json:"approval_required"`
	} `json:"decision"`
}

// classified is a search for classified chunks only, on instance i.
func (e *accessEnv) classified(t *testing.T, i int, token string) classifiedAnswer {
	t.Helper()
	var q map[string]any
	if err := json.Unmarshal(e.query, &q); err != nil {
		t.Fatal(err)
	}
	q["filter"] = map[string]any{"classification": map[string]any{"$gte": 1}}
	q["k"] = 20
	var a classifiedAnswer
	if status, code := e.call(t, i, http.MethodPost, "/v1/retrieve", token, q, &a); status != http.StatusOK {
		t.Fatalf("classified search: %d %s", status, code)
	}
	return a
}

type approvalAnswer struct {
	ID, Status string
	ExpiresAt  time.Time `json:"expires_at"`
}

// The approval flow over HTTP on two instances: the agent asks, its user
// approves on the other instance, the classified rows appear on both for
// exactly the rule's ttl, then are withheld again; denial, an agent
// approving, another user or tenant, and an expired request are refused.
func TestApprovalFlowOverHTTP(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Database(t)
	env := newAccessEnv(t, ctx, dsn, func(p string) string { return strings.Replace(p, "ttl: 30m", "ttl: 2s", 1) },
		"--approval-pending", "3s")
	user, agent := env.token(t, "appr-user", "", ""), env.token(t, "appr-user", "summarizer", "")
	mine := env.classified(t, 0, user)
	if len(mine.Results) == 0 {
		t.Fatal("the fixture has no classified chunk the user may see")
	}
	before := env.classified(t, 0, agent)
	if len(before.Results) != 0 || strings.Join(before.Decision.ApprovalRequired, ",") != "classified" {
		t.Fatalf("before approval the agent sees %d classified chunks, approval_required %v", len(before.Results), before.Decision.ApprovalRequired)
	}
	ask := map[string]any{"collection": "chunks", "rule": "classified", "reason": "quarterly report"}
	var req approvalAnswer
	if status, code := env.call(t, 0, http.MethodPost, "/v1/approvals", agent, ask, &req); status != http.StatusCreated || req.Status != "pending" || req.ID == "" {
		t.Fatalf("ask: %d %s %+v", status, code, req)
	}
	// Only the user decides: not the agent, not another user, not another tenant.
	otherTenant, err := auth.Mint(env.secret, auth.MintClaims{Subject: "appr-user", Tenant: "globex", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"the agent", agent, http.StatusForbidden, "agent_cannot_decide"},
		{"another user", env.token(t, "appr-other", "", ""), http.StatusNotFound, "not_found"},
		{"another tenant's user", otherTenant, http.StatusNotFound, "not_found"},
		{"the user asking as a user", user, http.StatusBadRequest, "invalid_approval"},
	} {
		path := "/v1/approvals/" + req.ID + "/approve"
		var body any
		if c.code == "invalid_approval" {
			path, body = "/v1/approvals", ask
		}
		if status, code := env.call(t, 0, http.MethodPost, path, c.token, body, nil); status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, code, c.status, c.code)
		}
	}
	var listed struct{ Approvals []approvalAnswer }
	if status, _ := env.call(t, 1, http.MethodGet, "/v1/approvals", user, nil, &listed); status != http.StatusOK || len(listed.Approvals) != 1 || listed.Approvals[0].Status != "pending" {
		t.Fatalf("the user's list: %d %+v", status, listed)
	}
	var approved approvalAnswer
	if status, code := env.call(t, 1, http.MethodPost, "/v1/approvals/"+req.ID+"/approve", user, nil, &approved); status != http.StatusOK || approved.Status != "approved" {
		t.Fatalf("approve: %d %s %+v", status, code, approved)
	}
	for i := range env.urls {
		var got classifiedAnswer
		deadline := time.Now().Add(time.Second)
		for got = env.classified(t, i, agent); len(got.Results) == 0 && time.Now().Before(deadline); got = env.classified(t, i, agent) {
			time.Sleep(10 * time.Millisecond)
		}
		if len(got.Results) == 0 || len(got.Decision.ApprovalRequired) != 0 {
			t.Fatalf("instance %d: approved, yet %d classified chunks, approval_required %v", i, len(got.Results), got.Decision.ApprovalRequired)
		}
		// Never beyond its user's rights or its grant: this user (no roles,
		// groups or grants, clearance 3) sees acme's tenant-wide chunks up
		// to classification 3, and the agent only wiki and drive among them.
		ids := make([]string, len(got.Results))
		for j, r := range got.Results {
			ids[j] = r.ID
		}
		var beyond int
		if err := env.db(t).QueryRow(ctx, `SELECT count(*) FROM chunks WHERE id::text = ANY ($1) AND NOT
			(tenant_id = 'acme' AND visibility = 'tenant' AND classification BETWEEN 1 AND 3 AND source IN ('wiki', 'drive'))`, ids).Scan(&beyond); err != nil {
			t.Fatal(err)
		}
		if beyond != 0 {
			t.Errorf("instance %d: the approved agent sees %d chunks beyond its user's rights or its grant", i, beyond)
		}
	}
	// The approval lasts exactly its ttl: gone after it, with no call.
	time.Sleep(time.Until(approved.ExpiresAt) + 100*time.Millisecond)
	for i := range env.urls {
		if got := env.classified(t, i, agent); len(got.Results) != 0 {
			t.Errorf("instance %d: %d classified chunks after the ttl", i, len(got.Results))
		}
	}
	// A denied request lifts nothing; an expired one cannot be approved.
	var denied approvalAnswer
	env.call(t, 0, http.MethodPost, "/v1/approvals", agent, ask, &req)
	if status, _ := env.call(t, 0, http.MethodPost, "/v1/approvals/"+req.ID+"/deny", user, nil, &denied); status != http.StatusOK || denied.Status != "denied" {
		t.Errorf("deny: %d %+v", status, denied)
	}
	if got := env.classified(t, 0, agent); len(got.Results) != 0 {
		t.Errorf("%d classified chunks after a denial", len(got.Results))
	}
	env.call(t, 0, http.MethodPost, "/v1/approvals", agent, ask, &req)
	time.Sleep(time.Until(req.ExpiresAt) + 100*time.Millisecond)
	if status, code := env.call(t, 0, http.MethodPost, "/v1/approvals/"+req.ID+"/approve", user, nil, nil); status != http.StatusNotFound {
		t.Errorf("approving an expired request: %d %s, want 404", status, code)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *accessEnv) db(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
