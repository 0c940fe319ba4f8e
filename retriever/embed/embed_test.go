package embed_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/retriever/embed"
	"github.com/ragfence/ragfence/retriever/embed/embedtest"
)

const dim = 16

// newClient returns a client of fake, with cfg's zero fields filled from it.
func newClient(t *testing.T, fake *embedtest.Fake, cfg embed.Config) *embed.Client {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = fake.URL
	}
	if cfg.Model == "" {
		cfg.Model = fake.Model
	}
	if cfg.APIKey == "" {
		cfg.APIKey = fake.Key
	}
	c, err := embed.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// wantError checks err is an *Error with code, and that nothing it says
// quotes secret.
func wantError(t *testing.T, err error, code embed.Code, secret string) *embed.Error {
	t.Helper()
	var e *embed.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T); want *embed.Error %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %q (%v); want %q", e.Code, err, code)
	}
	if secret != "" {
		for _, s := range []string{err.Error(), e.Msg, fmt.Sprint(e.Err)} {
			if strings.Contains(s, secret) {
				t.Fatalf("error quotes the key: %q", s)
			}
		}
	}
	return e
}

// hang answers nothing until the client gives up.
func hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func body(status int, header, text string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if k, v, ok := strings.Cut(header, ": "); ok {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(text))
	}
}

func TestEmbed(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	c := newClient(t, fake, embed.Config{})
	ctx := t.Context()

	v1, err := c.Embed(ctx, "quarterly revenue by region")
	if err != nil {
		t.Fatal(err)
	}
	if len(v1) != dim {
		t.Fatalf("len = %d; want %d", len(v1), dim)
	}
	if want := fake.Vector("quarterly revenue by region"); !slices.Equal(v1, want) {
		t.Fatalf("vector = %v; want %v", v1, want)
	}
	v2, err := c.Embed(ctx, "quarterly revenue by region")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v1, v2) {
		t.Fatal("same text, different vectors")
	}
	v3, err := c.Embed(ctx, "holiday schedule")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(v1, v3) {
		t.Fatal("different texts, same vector")
	}

	last := fake.Last()
	want := embedtest.Request{
		Method: http.MethodPost, Path: "/v1/embeddings", Authorization: "Bearer " + fake.Key,
		Model: fake.Model, Input: []string{"holiday schedule"},
	}
	if !equalRequest(last, want) {
		t.Fatalf("request = %+v; want %+v", last, want)
	}
	if n := fake.Requests(); n != 3 {
		t.Fatalf("requests = %d; want 3", n)
	}
}

func equalRequest(a, b embedtest.Request) bool {
	return a.Method == b.Method && a.Path == b.Path && a.Authorization == b.Authorization &&
		a.Model == b.Model && slices.Equal(a.Input, b.Input) && a.Dimensions == b.Dimensions
}

func TestDimensions(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)

	c := newClient(t, fake, embed.Config{Dimensions: dim})
	if _, err := c.Embed(t.Context(), "hello"); err != nil {
		t.Fatal(err)
	}
	if got := fake.Last().Dimensions; got != dim {
		t.Fatalf("dimensions sent = %d; want %d", got, dim)
	}

	// The fake, like many servers, ignores "dimensions".
	c = newClient(t, fake, embed.Config{Dimensions: dim / 2})
	_, err := c.Embed(t.Context(), "hello")
	e := wantError(t, err, embed.CodeBadResponse, fake.Key)
	if want := fmt.Sprintf("embedding service returned %d dimensions; expected %d", dim, dim/2); e.Msg != want {
		t.Fatalf("msg = %q; want %q", e.Msg, want)
	}
}

func TestNoAPIKey(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	c, err := embed.New(embed.Config{URL: fake.URL, Model: fake.Model})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Embed(t.Context(), "hello")
	e := wantError(t, err, embed.CodeUpstream, "")
	if e.Status != http.StatusUnauthorized {
		t.Fatalf("status = %d; want 401", e.Status)
	}
	if got := fake.Last().Authorization; got != "" {
		t.Fatalf("Authorization = %q; want none", got)
	}
}

