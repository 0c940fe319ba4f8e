package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/retriever/auth"
	"github.com/ragfence/ragfence/retriever/httpapi"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
)

// checkResults checks a 200 answer for u: k results (there are always
// enough visible rows in the demo data), nearest first, each score the
// row's true similarity, each row visible to u by the oracle, and most of
// the exact top k found (HNSW is approximate).
func checkResults(t *testing.T, f *e2e.Fixture, u e2e.User, q []float32, k int, resp service.Response, extra string) map[string]e2e.ChunkRow {
	t.Helper()
	got := resultIDs(resp)
	if len(got) != k {
		t.Errorf("%s: %d results, want %d", u.ID, len(got), k)
	}
	for i := 1; i < len(resp.Results); i++ {
		if resp.Results[i].Score > resp.Results[i-1].Score {
			t.Errorf("%s: result %d scores %v, more than result %d (%v): not ordered", u.ID, i, resp.Results[i].Score, i-1, resp.Results[i-1].Score)
		}
	}
	rows := f.Chunks(t, got, q)
	for _, r := range resp.Results {
		if want := 1 - rows[r.ID].Distance; absFloat(r.Score-want) > 1e-5 {
			t.Errorf("%s: result %s scores %v, its similarity is %v", u.ID, r.ID, r.Score, want)
		}
	}
	if bad := f.Invisible(t, u, got); len(bad) > 0 {
		t.Errorf("%s: results %v are not visible to %s", u.ID, bad, u.ID)
	}
	exact := f.ExactTopK(t, u, q, k, extra)
	common := 0
	for _, id := range exact {
		if slices.Contains(got, id) {
			common++
		}
	}
	if common < k*8/10 {
		t.Errorf("%s: %d of the exact top %d found: got %v, exact %v", u.ID, common, k, got, exact)
	}
	return rows
}

