package guardrail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL receives each event as a JSON POST (required, http or https).
	URL string
	// Header is added to every request (an Authorization, say).
	Header http.Header
	// Client sends the requests; nil means one with a 10s timeout.
	Client *http.Client
	// Queue is how many events may wait for delivery; 0 means 1024.
	Queue int
	// Attempts is how many times an event is sent before it is given up;
	// 0 means 5.
	Attempts int
	// Backoff is the wait before the first retry, doubled for each next
	// one up to MaxBackoff; 0 means 200ms and 10s.
	Backoff, MaxBackoff time.Duration
	// Logger receives events given up; nil discards them.
	Logger *slog.Logger
}

// Webhook delivers events to an HTTP endpoint from a bounded queue, so
// Notify never blocks the request that triggered an event: when the queue
// is full the event is dropped and counted. A failed delivery (a network
// error, a 429 or a 5xx) is retried with exponential backoff; another
// status gives the event up at once.
type Webhook struct {
	cfg    WebhookConfig
	queue  chan Event
	ctx    context.Context // of deliveries; cancelled when Close gives up waiting
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.RWMutex // Close takes it to stop Notify queueing
	closed bool

	dropped, failed, delivered atomic.Int64
}

// NewWebhook starts a webhook's delivery goroutine; Close stops it.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &Error{Code: CodeConfig, Msg: fmt.Sprintf("webhook URL %q must be an http or https URL", cfg.URL), Err: err}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	cfg.Queue = cmpOr(cfg.Queue, 1024)
	cfg.Attempts = cmpOr(cfg.Attempts, 5)
	cfg.Backoff = cmpOr(cfg.Backoff, 200*time.Millisecond)
	cfg.MaxBackoff = cmpOr(cfg.MaxBackoff, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &Webhook{cfg: cfg, queue: make(chan Event, cfg.Queue), done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Notify queues an event for delivery, or drops it when the queue is full
// or the webhook closed. It never blocks: use it as Config.OnEvent.
func (w *Webhook) Notify(e Event) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- e:
	default:
		w.dropped.Add(1)
	}
}

// Dropped is how many events Notify could not queue.
func (w *Webhook) Dropped() int64 { return w.dropped.Load() }

// Failed is how many queued events were given up.
func (w *Webhook) Failed() int64 { return w.failed.Load() }

// Delivered is how many events the endpoint accepted (a 2xx).
func (w *Webhook) Delivered() int64 { return w.delivered.Load() }

// Close delivers what is queued until ctx is done, then stops; events
// it could not deliver by then are counted as dropped.
func (w *Webhook) Close(ctx context.Context) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	close(w.queue) // no Notify can send any more
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done
	}
}

// run delivers events in order until Close, then what is left.
func (w *Webhook) run() {
	defer close(w.done)
	defer w.cancel()
	for e := range w.queue {
		if w.ctx.Err() != nil {
			w.dropped.Add(1)
			continue
		}
		w.deliver(w.ctx, e)
	}
}

// deliver sends e until it is accepted, refused or out of attempts.
func (w *Webhook) deliver(ctx context.Context, e Event) {
	body, err := json.Marshal(e)
	if err != nil {
		w.giveUp(e, err)
		return
	}
	wait := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := w.post(ctx, body)
		if err == nil {
			w.delivered.Add(1)
			return
		}
		if !retry || attempt >= w.cfg.Attempts {
			w.giveUp(e, err)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.giveUp(e, ctx.Err())
			return
		}
		wait = min(2*wait, w.cfg.MaxBackoff)
	}
}

func (w *Webhook) giveUp(e Event, err error) {
	w.failed.Add(1)
	w.cfg.Logger.Warn("guardrail: webhook gave up an event", "guardrail", e.Guardrail, "tenant", e.Tenant, "err", err)
}

// post sends one attempt; retry says whether another may succeed.
func (w *Webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	for k, vs := range w.cfg.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return false, fmt.Errorf("webhook refused the event: %s", resp.Status)
}
