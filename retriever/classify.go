package retriever

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ragfence/ragfence/filter"
)

// classify turns a search failure into the *Error it is answered with;
// filtered says the query had a metadata filter.
func classify(ctx context.Context, err error, filtered bool) *Error {
	var e *Error
	var fe *filter.Error
	var pgErr *pgconn.PgError
	isPG := errors.As(err, &pgErr)
	switch {
	case errors.As(err, &e):
		return e // classified already
	case filtered && isPG && strings.HasPrefix(pgErr.Code, "22"):
		// A data exception (such as "abc" for an integer column) comes from
		// a filter value, the only values the request puts into the SQL
		// besides the checked embedding: the client's mistake, not ours.
		return &Error{Code: CodeInvalidFilter, Msg: "a filter value does not fit its field's type", Err: err}
	case errors.As(err, &fe):
		return filterError(fe, err)
	case isPG && pgErr.Code == "57014" && ctx.Err() == nil:
		return &Error{Code: CodeTimeout, Msg: "the search took longer than the statement timeout", Err: err}
	case ctx.Err() != nil:
		return Interrupted(ctx, err)
	case isPG && ConnectionLost(pgErr.Code):
		return &Error{Code: CodeUnavailable, Msg: "the database is unavailable; retry later", Err: err}
	case isPG:
		return &Error{Code: CodeInternal, Msg: "the search failed; the server log has the details", Err: err}
	}
	// Anything else is the connection: the database is down or unreachable.
	return &Error{Code: CodeUnavailable, Msg: "the database is unavailable; retry later", Err: err}
}

// filterError maps the filter's refusal to the client's code: each code
// its own, and a refusal the client cannot have caused (an alias the
// searcher chose) internal.
func filterError(fe *filter.Error, err error) *Error {
	switch fe.Code {
	case filter.CodeAgentNotGranted:
		return &Error{Code: CodeAgentNotGranted, Msg: fmt.Sprintf("agent %q has no grant on collection %q", fe.Agent, fe.Resource), Err: err}
	case filter.CodeInvalidSubject:
		return &Error{Code: CodeInvalidSubject, Msg: fe.Msg, Err: err}
	case filter.CodeUnknownResource:
		return &Error{Code: CodeUnknownCollection, Msg: fe.Msg, Err: err}
	case filter.CodeNoSubject:
		return &Error{Code: CodeUnauthenticated, Msg: "the token names no subject or no tenant", Err: err}
	}
	return &Error{Code: CodeInternal, Msg: "the search failed; the server log has the details", Err: err}
}

// ConnectionLost reports whether a SQLSTATE means the connection or the
// server went away (class 08; 57P01-57P03: terminated by an administrator,
// a crash or a restart; 53300: too many connections), which a retry on a new
// connection may fix, rather than that the search itself failed.
func ConnectionLost(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "53300":
		return true
	}
	return strings.HasPrefix(code, "08")
}

// Interrupted is the error of a database call whose ctx ended: its
// deadline (the request's own bound: a saturated pool, a lock) means busy,
// not broken; otherwise the caller went away. Both are unavailable.
func Interrupted(ctx context.Context, err error) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Code: CodeUnavailable, Msg: "the database could not serve the request in time; retry later", Err: err}
	}
	return &Error{Code: CodeUnavailable, Msg: "the request was cancelled", Err: err}
}