func absFloat(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// distinguishingTopic returns a topic whose exact top k differ for a and
// b because of their grants: a's include rows b may not see.
func distinguishingTopic(t *testing.T, f *e2e.Fixture, a, b e2e.User, k int) []float32 {
	t.Helper()
	for i := range f.Data.Topics {
		top := f.ExactTopK(t, a, f.Topic(i), k, "")
		if len(f.Invisible(t, b, top)) > 0 {
			return f.Topic(i)
		}
	}
	t.Fatalf("no topic tells %s and %s apart", a.ID, b.ID)
	return nil
}

func TestUsersSeeTheirOwnRows(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	const k = 10
	q := distinguishingTopic(t, f, f.User(t, "alice"), f.User(t, "bob"), k)
	answers := map[string]service.Response{}
	for _, id := range []string{"alice", "bob", "dave"} {
		r := ts.retrieve(t, f.Token(t, id, ""), retrieveBody{Collection: "chunks", Embedding: q, K: k})
		resp := r.response(t)
		if resp.Decision.ID != r.decisionID() {
			t.Errorf("%s: decision.id %q, X-Decision-Id %q", id, resp.Decision.ID, r.decisionID())
		}
		rows := checkResults(t, f, f.User(t, id), q, k, resp, "")
		for _, res := range resp.Results {
			if want := f.User(t, id).Tenant; rows[res.ID].Tenant != want {
				t.Errorf("%s got chunk %s of tenant %s", id, res.ID, rows[res.ID].Tenant)
			}
		}
		answers[id] = resp
	}
	if slices.Equal(resultIDs(answers["alice"]), resultIDs(answers["bob"])) {
		t.Errorf("alice and bob got the same results %v; their grants differ", resultIDs(answers["alice"]))
	}
	// Bob's answer lacks something alice sees that bob may not, and the
	// other way round: the difference is the policy, not chance.
	if len(f.Invisible(t, f.User(t, "bob"), resultIDs(answers["alice"]))) == 0 {
		t.Errorf("every row alice got is visible to bob too, though her exact top %d has rows he may not see", k)
	}
	// The default k, when the request gives none.
	r := ts.retrieve(t, f.Token(t, "alice", ""), retrieveBody{Collection: "chunks", Embedding: q})
	if n := len(r.response(t).Results); n != 10 {
		t.Errorf("no k: %d results, want the default 10", n)
	}
}

func TestAgentSeesSubsetOfItsUser(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	alice := f.User(t, "alice")
	const grant = "c.source IN ('wiki', 'drive') AND c.classification = 0"
	for _, topic := range []int{3, 11} {
		q := f.Topic(topic)
		r := ts.retrieve(t, f.Token(t, "alice", "summarizer"), retrieveBody{Collection: "chunks", Embedding: q, K: 10})
		resp := r.response(t)
		if resp.Decision.Agent != "summarizer" {
			t.Errorf("decision.agent %q, want summarizer", resp.Decision.Agent)
		}
		if !slices.Contains(resp.Decision.Rules, "agent summarizer allow:docs-only") {
			t.Errorf("decision.rules %v lack the agent's grant", resp.Decision.Rules)
		}
		rows := checkResults(t, f, alice, q, 10, resp, grant)
		for id, c := range rows {
			if (c.Source != "wiki" && c.Source != "drive") || c.Classification != 0 {
				t.Errorf("the agent got chunk %s (source %s, classification %d) outside its grant", id, c.Source, c.Classification)
			}
		}
		// Everything the agent saw, alice may see herself.
		mine := ts.retrieve(t, f.Token(t, "alice", ""), retrieveBody{Collection: "chunks", Embedding: q, K: 100}).response(t)
		for _, id := range resultIDs(resp) {
			if !slices.Contains(resultIDs(mine), id) && len(f.Invisible(t, alice, []string{id})) > 0 {
				t.Errorf("the agent got chunk %s, which alice may not see", id)
			}
		}
	}
	r := ts.retrieve(t, f.Token(t, "alice", "rogue"), retrieveBody{Collection: "chunks", Embedding: f.Topic(3), K: 10})
	wantError(t, r, http.StatusForbidden, "agent_not_granted")
}

func TestMaskedColumnsReadNull(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	q := f.Topic(5)
	for _, tc := range []struct {
		user       string
		wantMasked bool
	}{{"alice", true}, {"bob", true}, {"carol", false}} {
		resp := ts.retrieve(t, f.Token(t, tc.user, ""), retrieveBody{Collection: "chunks", Embedding: q, K: 10}).response(t)
		if !slices.Equal(resp.Decision.Masked, []string{"contact_email", "metadata"}) {
			t.Errorf("%s: decision.masked %v, want [contact_email metadata]", tc.user, resp.Decision.Masked)
		}
		if len(resp.Results) == 0 {
			t.Fatalf("%s: no results", tc.user)
		}
		rows := f.Chunks(t, resultIDs(resp), q)
		for _, res := range resp.Results {
			null := len(res.Metadata) == 0 || string(res.Metadata) == "null"
			if null != tc.wantMasked {
				t.Errorf("%s: chunk %s metadata %s, want masked=%v", tc.user, res.ID, res.Metadata, tc.wantMasked)
			}
			if !null {
				var got map[string]any
				if err := json.Unmarshal(res.Metadata, &got); err != nil || fmt.Sprint(got) != fmt.Sprint(rows[res.ID].Metadata) {
					t.Errorf("%s: chunk %s metadata %s, the table has %v", tc.user, res.ID, res.Metadata, rows[res.ID].Metadata)
				}
			}
			if res.Content == nil || !strings.Contains(*res.Content, "notes from") {
				t.Errorf("%s: chunk %s content %v: an unmasked column must come back", tc.user, res.ID, res.Content)
			}
		}
	}
}

// TestFiltersOnMaskedColumnsSeeTheMask checks a filter cannot reveal what a
// mask hides: alice may not read metadata, so filtering on metadata.lang
// must not tell her which rows have which language.
func TestFiltersOnMaskedColumnsSeeTheMask(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	q := f.Topic(5)
	alice := ts.retrieve(t, f.Token(t, "alice", ""), retrieveBody{Collection: "chunks", Embedding: q, K: 10,
		Filter: map[string]any{"metadata.lang": "de"}}).response(t)
	if len(alice.Results) != 0 {
		rows := f.Chunks(t, resultIDs(alice), q)
		langs := map[string]int{}
		for _, r := range rows {
			langs[fmt.Sprint(r.Metadata["lang"])]++
		}
		t.Errorf("alice, who may not read metadata, filtered on metadata.lang = de and got %d rows (languages %v): the filter reveals the masked column", len(alice.Results), langs)
	}
	carol := ts.retrieve(t, f.Token(t, "carol", ""), retrieveBody{Collection: "chunks", Embedding: q, K: 10,
		Filter: map[string]any{"metadata.lang": "de"}}).response(t)
	if len(carol.Results) != 10 {
		t.Errorf("carol (pii-reader) filtered on metadata.lang: %d results, want 10", len(carol.Results))
	}
}

func TestFilters(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	q := f.Topic(7)
	carol := f.User(t, "carol") // reads metadata (pii-reader), sees every acme row
	tok := f.Token(t, "carol", "")
	cases := []struct {
		name   string
		filter map[string]any
		sql    string // the same condition for the oracle
		check  func(e2e.ChunkRow) bool
	}{
		{"source", map[string]any{"source": "wiki"}, "c.source = 'wiki'",
			func(c e2e.ChunkRow) bool { return c.Source == "wiki" }},
		{"classification $lte", map[string]any{"classification": map[string]any{"$lte": 0}}, "c.classification <= 0",
			func(c e2e.ChunkRow) bool { return c.Classification <= 0 }},
		{"source $in", map[string]any{"source": map[string]any{"$in": []string{"slack", "jira"}}}, "c.source IN ('slack', 'jira')",
			func(c e2e.ChunkRow) bool { return c.Source == "slack" || c.Source == "jira" }},
		{"metadata.lang", map[string]any{"metadata.lang": "de"}, "c.metadata->>'lang' = 'de'",
			func(c e2e.ChunkRow) bool { return c.Metadata["lang"] == "de" }},
		{"metadata.year range", map[string]any{"metadata.year": map[string]any{"$gte": 2023, "$lt": 2025}},
			"(c.metadata->>'year')::int >= 2023 AND (c.metadata->>'year')::int < 2025",
			func(c e2e.ChunkRow) bool {
				y, _ := c.Metadata["year"].(float64)
				return y >= 2023 && y < 2025
			}},
		{"metadata.topic $ne and source", map[string]any{"metadata.topic": map[string]any{"$ne": "billing"}, "source": "drive"},
			"c.metadata->>'topic' <> 'billing' AND c.source = 'drive'",
			func(c e2e.ChunkRow) bool { return c.Metadata["topic"] != "billing" && c.Source == "drive" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: q, K: 10, Filter: tc.filter}).response(t)
			rows := checkResults(t, f, carol, q, 10, resp, tc.sql)
			for id, c := range rows {
				if !tc.check(c) {
					t.Errorf("chunk %s does not match the filter: %+v", id, c)
				}
			}
		})
	}
	// A year given as a string matches no number: jsonb values of different
	// types are not compared.
	resp := ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: q, K: 10,
		Filter: map[string]any{"metadata.year": map[string]any{"$gte": "2023"}}}).response(t)
	if len(resp.Results) != 0 {
		t.Errorf("year >= \"2023\" (a string) matched %d rows", len(resp.Results))
	}

	t.Run("min_score", func(t *testing.T) {
		all := ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: q, K: 20}).response(t)
		if len(all.Results) != 20 {
			t.Fatalf("%d results, want 20", len(all.Results))
		}
		// A threshold between the 5th and 6th scores keeps exactly 5.
		min := (all.Results[4].Score + all.Results[5].Score) / 2
		kept := ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: q, K: 20, MinScore: &min}).response(t)
		if !slices.Equal(resultIDs(kept), resultIDs(all)[:5]) {
			t.Errorf("min_score %v kept %v, want %v", min, resultIDs(kept), resultIDs(all)[:5])
		}
		for _, r := range kept.Results {
			if r.Score < min {
				t.Errorf("result %s scores %v, below min_score %v", r.ID, r.Score, min)
			}
		}
		none := ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: q, K: 20, MinScore: e2e.PtrTo(0.9999)}).response(t)
		if len(none.Results) != 0 {
			t.Errorf("min_score 0.9999 kept %d results", len(none.Results))
		}
	})
}

