// Package embedtest is a fake OpenAI-compatible embeddings server for tests
// of code that embeds query text.
//
// The fake answers POST /v1/embeddings with deterministic unit vectors
// seeded from a hash of each input, so a test can compute the vector a text
// gets (Fake.Vector) without a model. It checks the bearer key and the model
// like a real service, and can fail on demand (Fake.Fail, Fake.Respond).
package embedtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Model and Key are what every Fake expects in requests.
const (
	Model = "fake-embed-1"
	Key   = "fake-embed-key-0123456789"
)

// maxRequestBytes bounds a request body the fake reads.
const maxRequestBytes = 1 << 20

// Fake is a running fake embeddings server. Its methods are safe for
// concurrent use.
type Fake struct {
	// URL is the base URL to configure a client with (no path).
	URL string
	// Model is the only model the fake serves; others get HTTP 404.
	Model string
	// Key is the only bearer key accepted; others get HTTP 401.
	Key string
	// Dim is the length of every vector returned. The request's
	// "dimensions" is recorded but ignored, as many servers do.
	Dim int

	srv *httptest.Server

	mu       sync.Mutex
	requests int
	queue    []http.HandlerFunc
	last     Request
}

// Request is what the fake last received.
type Request struct {
	Method, Path  string
	Authorization string // the whole header, e.g. "Bearer ..."
	Model         string
	Input         []string // a string input is recorded as one element
	Dimensions    int      // 0 when not sent
}

// NewServer starts a fake returning dim-long vectors, closed when t ends.
func NewServer(t testing.TB, dim int) *Fake {
	t.Helper()
	if dim < 1 {
		t.Fatalf("embedtest: dim is %d; want at least 1", dim)
	}
	f := New(dim)
	t.Cleanup(f.Close)
	return f
}

// New starts a fake returning dim-long vectors, for callers without a
// testing.TB (examples, main packages). The caller must Close it. New panics
// if dim < 1.
func New(dim int) *Fake {
	if dim < 1 {
		panic(fmt.Sprintf("embedtest: dim is %d; want at least 1", dim))
	}
	f := &Fake{Model: Model, Key: Key, Dim: dim}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close shuts the server down, waiting for requests in flight.
func (f *Fake) Close() { f.srv.Close() }

// Vector returns the vector the fake answers text with: Dim float32 values
// drawn from a generator seeded with SHA-256(text), scaled to unit length.
func (f *Fake) Vector(text string) []float32 {
	r := rand.New(rand.NewChaCha8(sha256.Sum256([]byte(text))))
	v := make([]float64, f.Dim)
	var norm float64
	for i := range v {
		v[i] = r.Float64()*2 - 1
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	out := make([]float32, f.Dim)
	for i, x := range v {
		out[i] = float32(x / norm)
	}
	return out
}

// Fail makes the next n requests fail with HTTP status and an OpenAI-style
// error body {"error":{"message":"fake failure (HTTP status)",...}}.
func (f *Fake) Fail(status, n int) {
	f.Respond(n, func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, status, fmt.Sprintf("fake failure (HTTP %d)", status))
	})
}

// Respond makes h answer the next n requests instead of the fake, to send
// malformed bodies, extra headers or nothing at all. They are still counted
// and recorded. Calls queue up behind earlier Fail and Respond calls.
func (f *Fake) Respond(n int, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.queue = append(f.queue, h)
	}
}

// Requests returns how many requests the fake has received.
func (f *Fake) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Last returns the last request received, the zero Request if none.
func (f *Fake) Last() Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.last
	r.Input = append([]string(nil), r.Input...)
	return r
}

type requestBody struct {
	Model      string          `json:"model"`
	Input      json.RawMessage `json:"input"`
	Dimensions int             `json:"dimensions"`
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes))
	r.Body = io.NopCloser(bytes.NewReader(raw))
	var body requestBody
	bodyErr := json.Unmarshal(raw, &body)
	inputs, inputErr := parseInput(body.Input)

	f.mu.Lock()
	f.requests++
	f.last = Request{
		Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"),
		Model: body.Model, Input: inputs, Dimensions: body.Dimensions,
	}
	var h http.HandlerFunc
	if len(f.queue) > 0 {
		h, f.queue = f.queue[0], f.queue[1:]
	}
	f.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}

	switch {
	case r.URL.Path != "/v1/embeddings":
		writeError(w, http.StatusNotFound, "unknown path "+r.URL.Path)
	case r.Method != http.MethodPost:
		writeError(w, http.StatusMethodNotAllowed, "method must be POST")
	case r.Header.Get("Authorization") != "Bearer "+f.Key:
		// Echo the key received, unmasked: a client must never pass this
		// message on, and tests check that it does not.
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		writeError(w, http.StatusUnauthorized, "Incorrect API key provided: "+got)
	case bodyErr != nil:
		writeError(w, http.StatusBadRequest, "request body is not valid JSON")
	case body.Model != f.Model:
		writeError(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist", body.Model))
	case inputErr != nil:
		writeError(w, http.StatusBadRequest, inputErr.Error())
	default:
		f.answer(w, inputs)
	}
}

// parseInput accepts "input" as a string or an array of strings, none
// empty.
func parseInput(raw json.RawMessage) ([]string, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return []string{one}, fmt.Errorf("'$.input' is invalid: empty string")
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return nil, fmt.Errorf("'$.input' must be a non-empty string or array of strings")
	}
	for _, s := range many {
		if s == "" {
			return many, fmt.Errorf("'$.input' is invalid: empty string")
		}
	}
	return many, nil
}

type embedding struct {
	Object    string    `json:"object"`
	Index     int       `json:"index"`
	Embedding []float32 `json:"embedding"`
}

func (f *Fake) answer(w http.ResponseWriter, inputs []string) {
	data := make([]embedding, len(inputs))
	tokens := 0
	for i, in := range inputs {
		data[i] = embedding{Object: "embedding", Index: i, Embedding: f.Vector(in)}
		tokens += len(strings.Fields(in))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list",
		"data":   data,
		"model":  f.Model,
		"usage":  map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	typ := "invalid_request_error"
	if status >= 500 || status == http.StatusTooManyRequests {
		typ = "server_error"
	}
	writeJSON(w, status, map[string]any{
		"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
