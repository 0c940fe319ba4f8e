package revocation

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Kind is what a revocation refuses.
type Kind string

const (
	// KindToken refuses one token, by its jti.
	KindToken Kind = "token"
	// KindSubject refuses every token of a user, agents acting for them included.
	KindSubject Kind = "subject"
	// KindAgent refuses every token in which an agent acts, or with Subject
	// set only those in which it acts for that user.
	KindAgent Kind = "agent"
)

// Revocation is one row of ragfence.revocations.
type Revocation struct {
	ID      int64
	Tenant  string
	Kind    Kind
	TokenID string // KindToken
	Subject string // KindSubject; KindAgent when it is limited to one user
	Agent   string // KindAgent
	// Reason is for operators; it is never shown to the refused caller.
	Reason    string
	CreatedBy string
	CreatedAt time.Time
	// EndsAt is when it stops applying; zero means until it is lifted.
	EndsAt   time.Time
	LiftedAt time.Time // zero while not lifted
	LiftedBy string
	// TokenExpiresAt is when the revoked token expires anyway (KindToken,
	// optional): after it the row can be pruned.
	TokenExpiresAt time.Time
}

// InForce reports whether r refuses requests at now.
func (r Revocation) InForce(now time.Time) bool {
	return r.LiftedAt.IsZero() && (r.EndsAt.IsZero() || now.Before(r.EndsAt))
}

// Request is a revocation to make: Tenant and one of TokenID, Subject or
// Agent (Agent with Subject limits it to that user).
type Request struct {
	Tenant  string
	TokenID string
	Subject string
	Agent   string
	Reason  string
	// By is who makes it (required).
	By string
	// For bounds it; 0 means until it is lifted.
	For time.Duration
	// TokenExpiresAt is the revoked token's expiry, if known (KindToken).
	TokenExpiresAt time.Time
}

// Validate reports, as a CodeInvalid error, a Request that does not name
// exactly one thing to revoke; Store.Revoke checks it too.
func (r Request) Validate() error {
	_, err := r.kind()
	return err
}

// kind checks r and says what it revokes.
func (r Request) kind() (Kind, error) {
	for _, v := range []string{r.Tenant, r.TokenID, r.Subject, r.Agent} {
		if v != strings.TrimSpace(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return "", invalid(fmt.Sprintf("%q has leading or trailing spaces or control characters: it would match nobody", v))
		}
	}
	var k Kind
	switch {
	case r.Tenant == "":
		return "", invalid("a revocation needs a tenant")
	case r.By == "":
		return "", invalid("a revocation needs who makes it (By)")
	case r.For < 0:
		return "", invalid("the duration must be positive")
	case r.TokenID != "" && (r.Subject != "" || r.Agent != ""):
		return "", invalid("a token revocation names only the token; revoke the subject or agent separately")
	case r.TokenID != "":
		k = KindToken
	case r.Agent != "":
		k = KindAgent
	case r.Subject != "":
		k = KindSubject
	default:
		return "", invalid("name what to revoke: a token, a subject, or an agent")
	}
	if !r.TokenExpiresAt.IsZero() && k != KindToken {
		return "", invalid("only a token revocation has a token expiry")
	}
	return k, nil
}

// Code classifies an Error; codes are stable, so callers may branch on them.
type Code string

// Error codes. The three refusals are the codes clients receive.
const (
	CodeTokenRevoked   Code = "token_revoked"
	CodeSubjectRevoked Code = "subject_revoked"
	CodeAgentRevoked   Code = "agent_revoked"
	// CodeStale: the revocation state could not be confirmed current
	// within the bound; nothing may be served on it.
	CodeStale Code = "revocation_state_stale"
	// CodeInvalid: a Request that does not name one thing to revoke.
	CodeInvalid Code = "invalid_revocation"
	// CodeNotFound: no revocation in force has that id.
	CodeNotFound Code = "not_found"
)

// Error is a refusal or a failed operation.
type Error struct {
	Code Code
	Msg  string
	// Revocation is the revocation that refused the caller (the refusals).
	Revocation *Revocation
	Err        error
}

func (e *Error) Error() string { return "revocation: " + e.Msg }
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

// refusal is the error a caller matching r receives. Its message names the
// revocation and since when, never the reason.
func refusal(r Revocation) *Error {
	code, what := CodeAgentRevoked, "this agent"
	switch r.Kind {
	case KindToken:
		code, what = CodeTokenRevoked, "this token"
	case KindSubject:
		code, what = CodeSubjectRevoked, "this subject"
	}
	return &Error{Code: code, Revocation: &r,
		Msg: fmt.Sprintf("%s is revoked (revocation %d, since %s); ask an administrator of tenant %q",
			what, r.ID, r.CreatedAt.UTC().Format(time.RFC3339), r.Tenant)}
}
