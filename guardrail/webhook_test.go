package guardrail_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ragfence/ragfence/guardrail"
)

var sampleEvent = guardrail.Event{
	Guardrail: "agent-bulk-read", Action: guardrail.Throttle, Tenant: "acme", Subject: "alice", Agent: "bot",
	Collection: "chunks", Observed: 512, Limit: 500, Window: time.Minute, DecisionID: "dec-7",
	Time: time.Date(2026, 3, 9, 12, 0, 10, 0, time.UTC),
}

func webhook(t *testing.T, url string, cfg guardrail.WebhookConfig) *guardrail.Webhook {
	t.Helper()
	cfg.URL = url
	w, err := guardrail.NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func closeWithin(t *testing.T, w *guardrail.Webhook, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	w.Close(ctx)
}

// The endpoint receives exactly the event's fields, as JSON.
func TestWebhookDelivers(t *testing.T) {
	var got []map[string]any
	var header http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		got, header = append(got, body), r.Header
	}))
	defer srv.Close()
	w := webhook(t, srv.URL, guardrail.WebhookConfig{Header: http.Header{"Authorization": {"Bearer s3cret"}}})
	w.Notify(sampleEvent)
	closeWithin(t, w, 5*time.Second)
	if len(got) != 1 || w.Delivered() != 1 {
		t.Fatalf("delivered %d, received %v", w.Delivered(), got)
	}
	var keys []string
	for k := range got[0] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"action", "agent", "collection", "decision_id", "guardrail", "limit", "observed", "subject", "tenant", "time", "window"}
	if !slices.Equal(keys, want) {
		t.Fatalf("fields %v, want %v", keys, want)
	}
	if got[0]["window"] != "1m" || got[0]["action"] != "throttle" || got[0]["observed"] != 512.0 || got[0]["time"] != "2026-03-09T12:00:10Z" {
		t.Fatalf("body %v", got[0])
	}
	if header.Get("Content-Type") != "application/json" || header.Get("Authorization") != "Bearer s3cret" {
		t.Fatalf("headers %v", header)
	}
}

// A receiver that fails, then succeeds, gets the event after retries with
// backoff; one that refuses it gets it once.
func TestWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	var times []time.Time
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			rw.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			rw.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	w := webhook(t, srv.URL, guardrail.WebhookConfig{Backoff: 20 * time.Millisecond})
	w.Notify(sampleEvent)
	closeWithin(t, w, 5*time.Second)
	if calls.Load() != 3 || w.Delivered() != 1 || w.Failed() != 0 {
		t.Fatalf("calls %d, delivered %d, failed %d", calls.Load(), w.Delivered(), w.Failed())
	}
	if gap1, gap2 := times[1].Sub(times[0]), times[2].Sub(times[1]); gap1 < 20*time.Millisecond || gap2 < 40*time.Millisecond {
		t.Fatalf("retried after %s and %s, want at least 20ms then 40ms", gap1, gap2)
	}

	var refused atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		refused.Add(1)
		rw.WriteHeader(http.StatusBadRequest)
	}))
	defer bad.Close()
	w = webhook(t, bad.URL, guardrail.WebhookConfig{Backoff: time.Millisecond})
	w.Notify(sampleEvent)
	closeWithin(t, w, 5*time.Second)
	if refused.Load() != 1 || w.Failed() != 1 || w.Delivered() != 0 {
		t.Fatalf("refused: calls %d, failed %d", refused.Load(), w.Failed())
	}

	down := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(http.StatusInternalServerError)
	}))
	defer down.Close()
	w = webhook(t, down.URL, guardrail.WebhookConfig{Backoff: time.Millisecond, Attempts: 3})
	w.Notify(sampleEvent)
	closeWithin(t, w, 5*time.Second)
	if w.Failed() != 1 {
		t.Fatalf("a receiver down for 3 attempts: failed %d", w.Failed())
	}
}

// A full queue drops (and counts) events rather than block the request
// that triggered them; Close gives up on a receiver that hangs.
func TestWebhookFullQueue(t *testing.T) {
	release := make(chan struct{})
	var received atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		received.Add(1)
	}))
	defer srv.Close()
	defer close(release)
	w := webhook(t, srv.URL, guardrail.WebhookConfig{Queue: 4})
	start := time.Now()
	for range 100 {
		w.Notify(sampleEvent)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("100 Notify calls took %s", d)
	}
	// One is being delivered, 4 wait, the rest are dropped.
	if dropped := w.Dropped(); dropped < 95 || dropped > 96 {
		t.Fatalf("dropped %d of 100 with a queue of 4", dropped)
	}
	closeWithin(t, w, 100*time.Millisecond)
	if w.Delivered() != 0 || w.Dropped()+w.Failed() != 100 {
		t.Fatalf("after Close: delivered %d, dropped %d, failed %d", w.Delivered(), w.Dropped(), w.Failed())
	}
	w.Notify(sampleEvent)
	if w.Dropped()+w.Failed() != 101 {
		t.Fatalf("Notify after Close is not counted as dropped")
	}
}

func TestWebhookConfig(t *testing.T) {
	for _, url := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := guardrail.NewWebhook(guardrail.WebhookConfig{URL: url}); guardrail.CodeOf(err) != guardrail.CodeConfig {
			t.Errorf("URL %q: %v", url, err)
		}
	}
}
