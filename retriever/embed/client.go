package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// maxResponseBytes bounds a 2xx body: a 4096-float vector is ~90 KiB of
	// JSON, so this leaves room for verbose servers and nothing for abuse.
	maxResponseBytes = 16 << 20
	// maxErrorBodyBytes bounds what is read of a non-2xx body.
	maxErrorBodyBytes = 64 << 10
	// maxUpstreamMsgBytes is the longest upstream error message passed on
	// to the client; longer ones are more likely to quote internals.
	maxUpstreamMsgBytes = 200
	// maxLoggedBodyBytes is how much of a non-2xx body goes into Error.Err.
	maxLoggedBodyBytes = 512
	// maxRetryAfter is the longest Retry-After honoured; a service asking
	// for more is not retried, as the query's caller is waiting.
	maxRetryAfter = 2 * time.Second
	// retryBackoff is the least wait before the retry; up to as much again
	// is added as jitter, so that clients failed together do not return
	// together.
	retryBackoff = 100 * time.Millisecond
)

// errTimeout is the cause of the context Embed derives from Config.Timeout,
// to tell it apart from the caller's own deadline.
var errTimeout = errors.New("embed: Config.Timeout expired")

var errTooLarge = errors.New("body too large")

type embeddingRequest struct {
	Model      string `json:"model"`
	Input      string `json:"input"`
	Dimensions int    `json:"dimensions,omitempty"`
}

type embeddingResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// Embed returns the embedding of text. Errors are *Error; see the Code
// constants.
func (c *Client) Embed(ctx context.Context, text string) ([]float32, error) {
	if strings.TrimSpace(text) == "" {
		return nil, &Error{Code: CodeEmptyInput, Msg: "query text is empty"}
	}
	if len(text) > c.maxInput {
		return nil, &Error{Code: CodeInputTooLong, Msg: fmt.Sprintf("query text is %d bytes; the limit is %d", len(text), c.maxInput)}
	}
	body, err := json.Marshal(embeddingRequest{Model: c.model, Input: text, Dimensions: c.dims})
	if err != nil { // cannot happen: strings and ints always marshal
		return nil, &Error{Code: CodeUnavailable, Msg: "embedding request could not be encoded", Err: err}
	}
	if ctx.Err() != nil {
		return nil, doneError(ctx, nil)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errTimeout)
	defer cancel()

	for attempt := 0; ; attempt++ {
		vec, retry, err := c.attempt(ctx, body)
		if err == nil {
			return vec, nil
		}
		if !retry.ok || attempt > 0 {
			return nil, err
		}
		wait := retryBackoff + rand.N(retryBackoff)
		wait = max(wait, retry.after)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait+retryBackoff {
			// The retry could not finish in time: answer now with the
			// real reason rather than later with a timeout.
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, doneError(ctx, nil)
		case <-t.C:
		}
	}
}

// retryHint says whether a failed attempt may be retried, and after how
// long at least.
type retryHint struct {
	ok    bool
	after time.Duration
}

