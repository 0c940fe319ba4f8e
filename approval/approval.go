package approval

import (
	"errors"
	"time"
)

// Status is where an approval stands.
type Status string

const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	// StatusExpired is a pending request that was not decided in time, or
	// an approval whose window has passed: computed, never stored.
	StatusExpired Status = "expired"
)

// Approval is one row of ragfence.approvals: an agent's request for the
// rows of an approval rule, or an operator's grant.
type Approval struct {
	ID       string
	Tenant   string
	Subject  string // the user whose approval it is
	Agent    string
	Resource string
	Rule     string
	Reason   string
	Status   Status // as stored: pending, approved or denied
	// RequestedBy is the agent that asked, or the operator that granted.
	RequestedBy      string
	RequestedAt      time.Time
	RequestExpiresAt time.Time // a pending request's end
	TTL              time.Duration
	DecidedAt        time.Time
	DecidedBy        string
	// ValidFrom and ValidUntil bound an approved approval.
	ValidFrom, ValidUntil time.Time
}

// StatusAt is the approval's status at now, expiry included.
func (a Approval) StatusAt(now time.Time) Status {
	switch {
	case a.Status == StatusPending && !now.Before(a.RequestExpiresAt):
		return StatusExpired
	case a.Status == StatusApproved && !now.Before(a.ValidUntil):
		return StatusExpired
	}
	return a.Status
}

// InForce reports whether the approval lifts its rule at now.
func (a Approval) InForce(now time.Time) bool {
	return a.Status == StatusApproved && !now.Before(a.ValidFrom) && now.Before(a.ValidUntil)
}

// Code classifies an Error; codes are stable, so callers may branch on them.
type Code string

const (
	// CodeInvalid: a request or grant that does not name what it approves.
	CodeInvalid Code = "invalid_approval"
	// CodeNotFound: no pending, unexpired request with that id is the
	// caller's to decide.
	CodeNotFound Code = "not_found"
	// CodeStale: the approval state could not be confirmed current.
	CodeStale Code = "approval_state_stale"
)

// Error is a failed approval operation.
type Error struct {
	Code Code
	Msg  string
	Err  error
}

func (e *Error) Error() string { return "approval: " + e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func invalid(msg string) error { return &Error{Code: CodeInvalid, Msg: msg} }
