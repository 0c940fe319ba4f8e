package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/httpapi"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
)

// benchK is the number of results every benchmarked search asks for.
const benchK = 10

// BenchmarkRetrieveHandler is one POST /v1/retrieve through the server's
// http.Handler, as alice, with a precomputed 384-dimensional embedding and
// k=10. The metrics it reports are e2e.TracedPool's; the library's
// BenchmarkSearch is the same search without HTTP.
//
// In the measurement: building the *http.Request (httptest.NewRequest, in
// place of net/http's parsing), Echo's routing, HS256 JWT verification, the
// strict JSON decoding and validation of the body, the subject check, the
// policy fragment, the SQL, the database round trips, the response's JSON
// encoding into a ResponseRecorder, the audit record's Enqueue, the
// Prometheus metrics and the request's log line (formatted as serve does,
// JSON at info level, written to io.Discard).
//
// Out of it: a real listener (TCP, HTTP/1.1 framing), the embedder, and the
// audit writer's database writes: the real writer with serve's defaults
// batches them on a background goroutine, through the fixture's pool, which
// is not traced. Its CPU time still shares the machine with the benchmark.
func BenchmarkRetrieveHandler(b *testing.B) {
	f := e2e.Shared(b)
	db := e2e.NewTracedPool(b, f.DSN)
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := audit.New(f.Pool, audit.Config{Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			b.Errorf("audit writer close: %v", err)
		}
	})
	svc, err := service.New(service.Config{
		Pool: db.Pool, Policies: retriever.StaticPolicy(f.Policy), Auth: service.TokenAuth{Verifier: f.Verifier},
		Audit: w, Logger: logger, StatementTimeout: 5 * time.Second, // serve's default
	})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{Service: svc, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	authz := "Bearer " + f.Token(b, "alice", "")
	body, err := json.Marshal(retrieveBody{Collection: "chunks", Embedding: f.Topic(0), K: benchK})
	if err != nil {
		b.Fatal(err)
	}
	var rec *httptest.ResponseRecorder
	op := func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/retrieve", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", authz)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	op()
	if n := len(reply{status: rec.Code, body: rec.Body.Bytes()}.response(b).Results); n != benchK {
		b.Fatalf("%d results, want %d", n, benchK)
	}
	db.Measure(b, op)
}
