package retriever

import (
	"errors"
	"net/http"
)

// Code is a stable error code returned to clients as error.code.
type Code string

// Error codes of the API, with the HTTP status each is answered with.
const (
	CodeInvalidJSON       Code = "invalid_json"         // 400: malformed JSON, unknown fields, duplicate keys, keys matching a field only in another case
	CodeInvalidEmbedding  Code = "invalid_embedding"    // 400: missing, wrong dimension, not finite, or no cosine distance (zero norm)
	CodeInvalidK          Code = "invalid_k"            // 400: k out of range
	CodeInvalidQuery      Code = "invalid_query"        // 400: query text empty or too long
	CodeInvalidMinScore   Code = "invalid_min_score"    // 400: min_score outside [-1, 1]
	CodeUnknownCollection Code = "unknown_collection"   // 400: not a resource of the policy
	CodeInvalidFilter     Code = "invalid_filter"       // 400: undeclared field or bad operator
	CodeInvalidSubject    Code = "invalid_subject"      // 400: a token claim has the wrong type for the policy
	CodeUnauthenticated   Code = "unauthenticated"      // 401: missing, malformed, forged or expired token
	CodeAgentNotGranted   Code = "agent_not_granted"    // 403: the agent has no grant on the collection
	CodeBodyTooLarge      Code = "body_too_large"       // 413
	CodeUnsupportedMedia  Code = "unsupported_media"    // 415: not application/json
	CodeNotFound          Code = "not_found"            // 404
	CodeMethodNotAllowed  Code = "method_not_allowed"   // 405
	CodeUnavailable       Code = "unavailable"          // 503: database down or audit log full
	CodeTimeout           Code = "timeout"              // 504: the statement timeout expired
	CodeInternal          Code = "internal"             // 500
	CodeEmbedderFailed    Code = "embedder_unavailable" // 502: the embedding service failed
)

var statusOf = map[Code]int{
	CodeInvalidJSON: http.StatusBadRequest, CodeInvalidEmbedding: http.StatusBadRequest,
	CodeInvalidK: http.StatusBadRequest, CodeInvalidQuery: http.StatusBadRequest, CodeInvalidMinScore: http.StatusBadRequest,
	CodeUnknownCollection: http.StatusBadRequest, CodeInvalidFilter: http.StatusBadRequest,
	CodeInvalidSubject: http.StatusBadRequest, CodeUnauthenticated: http.StatusUnauthorized,
	CodeAgentNotGranted: http.StatusForbidden, CodeBodyTooLarge: http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType, CodeNotFound: http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed, CodeUnavailable: http.StatusServiceUnavailable,
	CodeTimeout: http.StatusGatewayTimeout, CodeInternal: http.StatusInternalServerError,
	CodeEmbedderFailed: http.StatusBadGateway,
}

// RequestError is a request the retriever refuses, with a message that is
// safe to show the client: it never echoes tokens, secrets or other
// tenants' data.
type RequestError struct {
	Code Code
	Msg  string
	Err  error // the cause, for logs only
}

func (e *RequestError) Error() string { return string(e.Code) + ": " + e.Msg }
func (e *RequestError) Unwrap() error { return e.Err }

// Status is the HTTP status the error is answered with.
func (e *RequestError) Status() int {
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

func asRequestError(err error) (*RequestError, bool) {
	var re *RequestError
	ok := errors.As(err, &re)
	return re, ok
}
