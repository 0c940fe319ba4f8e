package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/embed"
	"github.com/ragfence/ragfence/retriever/embed/embedtest"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// TestQueryText: a request may send text instead of a vector when the
// server has an embedder; the embedder's failures and the caller's mistakes
// get their own answers.
func TestQueryText(t *testing.T) {
	f := e2e.Shared(t)
	dim := len(f.Topic(0))
	fake := embedtest.NewServer(t, dim)
	client, err := embed.New(embed.Config{URL: fake.URL, Model: fake.Model, APIKey: fake.Key})
	if err != nil {
		t.Fatal(err)
	}
	ts := newServer(t, serverOptions{embedder: client})
	token := f.Token(t, "alice", "")

	byText := ts.retrieve(t, token, map[string]any{"collection": "chunks", "query": "accessibility notes", "k": 5})
	if byText.status != http.StatusOK {
		t.Fatalf("query text: %s", byText)
	}
	byVector := ts.retrieve(t, token, map[string]any{"collection": "chunks", "embedding": fake.Vector("accessibility notes"), "k": 5})
	if !slices.Equal(ids(byText.response(t).Results), ids(byVector.response(t).Results)) {
		t.Fatalf("text and its vector give different results:\n%s\n%s", byText, byVector)
	}

	for _, tc := range []struct {
		name   string
		setup  func()
		body   map[string]any
		status int
		code   string
	}{
		{"embedder down", func() { fake.Fail(http.StatusServiceUnavailable, 2) },
			map[string]any{"collection": "chunks", "query": "x"}, http.StatusBadGateway, "embedder_unavailable"},
		{"query too long", nil,
			map[string]any{"collection": "chunks", "query": strings.Repeat("a", 9000)}, http.StatusBadRequest, "invalid_query"},
		{"query and embedding", nil,
			map[string]any{"collection": "chunks", "query": "x", "embedding": fake.Vector("x")}, http.StatusBadRequest, "invalid_embedding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			r := ts.retrieve(t, token, tc.body)
			if r.status != tc.status || r.errorCode() != tc.code {
				t.Fatalf("got %s; want %d %s", r, tc.status, tc.code)
			}
			if strings.Contains(string(r.body), fake.Key) {
				t.Fatalf("the embedder's key leaked: %s", r.body)
			}
		})
	}

	plain := newServer(t, serverOptions{})
	r := plain.retrieve(t, token, map[string]any{"collection": "chunks", "query": "x"})
	if r.status != http.StatusBadRequest || r.errorCode() != "invalid_embedding" {
		t.Fatalf("no embedder: %s", r)
	}
}

func ids(rs []retriever.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}