func TestAPIKeyNeverInErrors(t *testing.T) {
	t.Parallel()
	const key = "sk-live-SECRET-4f9a2c77d1e0"
	fake := embedtest.NewServer(t, dim)

	// Wrong key: the fake echoes it in its 401 message.
	c := newClient(t, fake, embed.Config{APIKey: key})
	_, err := c.Embed(t.Context(), "hello")
	e := wantError(t, err, embed.CodeUpstream, key)
	if e.Status != http.StatusUnauthorized || e.Msg != "embedding service refused the credentials (HTTP 401)" {
		t.Fatalf("got %d %q", e.Status, e.Msg)
	}
	if fake.Requests() != 1 {
		t.Fatalf("requests = %d; a 401 is not retried", fake.Requests())
	}

	// Other statuses whose message quotes the key, whole or masked.
	for _, msg := range []string{
		"bad key " + key,
		"Incorrect API key provided: sk-live-****d1e0",
	} {
		fake.Respond(1, body(400, "", fmt.Sprintf(`{"error":{"message":%q}}`, msg)))
		_, err = c.Embed(t.Context(), "hello")
		e = wantError(t, err, embed.CodeUpstream, key)
		if e.Msg != "embedding service returned HTTP 400" {
			t.Fatalf("msg = %q; want the upstream message dropped", e.Msg)
		}
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	for _, u := range []string{
		fake.URL,
		fake.URL + "/",
		fake.URL + "/v1",
		fake.URL + "/v1/",
		fake.URL + "/v1/embeddings",
		fake.URL + "/v1/embeddings/",
		"  " + fake.URL + "  ",
	} {
		c := newClient(t, fake, embed.Config{URL: u})
		if _, err := c.Embed(t.Context(), "hello"); err != nil {
			t.Errorf("URL %q: %v", u, err)
			continue
		}
		if p := fake.Last().Path; p != "/v1/embeddings" {
			t.Errorf("URL %q: path = %q", u, p)
		}
	}

	// A full URL elsewhere is used as is, query included.
	c := newClient(t, fake, embed.Config{URL: fake.URL + "/openai/embeddings?api-version=1"})
	_, err := c.Embed(t.Context(), "hello")
	wantError(t, err, embed.CodeUpstream, fake.Key)
	if p := fake.Last().Path; p != "/openai/embeddings" {
		t.Errorf("path = %q; want /openai/embeddings", p)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  embed.Config
		want string
	}{
		{"no URL", embed.Config{Model: "m"}, "embed: URL is required"},
		{"ftp", embed.Config{URL: "ftp://example.com", Model: "m"}, "embed: URL scheme must be http or https"},
		{"no scheme", embed.Config{URL: "localhost:11434", Model: "m"}, "embed: URL scheme must be http or https"},
		{"no host", embed.Config{URL: "http://", Model: "m"}, "embed: URL has no host"},
		{"bad URL", embed.Config{URL: "http://a b:pw@x/%zz", Model: "m"}, "embed: URL does not parse"},
		{"no model", embed.Config{URL: "http://localhost"}, "embed: Model is required"},
		{"key with space", embed.Config{URL: "http://localhost", Model: "m", APIKey: "sk-1 2"}, "embed: APIKey contains white space or control characters"},
		{"key with newline", embed.Config{URL: "http://localhost", Model: "m", APIKey: "sk-1\nX-Evil: 1"}, "embed: APIKey contains white space or control characters"},
		{"negative dims", embed.Config{URL: "http://localhost", Model: "m", Dimensions: -1}, "embed: Dimensions is -1; want 0 or more"},
		{"negative timeout", embed.Config{URL: "http://localhost", Model: "m", Timeout: -time.Second}, "embed: Timeout is -1s; want 0 (default) or more"},
		{"negative max input", embed.Config{URL: "http://localhost", Model: "m", MaxInputBytes: -1}, "embed: MaxInputBytes is -1; want 0 (default) or more"},
	} {
		_, err := embed.New(tc.cfg)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v; want %q", tc.name, err, tc.want)
		}
	}

	// A key read from a file keeps its trailing newline; it is trimmed.
	fake := embedtest.NewServer(t, dim)
	c := newClient(t, fake, embed.Config{APIKey: fake.Key + "\n"})
	if _, err := c.Embed(t.Context(), "hello"); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamMessage(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	c := newClient(t, fake, embed.Config{})
	long := strings.Repeat("x", 201)
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"openai 400", 400, `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":null,"code":null}}`,
			"embedding service returned HTTP 400: This model's maximum context length is 8192 tokens."},
		{"long message", 400, `{"error":{"message":"` + long + `"}}`, "embedding service returned HTTP 400"},
		{"control characters", 400, `{"error":{"message":"a\nb"}}`, "embedding service returned HTTP 400"},
		{"error string", 400, `{"error":"model not found"}`, "embedding service returned HTTP 400"},
		{"other shape", 422, `{"detail":[{"msg":"field required"}]}`, "embedding service returned HTTP 422"},
		{"html", 404, `<html>not found</html>`, "embedding service returned HTTP 404"},
		{"empty", 400, ``, "embedding service returned HTTP 400"},
		{"403", 403, `{"error":{"message":"key sk-123 has no access"}}`, "embedding service refused the credentials (HTTP 403)"},
	} {
		fake.Respond(1, body(tc.status, "", tc.body))
		before := fake.Requests()
		_, err := c.Embed(t.Context(), "hello")
		e := wantError(t, err, embed.CodeUpstream, fake.Key)
		if e.Msg != tc.want || e.Status != tc.status {
			t.Errorf("%s: got %d %q; want %d %q", tc.name, e.Status, e.Msg, tc.status, tc.want)
		}
		if embed.IsClientError(err) {
			t.Errorf("%s: an upstream 4xx is not the caller's fault", tc.name)
		}
		if n := fake.Requests() - before; n != 1 {
			t.Errorf("%s: %d requests; want 1", tc.name, n)
		}
	}

	// The fake's own 404 for an unknown model.
	c = newClient(t, fake, embed.Config{Model: "nope"})
	_, err := c.Embed(t.Context(), "hello")
	e := wantError(t, err, embed.CodeUpstream, fake.Key)
	if want := "embedding service returned HTTP 404: The model `nope` does not exist"; e.Msg != want {
		t.Fatalf("msg = %q; want %q", e.Msg, want)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	for _, status := range []int{429, 502, 503, 504} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			fake := embedtest.NewServer(t, dim)
			c := newClient(t, fake, embed.Config{})

			fake.Fail(status, 1)
			v, err := c.Embed(t.Context(), "hello")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v, fake.Vector("hello")) {
				t.Fatal("wrong vector after retry")
			}
			if n := fake.Requests(); n != 2 {
				t.Fatalf("requests = %d; want 2", n)
			}

			// Only one retry.
			fake.Fail(status, 5)
			_, err = c.Embed(t.Context(), "hello")
			e := wantError(t, err, embed.CodeUpstream, fake.Key)
			if e.Status != status {
				t.Fatalf("status = %d; want %d", e.Status, status)
			}
			if n := fake.Requests(); n != 4 {
				t.Fatalf("requests = %d; want 4", n)
			}
		})
	}
}

