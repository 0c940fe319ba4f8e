package embed

import "errors"

// Error codes, stable for clients and tests that branch on them.
// Code classifies an Error; codes are stable.
type Code string

const (
	// CodeInputTooLong: the text exceeds Config.MaxInputBytes. The caller's
	// fault (HTTP 400); nothing was sent upstream.
	CodeInputTooLong Code = "input_too_long"
	// CodeEmptyInput: the text is empty or only white space. The caller's
	// fault (HTTP 400); nothing was sent upstream.
	CodeEmptyInput Code = "empty_input"
	// CodeUpstream: the embedding service answered with a non-2xx status,
	// in Error.Status.
	CodeUpstream Code = "upstream_error"
	// CodeBadResponse: a 2xx answer that is not one finite vector of the
	// expected dimension (malformed JSON, no data, too large, ...).
	CodeBadResponse Code = "bad_response"
	// CodeUnavailable: no answer at all: connection refused or reset,
	// Config.Timeout expired, or the caller's context ended. The context's
	// error is in the chain, so errors.Is(err, context.Canceled) tells a
	// client that went away from an embedding service that is down.
	CodeUnavailable Code = "unavailable"
)

// Error is why Embed failed. Code, Msg and Status are safe to return to the
// client; Err is the underlying cause, for server logs only.
type Error struct {
	Code Code
	Msg  string
	// Status is the upstream HTTP status for CodeUpstream, else 0.
	Status int
	Err    error
}

// Error returns Msg alone, so that a caller that echoes err.Error() to the
// client leaks nothing.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the *Error in err's chain, or "" if there is
// none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsClientError reports whether err is the caller's fault (CodeInputTooLong
// or CodeEmptyInput), to be answered with HTTP 400 rather than as an
// embedding service failure.
func IsClientError(err error) bool {
	switch CodeOf(err) {
	case CodeInputTooLong, CodeEmptyInput:
		return true
	}
	return false
}
