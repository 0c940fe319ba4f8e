package guardrail

import "errors"

// Code classifies an Error; codes are stable, so callers may branch on them.
type Code string

// Error codes.
const (
	// CodeConfig: New or NewWebhook was given an unusable configuration.
	CodeConfig Code = "invalid_config"
	// CodeClosed: the engine closed before a suspension was made.
	CodeClosed Code = "closed"
)

// Error is a failed operation of the package.
type Error struct {
	Code Code
	Msg  string
	Err  error
}

func (e *Error) Error() string { return "guardrail: " + e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
