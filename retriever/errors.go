package retriever

import (
	"errors"
	"math"
	"time"
)

// Code is a stable error code: what a client is told (error.code over
// HTTP) and what a Go caller branches on (CodeOf).
type Code string

// Codes of the search, and of the request pipeline in front of it
// (retriever/service), which answers with the same *Error. A transport adds
// the codes of its own wire format (retriever/httpapi: invalid_json and
// others) and maps each code to its own status.
const (
	CodeInvalidEmbedding  Code = "invalid_embedding"    // missing, wrong dimension, not finite, or no cosine distance (zero norm)
	CodeInvalidK          Code = "invalid_k"            // k out of range
	CodeInvalidQuery      Code = "invalid_query"        // query text empty or too long
	CodeInvalidMinScore   Code = "invalid_min_score"    // min_score outside [-1, 1]
	CodeUnknownCollection Code = "unknown_collection"   // not a resource of the policy
	CodeInvalidFilter     Code = "invalid_filter"       // undeclared field, bad operator, or a value that does not fit the field's type
	CodeInvalidSubject    Code = "invalid_subject"      // a token claim has the wrong type for the policy
	CodeUnauthenticated   Code = "unauthenticated"      // missing, malformed, forged or expired token; or no subject or tenant
	CodeAgentNotGranted   Code = "agent_not_granted"    // the agent has no grant on the collection
	CodeUnavailable       Code = "unavailable"          // database down, request cancelled, or audit log full
	CodeTimeout           Code = "timeout"              // the statement timeout expired
	CodeInternal          Code = "internal"             // a failure the caller cannot have caused
	CodeEmbedderFailed    Code = "embedder_unavailable" // the embedding service failed
	CodeNotFound          Code = "not_found"            // no such thing of the caller's (an approval request; for HTTP, an endpoint)
)

// Error is a query the retriever refuses or could not answer. Msg is safe
// to show the client: it never echoes tokens, secrets or other tenants'
// data. Err is the cause, for logs only.
type Error struct {
	Code Code
	Msg  string
	Err  error
	// RetryAfter, when set, is how long until the same call may succeed
	// (a guardrail's window), for a transport to tell the caller.
	RetryAfter time.Duration
}

// Error returns the code and the client-safe message, never the cause.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }

// RetryAfterSeconds is RetryAfter as a Retry-After header says it: whole
// seconds, rounded up, at least one; 0 when there is none.
func (e *Error) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// Unwrap returns the cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