func TestNoRetry(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 401, 404, 500, 501} {
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Fail(status, 5)
		_, err := c.Embed(t.Context(), "hello")
		e := wantError(t, err, embed.CodeUpstream, fake.Key)
		if e.Status != status {
			t.Errorf("status = %d; want %d", e.Status, status)
		}
		if n := fake.Requests(); n != 1 {
			t.Errorf("HTTP %d: requests = %d; want 1", status, n)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()

	t.Run("honoured", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Respond(1, body(429, "Retry-After: 1", `{"error":{"message":"slow down"}}`))
		start := time.Now()
		if _, err := c.Embed(t.Context(), "hello"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("retried after %s; want at least 1s", d)
		}
		if n := fake.Requests(); n != 2 {
			t.Fatalf("requests = %d; want 2", n)
		}
	})

	t.Run("too long", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Respond(1, body(503, "Retry-After: 30", `{"error":{"message":"overloaded"}}`))
		start := time.Now()
		_, err := c.Embed(t.Context(), "hello")
		e := wantError(t, err, embed.CodeUpstream, fake.Key)
		if e.Status != 503 || e.Msg != "embedding service returned HTTP 503: overloaded" {
			t.Fatalf("got %d %q", e.Status, e.Msg)
		}
		if n := fake.Requests(); n != 1 {
			t.Fatalf("requests = %d; want 1", n)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %s", d)
		}
	})

	t.Run("beyond the deadline", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{Timeout: 500 * time.Millisecond})
		fake.Respond(1, body(429, "Retry-After: 2", `{}`))
		start := time.Now()
		_, err := c.Embed(t.Context(), "hello")
		if e := wantError(t, err, embed.CodeUpstream, fake.Key); e.Status != 429 {
			t.Fatalf("status = %d; want 429", e.Status)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Fatalf("waited %s for a retry that could not finish in time", d)
		}
	})
}