// errorCase is a request the server must refuse with status and code.
type errorCase struct {
	name   string
	status int
	code   string
	send   func(t testing.TB) reply
}

// errorCases are one request per error class, against ts (and a second
// server whose database is down).
func errorCases(t *testing.T, f *e2e.Fixture, ts *testServer) []errorCase {
	alice := f.Token(t, "alice", "")
	vec := f.Topic(1)
	embedding, _ := json.Marshal(vec)
	post := func(token, contentType string, body []byte) func(testing.TB) reply {
		return func(t testing.TB) reply {
			authz := ""
			if token != "" {
				authz = "Bearer " + token
			}
			r := httpDo(t, http.MethodPost, ts.URL+"/v1/retrieve", contentType, authz, body)
			if r.decisionID() == "" {
				t.Errorf("%v: no X-Decision-Id", r)
			}
			return r
		}
	}
	js := func(format string, args ...any) []byte { return []byte(fmt.Sprintf(format, args...)) }
	ok := js(`{"collection": "chunks", "embedding": %s, "k": 3}`, embedding)
	as := func(c auth.MintClaims) string { return e2e.MintToken(t, c) }
	u := f.User(t, "alice")
	claims := func(edit func(*auth.MintClaims)) auth.MintClaims {
		c := auth.MintClaims{Subject: u.ID, Tenant: u.Tenant, Roles: u.Roles, Groups: u.Groups,
			Attributes: map[string]any{"clearance": u.Clearance}, IssuedAt: e2e.FixedNow}
		edit(&c)
		return c
	}
	forged, err := auth.Mint([]byte("another-secret-another-secret-another-secret"), claims(func(*auth.MintClaims) {}))
	if err != nil {
		t.Fatal(err)
	}
	wrongDim := make([]float32, len(vec)-1)
	huge := strings.Replace(string(embedding), "[", "[1e39,", 1)
	over := append(js(`{"collection": "chunks", "embedding": %s, "k": 3, "pad": "`, embedding), bytes.Repeat([]byte("x"), 1<<20)...)
	over = append(over, `"}`...)
	down := newServer(t, serverOptions{pool: e2e.DownPool(t)})

	return []errorCase{
		{"malformed JSON", 400, "invalid_json", post(alice, "application/json", js(`{"collection": "chunks", "embedding": [0.1,`))},
		{"unknown field", 400, "invalid_json", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "colour": "red"}`, embedding))},
		{"two JSON values", 400, "invalid_json", post(alice, "application/json", append(slices.Clone(ok), ok...))},
		{"empty body", 400, "invalid_json", post(alice, "application/json", []byte{})},
		{"wrong dimension", 400, "invalid_embedding", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s}`, e2e.MustMarshal(wrongDim)))},
		{"beyond float32", 400, "invalid_embedding", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s}`, huge))},
		{"empty embedding", 400, "invalid_embedding", post(alice, "application/json", js(`{"collection": "chunks", "embedding": []}`))},
		{"no embedding", 400, "invalid_embedding", post(alice, "application/json", js(`{"collection": "chunks"}`))},
		{"embedding of strings", 400, "invalid_embedding", post(alice, "application/json", js(`{"collection": "chunks", "embedding": ["a"]}`))},
		{"negative k", 400, "invalid_k", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "k": -1}`, embedding))},
		{"k zero", 400, "invalid_k", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "k": 0}`, embedding))},
		{"k a fraction", 400, "invalid_k", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "k": 2.5}`, embedding))},
		{"k in exponent form", 400, "invalid_k", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "k": 1e1}`, embedding))},
		{"k over the maximum", 400, "invalid_k", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "k": 101}`, embedding))},
		{"min_score over 1", 400, "invalid_min_score", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "min_score": 1.5}`, embedding))},
		{"unknown collection", 400, "unknown_collection", post(alice, "application/json", js(`{"collection": "payroll", "embedding": %s}`, embedding))},
		{"no collection", 400, "unknown_collection", post(alice, "application/json", js(`{"embedding": %s}`, embedding))},
		{"undeclared filter field", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"owner_id": "carol"}}`, embedding))},
		{"undeclared metadata key", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"metadata.secret": 1}}`, embedding))},
		{"unknown operator", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"source": {"$regex": "w.*"}}}`, embedding))},
		{"empty $in", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"source": {"$in": []}}}`, embedding))},
		{"filter value of the wrong type", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"classification": "secret"}}`, embedding))},
		{"filter value out of range", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"classification": {"$lt": 99999999999}}}`, embedding))},
		{"object value", 400, "invalid_filter", post(alice, "application/json", js(`{"collection": "chunks", "embedding": %s, "filter": {"source": {"$eq": {"a": 1}}}}`, embedding))},
		{"claim of the wrong type", 400, "invalid_subject", post(as(claims(func(c *auth.MintClaims) { c.Attributes = map[string]any{"clearance": "top"} })), "application/json", ok)},
		{"text/plain", 415, "unsupported_media", post(alice, "text/plain", ok)},
		{"no content type", 415, "unsupported_media", post(alice, "", ok)},
		{"missing token", 401, "unauthenticated", post("", "application/json", ok)},
		{"basic auth", 401, "unauthenticated", func(t testing.TB) reply {
			return httpDo(t, http.MethodPost, ts.URL+"/v1/retrieve", "application/json", "Basic YWxpY2U6c2VjcmV0", ok)
		}},
		{"malformed token", 401, "unauthenticated", post("not.a.jwt", "application/json", ok)},
		{"forged signature", 401, "unauthenticated", post(forged, "application/json", ok)},
		{"expired token", 401, "unauthenticated", post(as(claims(func(c *auth.MintClaims) {
			c.IssuedAt, c.Lifetime = e2e.FixedNow.Add(-time.Hour), 10*time.Minute
		})), "application/json", ok)},
		{"token not valid yet", 401, "unauthenticated", post(as(claims(func(c *auth.MintClaims) { c.IssuedAt = e2e.FixedNow.Add(time.Hour) })), "application/json", ok)},
		{"lifetime over the maximum", 401, "unauthenticated", post(as(claims(func(c *auth.MintClaims) { c.Lifetime = 16 * time.Minute })), "application/json", ok)},
		{"agent without a grant", 403, "agent_not_granted", post(f.Token(t, "alice", "rogue"), "application/json", ok)},
		{"body over the limit", 413, "body_too_large", post(alice, "application/json", over)},
		{"database down", 503, "unavailable", func(t testing.TB) reply {
			r := httpDo(t, http.MethodPost, down.URL+"/v1/retrieve", "application/json", "Bearer "+alice, ok)
			if r.decisionID() == "" {
				t.Errorf("%v: no X-Decision-Id", r)
			}
			return r
		}},
		{"no such endpoint", 404, "not_found", func(t testing.TB) reply {
			return httpDo(t, http.MethodPost, ts.URL+"/v1/search", "application/json", "Bearer "+alice, ok)
		}},
		{"wrong method", 405, "method_not_allowed", func(t testing.TB) reply {
			return httpDo(t, http.MethodGet, ts.URL+"/v1/retrieve", "", "Bearer "+alice, nil)
		}},
	}
}

func TestErrorClasses(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	for _, c := range errorCases(t, f, ts) {
		t.Run(c.name, func(t *testing.T) {
			r := c.send(t)
			wantError(t, r, c.status, c.code)
			var e struct {
				Error struct{ Message string } `json:"error"`
			}
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" {
				t.Errorf("%v: no error.message", r)
			}
		})
	}
}

// TestErrorsLeakNothing checks no answer or log line repeats a token, the
// secret, or rows of the data, whatever the error.
func TestErrorsLeakNothing(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	var bodies []string
	for _, c := range errorCases(t, f, ts) {
		bodies = append(bodies, string(c.send(t).body))
	}
	// Tokens that fail late, after the signature check, carry real claims.
	late := []string{
		f.Token(t, "alice", "rogue"),
		f.Token(t, "dave", "rogue"),
		e2e.MintToken(t, auth.MintClaims{Subject: "alice", Tenant: "acme", IssuedAt: e2e.FixedNow.Add(-time.Hour), Lifetime: time.Minute}),
		e2e.MintToken(t, auth.MintClaims{Subject: "alice", Tenant: "acme", IssuedAt: e2e.FixedNow, Lifetime: time.Hour}),
		e2e.MintToken(t, auth.MintClaims{Subject: "alice", Tenant: "acme", IssuedAt: e2e.FixedNow, Attributes: map[string]any{"clearance": "top"}}),
	}
	for _, tok := range late {
		bodies = append(bodies, string(ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: f.Topic(1)}).body))
	}
	tokens := append(late, f.Token(t, "alice", ""))
	logs := ts.log.String()
	for _, b := range bodies {
		for _, tok := range tokens {
			// The signature alone is enough to spot a token.
			sig := tok[strings.LastIndex(tok, ".")+1:]
			if strings.Contains(b, sig) {
				t.Errorf("an error body repeats a token: %s", b)
			}
		}
		for _, leak := range []string{string(e2e.Secret), "globex", "initech", "notes from", "@acme.example"} {
			if strings.Contains(b, leak) {
				t.Errorf("an error body contains %q: %s", leak, b)
			}
		}
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok[strings.LastIndex(tok, ".")+1:]) {
			t.Errorf("the log repeats a token")
		}
	}
	if strings.Contains(logs, string(e2e.Secret)) {
		t.Errorf("the log contains the secret")
	}
}

// TestRecoversWhenConnectionsDie terminates every connection of the
// database under the running server: a request may fail meanwhile, as 503
// (each pooled connection fails once when next used), then they succeed.
func TestRecoversWhenConnectionsDie(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	tok := f.Token(t, "alice", "")
	q := retrieveBody{Collection: "chunks", Embedding: f.Topic(4), K: 5}
	ts.retrieve(t, tok, q).response(t)
	// Fill the pool, so every connection the next requests get is one that
	// is terminated.
	ctx := context.Background()
	maxConns := int(f.Pool.Config().MaxConns)
	var conns []*pgxpool.Conn
	for range maxConns {
		c, err := f.Pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	admin, err := pgx.Connect(ctx, f.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no connection was terminated")
	}
	var failures []reply
	for try := 0; ; try++ {
		r := ts.retrieve(t, tok, q)
		if r.status == http.StatusOK {
			break
		}
		failures = append(failures, r)
		if r.status != http.StatusServiceUnavailable || r.errorCode() != "unavailable" {
			t.Errorf("after the connections died: %v, want 200 or 503 unavailable", r)
		}
		if try == maxConns { // a failure per pooled connection at most
			t.Fatalf("no success in %d tries after the connections died: %v\nserver log:\n%s", try+1, failures, ts.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d failed requests before recovery", len(failures))
	// Once recovered, it stays so.
	for range 5 {
		ts.retrieve(t, tok, q).response(t)
	}
}

// TestAuditRecordsEveryDecision checks each answer, allowed or refused, has
// its audit row with the answer's facts.
func TestAuditRecordsEveryDecision(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	down := newServer(t, serverOptions{pool: e2e.DownPool(t)})
	q := retrieveBody{Collection: "chunks", Embedding: f.Topic(6), K: 5}

	type want struct {
		subject, tenant, agent, outcome, resource, code string
		rows                                            []string
		rules                                           []string
		version                                         string
	}
	got := map[string]want{}
	servers := map[string]*testServer{}
	record := func(ts *testServer, r reply, w want) {
		if r.status == http.StatusOK {
			resp := r.response(t)
			w.rows, w.rules, w.version = resultIDs(resp), resp.Decision.Rules, resp.Decision.PolicyVersion
		} else {
			w.code = r.errorCode()
		}
		got[r.decisionID()] = w
		servers[r.decisionID()] = ts
	}

	r := ts.retrieve(t, f.Token(t, "alice", ""), q)
	record(ts, r, want{subject: "alice", tenant: "acme", outcome: "allowed", resource: "chunks"})
	if len(r.response(t).Results) != 5 {
		t.Fatalf("%v: want 5 results", r)
	}
	r = ts.retrieve(t, f.Token(t, "alice", "summarizer"), q)
	record(ts, r, want{subject: "alice", tenant: "acme", agent: "summarizer", outcome: "allowed", resource: "chunks"})
	// No clearance claim: the deny rule cannot be evaluated, so nothing is
	// visible; 200 with no rows, recorded as denied.
	r = ts.retrieve(t, e2e.MintToken(t, auth.MintClaims{Subject: "bob", Tenant: "acme", Roles: []string{"viewer"}, IssuedAt: e2e.FixedNow}), q)
	if resp := r.response(t); len(resp.Results) != 0 || resp.Results == nil {
		t.Errorf("%v: want an empty (not null) result list", r)
	}
	record(ts, r, want{subject: "bob", tenant: "acme", outcome: "denied", resource: "chunks"})
	r = ts.retrieve(t, f.Token(t, "dave", "rogue"), q)
	wantError(t, r, http.StatusForbidden, "agent_not_granted")
	record(ts, r, want{subject: "dave", tenant: "globex", agent: "rogue", outcome: "denied", resource: "chunks"})
	r = ts.retrieve(t, "", q)
	wantError(t, r, http.StatusUnauthorized, "unauthenticated")
	record(ts, r, want{outcome: "unauthenticated"})
	r = ts.retrieve(t, f.Token(t, "erin", ""), retrieveBody{Collection: "chunks", Embedding: q.Embedding, K: 1000})
	wantError(t, r, http.StatusBadRequest, "invalid_k")
	record(ts, r, want{subject: "erin", tenant: "initech", outcome: "invalid"})
	r = ts.retrieve(t, f.Token(t, "erin", ""), retrieveBody{Collection: "chunks", Embedding: q.Embedding, Filter: map[string]any{"owner_id": "x"}})
	wantError(t, r, http.StatusBadRequest, "invalid_filter")
	record(ts, r, want{subject: "erin", tenant: "initech", outcome: "invalid", resource: "chunks"})
	r = down.retrieve(t, f.Token(t, "carol", ""), q)
	wantError(t, r, http.StatusServiceUnavailable, "unavailable")
	record(down, r, want{subject: "carol", tenant: "acme", outcome: "error", resource: "chunks"})

	ts.closeWriter(t)
	down.closeWriter(t)
	rows := f.AuditRows(t, e2e.SortedKeys(got))
	if len(rows) != len(got) {
		t.Errorf("%d audit rows for %d decisions", len(rows), len(got))
	}
	for id, w := range got {
		a, ok := rows[id]
		if !ok {
			t.Errorf("decision %s (%+v) has no audit row", id, w)
			continue
		}
		agent := ""
		if a.Agent != nil {
			agent = *a.Agent
		}
		if a.Subject != w.subject || a.Tenant != w.tenant || agent != w.agent || a.Outcome != w.outcome || a.Resource != w.resource {
			t.Errorf("decision %s: audit subject=%q tenant=%q agent=%q outcome=%q resource=%q, want %+v",
				id, a.Subject, a.Tenant, agent, a.Outcome, a.Resource, w)
		}
		if a.RowCount != len(w.rows) || !slices.Equal(a.RowIDs, nonNilStrings(w.rows)) {
			t.Errorf("decision %s: audit rows %d %v, the answer had %v", id, a.RowCount, a.RowIDs, w.rows)
		}
		if w.code == "" && (!slices.Equal(a.Rules, w.rules) || a.Version != w.version) {
			t.Errorf("decision %s: audit rules %v version %q, the answer had %v %q", id, a.Rules, a.Version, w.rules, w.version)
		}
		if code, _ := a.Detail["error"].(string); code != w.code {
			t.Errorf("decision %s: audit detail %v, want error %q", id, a.Detail, w.code)
		}
		if a.Detail["channel"] != httpapi.Channel {
			t.Errorf("decision %s: audit detail %v, want channel %q", id, a.Detail, httpapi.Channel)
		}
		if !a.DecidedAt.Equal(servers[id].now) {
			t.Errorf("decision %s: decided_at %v, want the server clock's %v", id, a.DecidedAt, servers[id].now)
		}
		if a.LatencyMS < 0 || a.LatencyMS > 30_000 {
			t.Errorf("decision %s: latency %v ms: not the request's duration", id, a.LatencyMS)
		}
	}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

var shutdownRuns atomic.Int64

// TestShutdownUnderLoadLosesNoAuditRecord shuts the HTTP server and then the
// audit writer down while requests are in flight: every answer that came
// back has its audit row, and the writer wrote all it accepted.
func TestShutdownUnderLoadLosesNoAuditRecord(t *testing.T) {
	f := e2e.Shared(t)
	// A clock of its own (per run, for -count), so this server's rows can
	// be counted.
	ts := newServer(t, serverOptions{now: e2e.FixedNow.Add(time.Duration(shutdownRuns.Add(1)) * time.Hour)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: ts.srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/v1/retrieve"
	// At most 64 connections, each opened at the start: a connection that
	// has not sent its first request by the time of Shutdown would hold it
	// up for 5 s (net/http counts new connections as busy that long).
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

	users := []string{"alice", "bob", "carol", "dave", "erin"}
	bodies := [][]byte{
		e2e.MustMarshal(retrieveBody{Collection: "chunks", Embedding: f.Topic(8), K: 5}),
		e2e.MustMarshal(retrieveBody{Collection: "chunks", Embedding: f.Topic(9), K: 5, Filter: map[string]any{"source": "wiki"}}),
		e2e.MustMarshal(retrieveBody{Collection: "chunks", Embedding: f.Topic(9), K: -1}), // 400
	}
	tokens := make([]string, len(users))
	for i, u := range users {
		tokens[i] = f.Token(t, u, "")
	}
	const n = 200
	replies := make([]reply, n)
	errs := make([]error, n)
	answered := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			authz := "Bearer " + tokens[i%len(tokens)]
			if i%10 == 9 {
				authz = "" // 401
			}
			replies[i], errs[i] = httpSend(client, http.MethodPost, url, "application/json", authz, bodies[i%len(bodies)])
			answered <- struct{}{}
		})
	}
	// Shut down once a quarter of the requests are answered, with the rest
	// in flight or waiting for a connection.
	for range n / 4 {
		<-answered
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := ts.writer.Close(ctx); err != nil {
		t.Fatalf("audit writer close: %v", err)
	}
	wg.Wait()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}

	var answeredIDs []string
	statuses := map[int]int{}
	failed := 0
	for i, r := range replies {
		if errs[i] != nil {
			failed++
			continue
		}
		statuses[r.status]++
		id := r.decisionID()
		if id == "" {
			t.Errorf("%v: no X-Decision-Id", r)
			continue
		}
		if r.status == http.StatusOK || (r.status >= 400 && r.status < 500) {
			answeredIDs = append(answeredIDs, id)
		} else {
			t.Errorf("%v: want 200 or 4xx while shutting down in order", r)
		}
	}
	t.Logf("statuses %v, %d requests got no answer", statuses, failed)
	if len(answeredIDs) < n/4 {
		t.Fatalf("only %d answers", len(answeredIDs))
	}
	rows := f.AuditRows(t, answeredIDs)
	for _, id := range answeredIDs {
		if _, ok := rows[id]; !ok {
			t.Errorf("answered decision %s has no audit row", id)
		}
	}
	st := ts.writer.Stats()
	if st.Lost != 0 || st.Rejected != 0 || st.Refused != 0 || st.Written != st.Enqueued {
		t.Errorf("writer stats %+v: want everything accepted written", st)
	}
	var written int
	if err := f.Pool.QueryRow(context.Background(), "SELECT count(*) FROM ragfence.audit_log WHERE decided_at = $1", ts.now).Scan(&written); err != nil {
		t.Fatal(err)
	}
	// Every row is an answer: a request the server handled was answered.
	if written != len(answeredIDs) || uint64(written) != st.Written {
		t.Errorf("%d audit rows, %d answers, writer wrote %d", written, len(answeredIDs), st.Written)
	}
}

func TestHealthReadinessMetrics(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	r := httpDo(t, http.MethodGet, ts.URL+"/healthz", "", "", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"ok"`) {
		t.Errorf("%v: want 200 ok", r)
	}
	type ready struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	readiness := func(ts *testServer) (reply, ready) {
		r := httpDo(t, http.MethodGet, ts.URL+"/readyz", "", "", nil)
		var rd ready
		if err := json.Unmarshal(r.body, &rd); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		return r, rd
	}
	r, rd := readiness(ts)
	if r.status != http.StatusOK || !rd.Ready || rd.Checks["database"] != "ok" || rd.Checks["policy"] != "ok" || rd.Checks["audit"] != "ok" {
		t.Errorf("%v: want 200, ready, every check ok", r)
	}
	down := newServer(t, serverOptions{pool: e2e.DownPool(t)})
	r, rd = readiness(down)
	if r.status != http.StatusServiceUnavailable || rd.Ready || rd.Checks["database"] == "ok" || rd.Checks["database"] == "" {
		t.Errorf("database down: %v, want 503 with checks.database not ok", r)
	}
	if strings.Contains(string(r.body), "127.0.0.1") {
		t.Errorf("readyz shows the database address: %s", r.body)
	}
	// An audit log that cannot write: not ready, and /readyz, which answers
	// anyone, does not say where the database is.
	failing := newServer(t, serverOptions{auditPool: e2e.DownPool(t)})
	failing.retrieve(t, f.Token(t, "alice", ""), retrieveBody{Collection: "chunks", Embedding: f.Topic(2), K: 1}).response(t)
	deadline := time.Now().Add(5 * time.Second)
	for failing.writer.Healthy() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r, rd = readiness(failing)
	if r.status != http.StatusServiceUnavailable || rd.Checks["audit"] == "ok" || rd.Checks["database"] != "ok" {
		t.Errorf("audit failing: %v, want 503 with checks.audit not ok", r)
	}
	for _, leak := range []string{"127.0.0.1", "user=", "postgres"} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("readyz shows %q: %s", leak, r.body)
		}
	}

	tok := f.Token(t, "alice", "")
	ts.retrieve(t, tok, retrieveBody{Collection: "chunks", Embedding: f.Topic(2), K: 3}).response(t)
	ts.retrieve(t, "", retrieveBody{Collection: "chunks", Embedding: f.Topic(2), K: 3})
	m := httpDo(t, http.MethodGet, ts.URL+"/metrics", "", "", nil)
	if m.status != http.StatusOK {
		t.Fatalf("%v", m)
	}
	text := string(m.body)
	for _, want := range []string{
		`ragfence_retrieve_duration_seconds_bucket{outcome="allowed"`,
		`ragfence_retrieve_duration_seconds_count{outcome="unauthenticated"} 1`,
		`ragfence_decisions_total{outcome="allowed"} 1`,
		`ragfence_decisions_total{outcome="unauthenticated"} 1`,
		"ragfence_audit_queue_depth ",
		"ragfence_db_pool_total_conns ",
		"ragfence_retrieve_rows_count 1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The latency histogram measures the request, not the distance from the
	// injected clock: both requests took well under 5 s.
	if !strings.Contains(text, `ragfence_retrieve_duration_seconds_bucket{outcome="allowed",le="5"} 1`) {
		t.Errorf("an allowed request took more than 5 s by the histogram:\n%s", linesWithPrefix(text, "ragfence_retrieve_duration_seconds"))
	}
}

