package auth

import "errors"

// Code classifies an Error; codes are stable for clients and tests that
// branch on them. Every code means HTTP 401 Unauthorized.
type Code string

// Error codes.
const (
	CodeMissingToken     Code = "missing_token"     // no Authorization header, or not a Bearer one
	CodeMalformedToken   Code = "malformed_token"   // not a JWT, or a claim of the wrong JSON type
	CodeInvalidSignature Code = "invalid_signature" // bad signature, refused algorithm, or unknown key
	CodeExpired          Code = "expired"           // exp is in the past, beyond the skew
	CodeNotYetValid      Code = "not_yet_valid"     // nbf or iat is in the future, beyond the skew
	CodeLifetimeTooLong  Code = "lifetime_too_long" // exp - iat (or exp - nbf) exceeds MaxLifetime
	CodeWrongIssuer      Code = "wrong_issuer"      // iss differs from Config.Issuer
	CodeWrongAudience    Code = "wrong_audience"    // aud does not contain Config.Audience
	CodeMissingClaim     Code = "missing_claim"     // a required claim (exp, sub, tenant, ...) is absent
)

// Error is why a bearer token was refused. Code and Msg are safe to return to
// the client; Err is the underlying cause, for server logs only (it may
// quote attacker-chosen header values such as a kid).
type Error struct {
	Code Code
	Msg  string
	Err  error
}

// Error returns Msg alone, so that a caller that echoes err.Error() to the
// client leaks nothing the client did not send or may not know.
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

func newError(code Code, msg string, cause error) *Error {
	return &Error{Code: code, Msg: msg, Err: cause}
}