func TestUnavailable(t *testing.T) {
	t.Parallel()

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{Timeout: 200 * time.Millisecond})
		fake.Respond(1, hang)
		start := time.Now()
		_, err := c.Embed(t.Context(), "hello")
		e := wantError(t, err, embed.CodeUnavailable, fake.Key)
		if e.Msg != "embedding service did not answer in time" {
			t.Fatalf("msg = %q", e.Msg)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v; want DeadlineExceeded in the chain", e.Err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s", d)
		}
		if n := fake.Requests(); n != 1 {
			t.Fatalf("requests = %d; a timeout is not retried", n)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.New(dim)
		fake.Close()
		c := newClient(t, fake, embed.Config{})
		start := time.Now()
		_, err := c.Embed(t.Context(), "hello")
		e := wantError(t, err, embed.CodeUnavailable, fake.Key)
		if e.Msg != "embedding service is unreachable" {
			t.Fatalf("msg = %q", e.Msg)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("took %s; want one retry after a backoff", d)
		}
	})

	t.Run("connection dropped then success", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Respond(1, func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		if _, err := c.Embed(t.Context(), "hello"); err != nil {
			t.Fatal(err)
		}
		if n := fake.Requests(); n != 2 {
			t.Fatalf("requests = %d; want 2", n)
		}
	})
}

func TestCanceled(t *testing.T) {
	t.Parallel()

	t.Run("before", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.Embed(ctx, "hello")
		e := wantError(t, err, embed.CodeUnavailable, fake.Key)
		if e.Msg != "embedding request canceled" || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %q, %v", e.Msg, e.Err)
		}
		if fake.Requests() != 0 {
			t.Fatal("a canceled call reached the service")
		}
	})

	t.Run("during the request", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Respond(1, hang)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Embed(ctx, "hello")
		e := wantError(t, err, embed.CodeUnavailable, fake.Key)
		if e.Msg != "embedding request canceled" || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %q, %v", e.Msg, e.Err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %s", d)
		}
	})

	t.Run("during the backoff", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Respond(1, body(503, "Retry-After: 2", `{}`))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Embed(ctx, "hello")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %s", d)
		}
		if n := fake.Requests(); n != 1 {
			t.Fatalf("requests = %d; want 1", n)
		}
	})

	t.Run("caller deadline", func(t *testing.T) {
		t.Parallel()
		fake := embedtest.NewServer(t, dim)
		c := newClient(t, fake, embed.Config{})
		fake.Respond(1, hang)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Embed(ctx, "hello")
		e := wantError(t, err, embed.CodeUnavailable, fake.Key)
		if e.Msg != "deadline exceeded before the embedding service answered" || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %q, %v", e.Msg, e.Err)
		}
	})
}

