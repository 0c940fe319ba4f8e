package filter

import (
	"errors"
	"fmt"
)

// Code classifies an Error; codes are stable, so callers may branch on them.
type Code string

// Error codes.
const (
	// CodeUnknownResource: the policy does not declare the resource.
	CodeUnknownResource Code = "unknown_resource"
	// CodeNoSubject: the request has no subject, or a subject without a tenant.
	CodeNoSubject Code = "no_subject"
	// CodeInvalidSubject: a subject attribute has the wrong type.
	CodeInvalidSubject Code = "invalid_subject"
	// CodeAgentNotGranted: the agent has no grant on the resource, so it sees
	// nothing; distinct from a query that matches no rows.
	CodeAgentNotGranted Code = "agent_not_granted"
	// CodeInvalidAlias: the table alias is reserved or not an identifier.
	CodeInvalidAlias Code = "invalid_alias"
)

// Error is a request the filter refuses. Nothing about the refused request
// may be read: callers must not run an unfiltered query instead.
type Error struct {
	Code     Code
	Resource string
	Agent    string
	Msg      string
}

func (e *Error) Error() string {
	if e.Resource == "" {
		return "filter: " + e.Msg
	}
	return fmt.Sprintf("filter: resource %q: %s", e.Resource, e.Msg)
}

// Is reports whether target is an *Error with the same code, so
// errors.Is(err, filter.ErrAgentNotGranted) works on any wrapped Error.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Resource == "" && t.Msg == ""
}

// ErrAgentNotGranted matches (with errors.Is) the error for an agent that has
// no grant on the resource it asked for.
var ErrAgentNotGranted = &Error{Code: CodeAgentNotGranted}

// ErrUnknownResource matches the error for a resource the policy does not declare.
var ErrUnknownResource = &Error{Code: CodeUnknownResource}

// ErrNoSubject matches the error for a request without a subject or tenant.
var ErrNoSubject = &Error{Code: CodeNoSubject}

// CodeOf returns the Code of the *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