func linesWithPrefix(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// With "explain": true each result names the allow rules that let it in,
// and each named rule holds for the row as the database has it.
func TestExplainNamesTheRulesBehindEachRow(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	alice := f.User(t, "alice")
	q := f.Topic(5)
	plain := ts.retrieve(t, f.Token(t, "alice", ""), retrieveBody{Collection: "chunks", Embedding: q, K: 20}).response(t)
	for _, r := range plain.Results {
		if r.Rules != nil {
			t.Fatalf("result %s has rules %v without explain", r.ID, r.Rules)
		}
	}
	for _, agent := range []string{"", "summarizer"} {
		resp := ts.retrieve(t, f.Token(t, "alice", agent), retrieveBody{Collection: "chunks", Embedding: q, K: 20, Explain: true}).response(t)
		if len(resp.Results) == 0 {
			t.Fatal("no results")
		}
		rows := f.Chunks(t, resultIDs(resp), q)
		seen := map[string]bool{}
		for _, r := range resp.Results {
			c := rows[r.ID]
			if len(r.Rules) == 0 {
				t.Errorf("agent %q: result %s names no rule", agent, r.ID)
			}
			agentRule := false
			for _, rule := range r.Rules {
				seen[rule] = true
				holds := map[string]bool{
					"tenant-wide":          c.Visibility == "tenant",
					"owner":                c.Owner == alice.ID,
					"group-member":         c.Visibility == "group" && overlaps(c.ACL, alice.Groups),
					"shared-with-me":       true, // a grants row; the SQL is the policy's own
					"tenant-admin":         slices.Contains(alice.Roles, "admin"),
					"summarizer:docs-only": c.Source == "wiki" || c.Source == "drive",
				}
				h, known := holds[rule]
				if !known || !h {
					t.Errorf("agent %q: result %s names rule %q, which does not hold for it (%+v)", agent, r.ID, rule, c)
				}
				agentRule = agentRule || strings.HasPrefix(rule, "summarizer:")
			}
			if agent != "" && !agentRule {
				t.Errorf("result %s for the agent names none of its grant's rules: %v", r.ID, r.Rules)
			}
		}
		if agent == "" && len(seen) < 2 {
			t.Errorf("every result was let in by the same rules %v: the fixture shows no difference", seen)
		}
	}
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
