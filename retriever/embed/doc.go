// Package embed turns query text into a vector by calling an
// OpenAI-compatible embeddings endpoint (OpenAI, Ollama, vLLM, LiteLLM,
// text-embeddings-inference and others): POST {base}/v1/embeddings with
// {"model": ..., "input": "..."}.
//
// The retriever uses it when a request sends query text instead of an
// embedding vector. A Client is built once with New and shared by every
// request; Embed is safe for concurrent use.
//
// Embed refuses empty and over-long text before calling anyone. Transient
// upstream failures (HTTP 429, 502, 503, 504, and connection errors) are
// retried once after a short backoff, or after the upstream's Retry-After
// when that is at most 2 seconds; a longer Retry-After is not waited for.
// Config.Timeout bounds the whole call, retry included, and the caller's
// context can cut it shorter. Timeouts are not retried.
//
// Every failure of Embed is an *Error with a stable Code and a message that
// is safe to send to the client: it never contains the API key, the request
// text or the raw upstream body. An upstream error message is passed on only
// when it is short, comes in the standard {"error":{"message":...}} shape,
// and does not quote the key. IsClientError reports the failures that are
// the caller's fault (HTTP 400); every other code is the embedding
// service's or the network's.
//
// Package embedtest provides a fake embeddings server for tests.
package embed
