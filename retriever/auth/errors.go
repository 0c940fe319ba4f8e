package auth

import "errors"

// Error codes, stable for clients and tests that branch on them. Every code
// means HTTP 401 Unauthorized.
const (
	CodeMissingToken     = "missing_token"     // no Authorization header, or not a Bearer one
	CodeMalformedToken   = "malformed_token"   // not a JWT, or a claim of the wrong JSON type
	CodeInvalidSignature = "invalid_signature" // bad signature, refused algorithm, or unknown key
	CodeExpired          = "expired"           // exp is in the past, beyond the skew
	CodeNotYetValid      = "not_yet_valid"     // nbf or iat is in the future, beyond the skew
	CodeLifetimeTooLong  = "lifetime_too_long" // exp - iat (or exp - nbf) exceeds MaxLifetime
	CodeWrongIssuer      = "wrong_issuer"      // iss differs from Config.Issuer
	CodeWrongAudience    = "wrong_audience"    // aud does not contain Config.Audience
	CodeMissingClaim     = "missing_claim"     // a required claim (exp, sub, tenant, ...) is absent
)

// Error is why a bearer token was refused. Code and Msg are safe to return to
// the client; Err is the underlying cause, for server logs only (it may
// quote attacker-chosen header values such as a kid).
type Error struct {
	Code string
	Msg  string
	Err  error
}

// Error returns Msg alone, so that a caller that echoes err.Error() to the
// client leaks nothing the client did not send or may not know.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the Code of the *Error in err's chain, or "" if there is
// none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func newError(code, msg string, cause error) *Error {
	return &Error{Code: code, Msg: msg, Err: cause}
}
