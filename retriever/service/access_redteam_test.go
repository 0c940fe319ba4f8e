package service_test

// Red-team tests of issue 13's promises at the service (what every front
// door calls). A failing test is a finding; a passing one is a defence
// that holds, kept as a regression test. Tests use subjects of their own
// (rt-*) on the shared fixture; each is bounded well under 10 s.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/auth"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
	"github.com/ragfence/ragfence/revocation"
)

// redteamService is accessService with a configurable Config.
func redteamService(t *testing.T, log service.AuditLog, edit func(*service.Config)) (*service.Service, *revocation.Watcher, *approval.Watcher) {
	t.Helper()
	f := e2e.Shared(t)
	cc, err := pgx.ParseConfig(f.DSN)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))
	rw, err := revocation.Watch(context.Background(), revocation.WatchConfig{ConnConfig: cc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rw.Close)
	aw, err := approval.Watch(context.Background(), approval.WatchConfig{ConnConfig: cc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aw.Close)
	cfg := service.Config{
		Pool: f.Pool, Policies: retriever.StaticPolicy(f.Policy), Auth: service.TokenAuth{Verifier: f.Verifier},
		Audit: log, Logger: quiet, Revocations: rw, Approvals: aw,
	}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc, rw, aw
}

// rawToken signs claims as the fixture's issuer would, for shapes Mint
// cannot make (nested act claims).
func rawToken(t *testing.T, subject string, act map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": subject, "tenant": "acme", "clearance": 3,
		"iat": e2e.FixedNow.Unix(), "nbf": e2e.FixedNow.Unix(), "exp": e2e.FixedNow.Add(10 * time.Minute).Unix()}
	if act != nil {
		claims["act"] = act
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(e2e.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) service.Caller { return service.Caller{Authorization: "Bearer " + tok} }

func classifiedTarget(subject string) approval.Target {
	return approval.Target{Tenant: "acme", Subject: subject, Agent: "summarizer", Resource: "chunks", Rule: "classified"}
}

func searchAs(t *testing.T, svc *service.Service, tok string) (*service.Response, error) {
	t.Helper()
	f := e2e.Shared(t)
	return svc.Retrieve(context.Background(), service.Call{Authorization: "Bearer " + tok,
		Query: retriever.Query{Resource: "chunks", Embedding: f.Topic(1), K: 20}})
}

// FINDING (audit), fixed: "every approval is an audit record" and "no
// record, no answer" must hold over HTTP as for the CLI. An approval change
// and its audit record now commit in one transaction, written to
// ragfence.audit_log whatever the service's queued AuditLog does: when the
// call answers, the record is already there.
func TestRedteamApprovalInForceWithoutAuditRecord(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	log := &recordingLog{refuse: errors.New("audit log full")}
	svc, _, _ := redteamService(t, log, nil)
	recorded := func(t *testing.T, id, event string) {
		t.Helper()
		var n int
		if err := f.Pool.QueryRow(ctx, `SELECT count(*) FROM ragfence.audit_log
			WHERE outcome = 'approval' AND detail->>'approval_id' = $1 AND detail->>'event' = $2`, id, event).Scan(&n); err != nil || n != 1 {
			t.Errorf("approval %s %s: %d audit records (%v), want 1 committed with it", id, event, n, err)
		}
	}
	t.Run("request", func(t *testing.T) {
		v, err := svc.RequestApproval(ctx, bearer(ownToken(t, "rt-noaudit-req", "summarizer")), func() (service.ApprovalRequest, error) {
			return service.ApprovalRequest{Collection: "chunks", Rule: "classified"}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		recorded(t, v.ID, "requested")
	})
	t.Run("decision", func(t *testing.T) {
		target := classifiedTarget("rt-noaudit-user")
		req, err := approval.NewStore(f.Pool).Request(ctx, target, "", time.Minute, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.DecideApproval(ctx, bearer(ownToken(t, target.Subject, "")), req.ID, true); err != nil {
			t.Fatal(err)
		}
		recorded(t, req.ID, "approved")
	})
}

// FINDING (ttl bound): the server's --max-approval-ttl bounds the policy's
// ttls and requests, but not a grant: Store.Grant (and `ragfence grant`)
// accept any window, the policy's rule is not even checked to exist, and
// every server honours a 30-day grant on a server whose maximum is 1h.
func TestRedteamGrantOutlastsMaxApprovalTTL(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	svc, _, aw := redteamService(t, &recordingLog{}, func(c *service.Config) { c.MaxApprovalTTL = time.Hour })
	// Requests are bounded (a regression check): a 30m rule on a 10m server.
	svc10, _, _ := redteamService(t, &recordingLog{}, func(c *service.Config) { c.MaxApprovalTTL = 10 * time.Minute })
	v, err := svc10.RequestApproval(ctx, bearer(ownToken(t, "rt-maxttl-req", "summarizer")), func() (service.ApprovalRequest, error) {
		return service.ApprovalRequest{Collection: "chunks", Rule: "classified"}, nil
	})
	if err != nil || v.TTL != (10*time.Minute).String() {
		t.Errorf("a request on a 10m server: ttl %q (%v), want 10m0s", v.TTL, err)
	}
	target := classifiedTarget("rt-maxttl-user")
	if _, err := approval.NewStore(f.Pool).Grant(ctx, target, time.Now().Add(-time.Minute), time.Now().Add(30*24*time.Hour), "ops", ""); err != nil {
		t.Fatalf("grant: %v", err)
	}
	waitFor(t, "grant heard", func() bool { _, ok := aw.InForce(target, time.Now()); return ok })
	resp, err := searchAs(t, svc, ownToken(t, target.Subject, "summarizer"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(resp.Decision.ApprovalRequired, "classified") {
		t.Errorf("a 30-day grant lifts the rule on a server whose --max-approval-ttl is 1h (approval_required %v)", resp.Decision.ApprovalRequired)
	}
}

// reloadablePolicy is the fixture's policy in a file, and a store on it.
func reloadablePolicy(t *testing.T) (*retriever.PolicyStore, func(edit func(string) string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(e2e.MaskedPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := retriever.NewPolicyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return store, func(edit func(string) string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(edit(e2e.MaskedPolicy)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Reload(); err != nil {
			t.Fatal(err)
		}
	}
}

// FINDING (ttl): a request keeps the ttl of the policy it was made under.
// When the policy is reloaded with a shorter ttl (say 30m -> 1m, because
// 30 minutes was too long) a request still pending is approved for the old
// 30 minutes, not for the rule's ttl at the time of the approval.
func TestRedteamPolicyReloadShortenedTTLNotHonoured(t *testing.T) {
	ctx := context.Background()
	store, reload := reloadablePolicy(t)
	svc, _, _ := redteamService(t, &recordingLog{}, func(c *service.Config) { c.Policies = store })
	req, err := svc.RequestApproval(ctx, bearer(ownToken(t, "rt-ttl-user", "summarizer")), func() (service.ApprovalRequest, error) {
		return service.ApprovalRequest{Collection: "chunks", Rule: "classified"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reload(func(p string) string { return strings.Replace(p, "ttl: 30m", "ttl: 1m", 1) })
	v, err := svc.DecideApproval(ctx, bearer(ownToken(t, "rt-ttl-user", "")), req.ID, true)
	if err != nil || v.ValidFrom == nil {
		t.Fatalf("approve: %+v %v", v, err)
	}
	if d := v.ExpiresAt.Sub(*v.ValidFrom); d > time.Minute {
		t.Errorf("approved after the policy's ttl became 1m, the approval lasts %s", d)
	}
}

// DEFENCE: a policy reload that renames an approval rule while an
// approval of the old name is in force withholds the rows again (the new
// name is not approved); it never lifts a rule nobody approved.
func TestRedteamPolicyReloadRenamedRuleFailsClosed(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	store, reload := reloadablePolicy(t)
	svc, _, aw := redteamService(t, &recordingLog{}, func(c *service.Config) { c.Policies = store })
	target := classifiedTarget("rt-rename-user")
	if _, err := approval.NewStore(f.Pool).Grant(ctx, target, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "ops", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "grant heard", func() bool { _, ok := aw.InForce(target, time.Now()); return ok })
	agent := ownToken(t, target.Subject, "summarizer")
	if resp, err := searchAs(t, svc, agent); err != nil || len(resp.Decision.ApprovalRequired) != 0 {
		t.Fatalf("approved: %v %v", err, resp)
	}
	reload(func(p string) string { return strings.Replace(p, "- name: classified", "- name: secret", 1) })
	resp, err := searchAs(t, svc, agent)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Decision.ApprovalRequired, []string{"secret"}) {
		t.Errorf("after renaming the rule: approval_required %v, want [secret]", resp.Decision.ApprovalRequired)
	}
	if bad := classifiedAmong(t, resp); bad > 0 {
		t.Errorf("after renaming the rule the agent sees %d classified chunks", bad)
	}
}

func classifiedAmong(t *testing.T, resp *service.Response) (n int) {
	t.Helper()
	f := e2e.Shared(t)
	ids := make([]string, len(resp.Results))
	for i, r := range resp.Results {
		ids[i] = r.ID
	}
	for _, c := range f.Chunks(t, ids, f.Topic(1)) {
		if c.Classification > 0 {
			n++
		}
	}
	return n
}

// DEFENCE: an approval lifts one rule for one (tenant, user, agent,
// resource): grants for another user, the same user id in another tenant,
// another agent, another resource or a rule named alike lift nothing.
func TestRedteamApprovalScopedToTenantUserAgentResource(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	svc, _, aw := redteamService(t, &recordingLog{}, nil)
	s := approval.NewStore(f.Pool)
	me := "rt-scope-user"
	decoys := []approval.Target{
		{Tenant: "acme", Subject: "rt-scope-other", Agent: "summarizer", Resource: "chunks", Rule: "classified"},
		{Tenant: "globex", Subject: me, Agent: "summarizer", Resource: "chunks", Rule: "classified"},
		{Tenant: "acme", Subject: me, Agent: "crawler", Resource: "chunks", Rule: "classified"},
		{Tenant: "acme", Subject: me, Agent: "summarizer", Resource: "documents", Rule: "classified"},
		{Tenant: "acme", Subject: me, Agent: "summarizer", Resource: "chunks", Rule: "Classified"},
		{Tenant: "acme", Subject: me, Agent: "summarizer", Resource: "chunks", Rule: "classified "},
		{Tenant: "acme", Subject: me + " ", Agent: "summarizer", Resource: "chunks", Rule: "classified"},
		{Tenant: "acme", Subject: me, Agent: "Summarizer", Resource: "chunks", Rule: "classified"},
	}
	var heard []approval.Target
	for _, d := range decoys {
		_, err := s.Grant(ctx, d, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "ops", "")
		padded := strings.TrimSpace(d.Subject) != d.Subject || strings.TrimSpace(d.Rule) != d.Rule
		switch {
		case padded && approval.CodeOf(err) == approval.CodeInvalid:
			continue // refused outright: it could match nobody
		case err != nil:
			t.Fatal(err)
		}
		heard = append(heard, d)
	}
	last := heard[len(heard)-1]
	waitFor(t, "decoys heard", func() bool { _, ok := aw.InForce(last, time.Now()); return ok })
	resp, err := searchAs(t, svc, ownToken(t, me, "summarizer"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Decision.ApprovalRequired, []string{"classified"}) {
		t.Errorf("decoy grants lifted the rule: approval_required %v", resp.Decision.ApprovalRequired)
	}
	if bad := classifiedAmong(t, resp); bad > 0 {
		t.Errorf("decoy grants let the agent see %d classified chunks", bad)
	}
	a, err := svc.Access(ctx, bearer(ownToken(t, me, "")), "summarizer")
	if err != nil {
		t.Fatal(err)
	}
	if st := a.Collections[0].Approvals[0].State; st != "none" {
		t.Errorf("GET /v1/access reports %q from decoy grants", st)
	}
	// Control: the real grant does lift it, so the checks above could fail.
	real := classifiedTarget(me)
	if _, err := s.Grant(ctx, real, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "ops", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "real grant heard", func() bool { _, ok := aw.InForce(real, time.Now()); return ok })
	if resp, err = searchAs(t, svc, ownToken(t, me, "summarizer")); err != nil || len(resp.Decision.ApprovalRequired) != 0 || classifiedAmong(t, resp) == 0 {
		t.Errorf("control: the real grant does not lift the rule (%v, approval_required %v)", err, resp.Decision.ApprovalRequired)
	}
}

// DEFENCE: no agent token decides, however its act claim is shaped: the
// plain agent token (sub = the user), an act naming the user themself,
// nested act chains either way round. The same subject id in another
// tenant gets not found. The request stays pending for its user.
func TestRedteamAgentNeverDecides(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	svc, _, _ := redteamService(t, &recordingLog{}, nil)
	me := "rt-decide-user"
	req, err := approval.NewStore(f.Pool).Request(ctx, classifiedTarget(me), "", time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	otherTenant := e2e.MintToken(t, auth.MintClaims{Subject: me, Tenant: "globex", Attributes: map[string]any{"clearance": 3}, IssuedAt: e2e.FixedNow})
	for _, tc := range []struct {
		name, token string
		code        retriever.Code
	}{
		{"the agent acting for the user", ownToken(t, me, "summarizer"), service.CodeAgentCannotDecide},
		{"an act naming the user", ownToken(t, me, me), service.CodeAgentCannotDecide},
		{"the agent acting through another", rawToken(t, me, map[string]any{"sub": "summarizer", "act": map[string]any{"sub": "orchestrator"}}), service.CodeAgentCannotDecide},
		{"an agent with the user as prior actor", rawToken(t, me, map[string]any{"sub": "summarizer", "act": map[string]any{"sub": me}}), service.CodeAgentCannotDecide},
		{"the same subject id in another tenant", otherTenant, retriever.CodeNotFound},
		{"another user", ownToken(t, "rt-decide-other", ""), retriever.CodeNotFound},
	} {
		for _, approve := range []bool{true, false} {
			if _, err := svc.DecideApproval(ctx, bearer(tc.token), req.ID, approve); retriever.CodeOf(err) != tc.code {
				t.Errorf("%s (approve %v): %v, want %s", tc.name, approve, err, tc.code)
			}
		}
	}
	list, err := svc.Approvals(ctx, bearer(ownToken(t, me, "")))
	if err != nil || len(list) != 1 || list[0].Status != "pending" {
		t.Fatalf("the user's list after the attempts: %+v %v", list, err)
	}
	if v, err := svc.DecideApproval(ctx, bearer(ownToken(t, me, "")), req.ID, true); err != nil || v.Status != "approved" {
		t.Errorf("the user's own approval: %+v %v", v, err)
	}
	if _, err := svc.DecideApproval(ctx, bearer(ownToken(t, me, "")), req.ID, false); retriever.CodeOf(err) != retriever.CodeNotFound {
		t.Errorf("deciding an already approved request again: %v, want not_found", err)
	}
}

// DEFENCE: the approvals list and GET /v1/access show an agent only its
// own requests for its own user; a user only their own (every agent's).
func TestRedteamApprovalListsAndAccessAreScoped(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	svc, _, _ := redteamService(t, &recordingLog{}, nil)
	s := approval.NewStore(f.Pool)
	me, other, fresh := "rt-list-user", "rt-list-other", "rt-list-fresh"
	mine, err := s.Request(ctx, classifiedTarget(me), "mine", time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []approval.Target{
		{Tenant: "acme", Subject: me, Agent: "crawler", Resource: "chunks", Rule: "classified"},
		classifiedTarget(other),
		{Tenant: "globex", Subject: me, Agent: "summarizer", Resource: "chunks", Rule: "classified"},
	} {
		if _, err := s.Request(ctx, tg, "decoy", time.Minute, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	agentList, err := svc.Approvals(ctx, bearer(ownToken(t, me, "summarizer")))
	if err != nil || len(agentList) != 1 || agentList[0].ID != mine.ID {
		t.Errorf("the agent's list: %+v %v, want only %s", agentList, err, mine.ID)
	}
	userList, err := svc.Approvals(ctx, bearer(ownToken(t, me, "")))
	if err != nil || len(userList) != 2 {
		t.Errorf("the user's list: %d %v, want 2 (summarizer's and crawler's, not another user's or tenant's)", len(userList), err)
	}
	for _, v := range userList {
		if v.Agent != "summarizer" && v.Agent != "crawler" {
			t.Errorf("the user's list shows %+v", v)
		}
	}
	for _, tc := range []struct {
		name, token, agent, state, id string
	}{
		{"user about the agent", ownToken(t, me, ""), "summarizer", "pending", mine.ID},
		{"the agent itself", ownToken(t, me, "summarizer"), "", "pending", mine.ID},
		{"the agent for another user", ownToken(t, fresh, "summarizer"), "", "none", ""},
	} {
		a, err := svc.Access(ctx, bearer(tc.token), tc.agent)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		st := a.Collections[0].Approvals
		if len(st) != 1 || st[0].State != tc.state || st[0].RequestID != tc.id {
			t.Errorf("%s: approvals %+v, want %s %q", tc.name, st, tc.state, tc.id)
		}
	}
	// A user's token asking about an agent the policy does not grant:
	// nothing readable, no approvals shown.
	a, err := svc.Access(ctx, bearer(ownToken(t, me, "")), "crawler")
	if err != nil || a.Collections[0].Readable || len(a.Collections[0].Approvals) != 0 {
		t.Errorf("about an ungranted agent: %+v %v", a, err)
	}
}

// DEFENCE: an agent asks only for an approval rule its own grant has.
func TestRedteamRequestOnlyForOwnRule(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := redteamService(t, &recordingLog{}, nil)
	for _, tc := range []struct {
		name, token string
		req         service.ApprovalRequest
		code        retriever.Code
	}{
		{"no such rule", ownToken(t, "rt-req-user", "summarizer"), service.ApprovalRequest{Collection: "chunks", Rule: "nope"}, service.CodeInvalidApproval},
		{"a rule name differing in case", ownToken(t, "rt-req-user", "summarizer"), service.ApprovalRequest{Collection: "chunks", Rule: "Classified"}, service.CodeInvalidApproval},
		{"an allow rule's name", ownToken(t, "rt-req-user", "summarizer"), service.ApprovalRequest{Collection: "chunks", Rule: "docs-only"}, service.CodeInvalidApproval},
		{"no such collection", ownToken(t, "rt-req-user", "summarizer"), service.ApprovalRequest{Collection: "nope", Rule: "classified"}, retriever.CodeUnknownCollection},
		{"an agent without the rule", ownToken(t, "rt-req-user", "crawler"), service.ApprovalRequest{Collection: "chunks", Rule: "classified"}, service.CodeInvalidApproval},
		{"a user", ownToken(t, "rt-req-user", ""), service.ApprovalRequest{Collection: "chunks", Rule: "classified"}, service.CodeInvalidApproval},
	} {
		_, err := svc.RequestApproval(ctx, bearer(tc.token), func() (service.ApprovalRequest, error) { return tc.req, nil })
		if retriever.CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
}

// DEFENCE: stale (here: closed) revocation state refuses every call,
// search or not; stale approval state refuses agents' searches and access
// answers, not users' searches.
func TestRedteamStaleStateFailsClosedEverywhere(t *testing.T) {
	ctx := context.Background()
	svc, rw, _ := redteamService(t, &recordingLog{}, nil)
	user, agent := ownToken(t, "rt-stale-user", ""), ownToken(t, "rt-stale-user", "summarizer")
	if _, err := searchAs(t, svc, agent); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	want := service.CodeRevocationStale
	if _, err := searchAs(t, svc, user); retriever.CodeOf(err) != want {
		t.Errorf("search: %v", err)
	}
	if _, err := svc.Approvals(ctx, bearer(user)); retriever.CodeOf(err) != want {
		t.Errorf("list: %v", err)
	}
	if _, err := svc.DecideApproval(ctx, bearer(user), "00000000-0000-0000-0000-000000000000", true); retriever.CodeOf(err) != want {
		t.Errorf("decide: %v", err)
	}
	if _, err := svc.RequestApproval(ctx, bearer(agent), func() (service.ApprovalRequest, error) {
		return service.ApprovalRequest{Collection: "chunks", Rule: "classified"}, nil
	}); retriever.CodeOf(err) != want {
		t.Errorf("request: %v", err)
	}
	if _, err := svc.Access(ctx, bearer(user), "summarizer"); retriever.CodeOf(err) != want {
		t.Errorf("access: %v", err)
	}

	svc2, _, aw := redteamService(t, &recordingLog{}, nil)
	aw.Close()
	if _, err := searchAs(t, svc2, agent); retriever.CodeOf(err) != service.CodeApprovalStale {
		t.Errorf("agent search on stale approvals: %v", err)
	}
	if _, err := svc2.Access(ctx, bearer(user), "summarizer"); retriever.CodeOf(err) != service.CodeApprovalStale {
		t.Errorf("access about the agent on stale approvals: %v", err)
	}
	if _, err := searchAs(t, svc2, user); err != nil {
		t.Errorf("a user's search needs no approval state: %v", err)
	}
}

// FINDING (what can this agent see, low): GET /v1/access for an agent
// revoked for this user lists the revocation but still says every
// collection is readable, with the grant and rules in play, although every
// call of that agent for this user is refused.
func TestRedteamAccessOfRevokedAgentSaysReadable(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	svc, rw, _ := redteamService(t, &recordingLog{}, nil)
	me := "rt-access-revoked"
	if _, err := revocation.NewStore(f.Pool).Revoke(ctx, revocation.Request{Tenant: "acme", Agent: "summarizer", Subject: me, By: "secops"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "heard", func() bool {
		return rw.Check(revocation.Caller{Tenant: "acme", Subject: me, Agent: "summarizer"}) != nil
	})
	if _, err := searchAs(t, svc, ownToken(t, me, "summarizer")); retriever.CodeOf(err) != service.CodeAgentRevoked {
		t.Fatalf("the revoked agent's search: %v", err)
	}
	a, err := svc.Access(ctx, bearer(ownToken(t, me, "")), "summarizer")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Revocations) != 1 {
		t.Errorf("revocations listed: %+v", a.Revocations)
	}
	if c := a.Collections[0]; c.Readable {
		t.Errorf("GET /v1/access says the revoked agent may read %s (rules %v), yet its every call is refused %s", c.Collection, c.Rules, service.CodeAgentRevoked)
	}
}

// DEFENCE: the statement text (and so every statement cache) is the same
// for an agent with or without its approval; only the arguments differ.
func TestRedteamStatementTextIndependentOfApproval(t *testing.T) {
	f := e2e.Shared(t)
	sub := &policy.Subject{ID: "rt-text", Tenant: "acme", Attributes: map[string]any{"clearance": int64(3)}}
	frag := func(on bool) *filter.Fragment {
		fr, err := f.Policy.Fragment("chunks", filter.Request{Subject: sub, Agent: "summarizer", Approved: func(string, string) bool { return on }})
		if err != nil {
			t.Fatal(err)
		}
		return fr
	}
	on, off := frag(true), frag(false)
	if on.SQL(1) != off.SQL(1) || on.Shape() != off.Shape() {
		t.Errorf("text differs:\n%s\n%s", on.SQL(1), off.SQL(1))
	}
	if slices.Equal(on.ApprovalRequired(), off.ApprovalRequired()) {
		t.Errorf("approval_required identical: %v", on.ApprovalRequired())
	}
}

// orchestratorPolicy is the fixture's policy with a second agent that
// may read whatever its user may.
func orchestratorPolicy(t *testing.T) *filter.Policy {
	t.Helper()
	src := strings.Replace(e2e.MaskedPolicy, "            ttl: 30m\n",
		"            ttl: 30m\n      orchestrator:\n        allow:\n          - name: anything\n            when: \"true\"\n", 1)
	if src == e2e.MaskedPolicy {
		t.Fatal("could not add the orchestrator agent to the policy")
	}
	set, err := policy.Parse(policy.Source{Name: "orchestrator.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FINDING (revocation bypass through delegation): an agent revocation
// ("every token in which it acts") is matched against the outermost act
// claim only. A token whose act chain names the revoked agent as a prior
// actor (RFC 8693 delegation: the revoked agent handed its task to another
// agent through token exchange) is served; the identity the service sees
// does not even carry the prior actors. The same holds for an agent
// revoked for one user only.
func TestRedteamRevokedAgentActsThroughAnotherAgent(t *testing.T) {
	f := e2e.Shared(t)
	ctx := context.Background()
	svc, rw, _ := redteamService(t, &recordingLog{}, func(c *service.Config) { c.Policies = retriever.StaticPolicy(orchestratorPolicy(t)) })
	me := "rt-chain-user"
	via := rawToken(t, me, map[string]any{"sub": "orchestrator", "act": map[string]any{"sub": "summarizer"}})
	if _, err := searchAs(t, svc, via); err != nil {
		t.Fatalf("before revoking: %v", err)
	}
	r, err := revocation.NewStore(f.Pool).Revoke(ctx, revocation.Request{Tenant: "acme", Agent: "summarizer", Subject: me, By: "secops", Reason: "compromised"})
	if err != nil {
		t.Fatal(err)
	}
	defer revocation.NewStore(f.Pool).Lift(ctx, r.ID, "secops")
	waitFor(t, "heard", func() bool {
		return rw.Check(revocation.Caller{Tenant: "acme", Subject: me, Agent: "summarizer"}) != nil
	})
	if _, err := searchAs(t, svc, ownToken(t, me, "summarizer")); retriever.CodeOf(err) != service.CodeAgentRevoked {
		t.Fatalf("control, the revoked agent directly: %v", err)
	}
	resp, err := searchAs(t, svc, via)
	if retriever.CodeOf(err) != service.CodeAgentRevoked {
		n := 0
		if resp != nil {
			n = len(resp.Results)
		}
		t.Errorf("the revoked agent acting through orchestrator (act: orchestrator <- summarizer): %v, %d chunks served; want %s",
			err, n, service.CodeAgentRevoked)
	}
}
