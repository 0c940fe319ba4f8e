package rewrite

import (
	"errors"
	"fmt"
)

// Code classifies a refused statement; codes are stable.
type Code string

// Refusal codes.
const (
	CodeSyntax         Code = "syntax"              // PostgreSQL cannot parse the statement
	CodeNotAQuery      Code = "not_a_query"         // not exactly one SELECT (INSERT, DDL, SET, COPY, several statements, ...)
	CodeWrite          Code = "write"               // a data-modifying CTE, SELECT INTO, FOR UPDATE/SHARE
	CodeUndeclared     Code = "undeclared_relation" // a table the policy neither protects nor lists as unfiltered
	CodeSystemCatalog  Code = "system_catalog"      // pg_catalog, information_schema, pg_* tables
	CodeTableFunction  Code = "table_function"      // a function in FROM
	CodeFunction       Code = "function_not_allowed"
	CodeOperator       Code = "operator_not_allowed" // strict mode: an operator that can fail on data
	CodeExpression     Code = "expression_not_allowed"
	CodeParam          Code = "param_out_of_range"  // $n beyond the arguments supplied
	CodeMaskedColumn   Code = "masked_column_use"   // a masked column used to filter, join, group or order
	CodeMissingColumns Code = "missing_columns"     // a masked resource without a columns list
	CodePolicy         Code = "policy_refused"      // the policy refused the request (Err is the filter.Error)
	CodeExplain        Code = "explain_unsupported" // Request.Explain on a statement whose rows are not one table's
)

// Error is a statement the rewriter refuses. Position is the byte offset in
// the statement (0-based), or -1.
type Error struct {
	Code     Code
	Msg      string
	Position int
	Err      error // a filter.Error when the policy refused the request
}

func (e *Error) Error() string {
	if e.Position >= 0 {
		return fmt.Sprintf("rewrite: %s: %s (at byte %d)", e.Code, e.Msg, e.Position)
	}
	return fmt.Sprintf("rewrite: %s: %s", e.Code, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func refuse(code Code, pos int32, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Position: int(pos)}
}