func TestBadResponse(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	c := newClient(t, fake, embed.Config{})
	huge := `{"data":[{"embedding":[` + strings.Repeat("0.125,", 3<<20) + `0]}]}`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"malformed", `{"data":[{"embedding":[0.1,`, "embedding service sent an invalid response"},
		{"not json", `<html>ok</html>`, "embedding service sent an invalid response"},
		{"base64", `{"data":[{"embedding":"AAAA"}]}`, "embedding service sent an invalid response"},
		{"exponent beyond float64", `{"data":[{"embedding":[0.1,1e400]}]}`, "embedding service sent an invalid response"},
		{"exponent beyond float32", `{"data":[{"embedding":[0.1,1e39]}]}`, "embedding service sent an invalid response"},
		{"string element", `{"data":[{"embedding":[0.1,"NaN"]}]}`, "embedding service sent an invalid response"},
		{"no data", `{"object":"list"}`, "embedding service returned no embedding"},
		{"empty data", `{"object":"list","data":[]}`, "embedding service returned no embedding"},
		{"error in a 200", `{"error":{"message":"oops"}}`, "embedding service returned no embedding"},
		{"two embeddings", `{"data":[{"embedding":[1]},{"index":1,"embedding":[1]}]}`, "embedding service returned 2 embeddings for one input"},
		{"empty embedding", `{"data":[{"embedding":[]}]}`, "embedding service returned an empty embedding"},
		{"too large", huge, "embedding service sent more than 16777216 bytes"},
	} {
		fake.Respond(1, body(200, "", tc.body))
		before := fake.Requests()
		_, err := c.Embed(t.Context(), "hello")
		e := wantError(t, err, embed.CodeBadResponse, fake.Key)
		if e.Msg != tc.want {
			t.Errorf("%s: msg = %q; want %q", tc.name, e.Msg, tc.want)
		}
		if n := fake.Requests() - before; n != 1 {
			t.Errorf("%s: %d requests; a bad response is not retried", tc.name, n)
		}
	}
}

func TestInput(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	c := newClient(t, fake, embed.Config{})

	for _, text := range []string{"", " ", "\n\t "} {
		_, err := c.Embed(t.Context(), text)
		e := wantError(t, err, embed.CodeEmptyInput, fake.Key)
		if !embed.IsClientError(err) || e.Msg != "query text is empty" {
			t.Errorf("%q: %q, client error %v", text, e.Msg, embed.IsClientError(err))
		}
	}

	_, err := c.Embed(t.Context(), strings.Repeat("a", embed.DefaultMaxInputBytes+1))
	e := wantError(t, err, embed.CodeInputTooLong, fake.Key)
	if !embed.IsClientError(err) || e.Msg != "query text is 8193 bytes; the limit is 8192" {
		t.Errorf("%q, client error %v", e.Msg, embed.IsClientError(err))
	}
	if fake.Requests() != 0 {
		t.Fatal("refused text reached the service")
	}
	if _, err := c.Embed(t.Context(), strings.Repeat("a", embed.DefaultMaxInputBytes)); err != nil {
		t.Fatalf("text at the limit: %v", err)
	}

	c = newClient(t, fake, embed.Config{MaxInputBytes: 4})
	_, err = c.Embed(t.Context(), "héllo") // 6 bytes, 5 runes
	wantError(t, err, embed.CodeInputTooLong, fake.Key)
}

func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	e := &embed.Error{Code: embed.CodeEmptyInput, Msg: "query text is empty", Err: cause}
	wrapped := fmt.Errorf("retrieve: %w", e)
	if !embed.IsClientError(wrapped) || embed.CodeOf(wrapped) != embed.CodeEmptyInput || !errors.Is(wrapped, cause) {
		t.Fatal("helpers do not see through wrapping")
	}
	if embed.IsClientError(nil) || embed.CodeOf(nil) != "" || embed.IsClientError(cause) {
		t.Fatal("helpers misreport a nil or foreign error")
	}
	for _, code := range []embed.Code{embed.CodeUpstream, embed.CodeBadResponse, embed.CodeUnavailable} {
		if embed.IsClientError(&embed.Error{Code: code}) {
			t.Errorf("%s is not a client error", code)
		}
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	fake := embedtest.NewServer(t, dim)
	c := newClient(t, fake, embed.Config{})
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			text := fmt.Sprintf("query %d", i)
			v, err := c.Embed(t.Context(), text)
			if err == nil && !slices.Equal(v, fake.Vector(text)) {
				err = fmt.Errorf("%s: wrong vector", text)
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