// attempt makes one request.
func (c *Client) attempt(ctx context.Context, body []byte) ([]float32, retryHint, *Error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil { // cannot happen: New validated the URL
		return nil, retryHint{}, &Error{Code: CodeUnavailable, Msg: "embedding request could not be built", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ragfence")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, retryHint{ok: ctx.Err() == nil}, transportError(ctx, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := readBounded(resp.Body, maxErrorBodyBytes) // the status says enough
		return nil, retryFor(resp), c.upstreamError(resp.StatusCode, raw)
	}
	raw, err := readBounded(resp.Body, maxResponseBytes)
	if errors.Is(err, errTooLarge) {
		return nil, retryHint{}, &Error{Code: CodeBadResponse, Msg: fmt.Sprintf("embedding service sent more than %d bytes", maxResponseBytes), Err: err}
	}
	if err != nil {
		return nil, retryHint{ok: ctx.Err() == nil}, transportError(ctx, err)
	}
	vec, e := c.decode(raw)
	return vec, retryHint{}, e
}

// retryFor says whether an upstream status is worth one more try.
func retryFor(resp *http.Response) retryHint {
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return retryHint{}
	}
	after, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if ok && after > maxRetryAfter {
		return retryHint{}
	}
	return retryHint{ok: true, after: after}
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 section 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// decode checks that a 2xx body holds exactly one finite vector of the
// expected dimension.
func (c *Client) decode(raw []byte) ([]float32, *Error) {
	bad := func(msg string, err error) ([]float32, *Error) {
		return nil, &Error{Code: CodeBadResponse, Msg: "embedding service " + msg, Err: err}
	}
	var r embeddingResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		// Also how a number beyond float32's range (1e39) ends up: JSON has
		// no NaN or Inf, so this is where those would come from.
		return bad("sent an invalid response", err)
	}
	switch len(r.Data) {
	case 0:
		return bad("returned no embedding", nil)
	case 1:
	default:
		return bad(fmt.Sprintf("returned %d embeddings for one input", len(r.Data)), nil)
	}
	v := r.Data[0].Embedding
	if len(v) == 0 {
		return bad("returned an empty embedding", nil)
	}
	if c.dims > 0 && len(v) != c.dims {
		return bad(fmt.Sprintf("returned %d dimensions; expected %d", len(v), c.dims), nil)
	}
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return bad("returned a value that is not a finite number", nil)
		}
	}
	return v, nil
}

// upstreamError describes a non-2xx answer without echoing the key.
func (c *Client) upstreamError(status int, raw []byte) *Error {
	msg := fmt.Sprintf("embedding service returned HTTP %d", status)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Services quote the (masked) key here: never pass that on.
		msg = fmt.Sprintf("embedding service refused the credentials (HTTP %d)", status)
	default:
		if m := c.safeMessage(raw); m != "" {
			msg += ": " + m
		}
	}
	logged := string(raw)
	if c.apiKey != "" {
		logged = strings.ReplaceAll(logged, c.apiKey, "[REDACTED]") // before truncating, which could cut the key
	}
	if len(logged) > maxLoggedBodyBytes {
		logged = logged[:maxLoggedBodyBytes] + "..."
	}
	logged = strings.ToValidUTF8(logged, "\uFFFD")
	return &Error{Code: CodeUpstream, Msg: msg, Status: status, Err: fmt.Errorf("upstream HTTP %d: %q", status, logged)}
}

// safeMessage returns the upstream's error message if it is in the standard
// {"error":{"message":...}} shape, short, printable, and quotes no part of
// the key that services show (the whole key, or its last 4 characters as
// in "sk-...abcd"); else "".
func (c *Client) safeMessage(raw []byte) string {
	var body struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) != nil || body.Error == nil {
		return ""
	}
	m := strings.TrimSpace(body.Error.Message)
	if m == "" || len(m) > maxUpstreamMsgBytes || strings.ContainsFunc(m, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\uFFFD' }) {
		return ""
	}
	if k := c.apiKey; k != "" && (strings.Contains(m, k) || len(k) >= 8 && strings.Contains(m, k[len(k)-4:])) {
		return ""
	}
	return m
}

// transportError describes a request that got no complete answer.
func transportError(ctx context.Context, err error) *Error {
	if ctx.Err() != nil {
		return doneError(ctx, err)
	}
	return &Error{Code: CodeUnavailable, Msg: "embedding service is unreachable", Err: err}
}

// doneError describes a call cut short by its context: Config.Timeout (the
// cause is errTimeout) or the caller's cancellation or deadline.
func doneError(ctx context.Context, err error) *Error {
	cause := ctx.Err()
	if err != nil {
		cause = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	msg := "embedding request canceled"
	switch {
	case errors.Is(context.Cause(ctx), errTimeout):
		msg = "embedding service did not answer in time"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		msg = "deadline exceeded before the embedding service answered"
	}
	return &Error{Code: CodeUnavailable, Msg: msg, Err: cause}
}

// readBounded reads r up to limit bytes, failing with errTooLarge beyond.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > limit {
		return b[:limit], errTooLarge
	}
	return b, nil
}
