package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Code classifies an Error; codes are stable, so callers and tests may
// branch on them.
type Code string

// Error codes.
const (
	CodeYAML         Code = "yaml"          // the file is not valid YAML
	CodeUnknownField Code = "unknown_field" // a key the format does not have
	CodeMissing      Code = "missing"       // a required key is absent
	CodeInvalid      Code = "invalid"       // a value of the wrong kind or out of range
	CodeDuplicate    Code = "duplicate"     // a name defined twice
	CodeSyntax       Code = "syntax"        // a condition PostgreSQL cannot parse
	CodeForbidden    Code = "forbidden"     // SQL outside the allowed subset
	CodeUnfaithful   Code = "unfaithful"    // a condition ragfence cannot write back as SQL of the same meaning
	CodeUnknownName  Code = "unknown_name"  // a column, attribute, relation or function that does not exist
	CodeCatalog      Code = "catalog"       // the live database disagrees with the policy
)

// Error is one problem in a policy set, located in its file.
type Error struct {
	File     string
	Line     int
	Col      int
	Resource string
	Rule     string
	Code     Code
	Msg      string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Col)
	if e.Resource != "" {
		fmt.Fprintf(&b, "resource %q: ", e.Resource)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a policy set, sorted by file, line and
// column, so authors fix them all in one pass.
type ErrorList []*Error

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors, so errors.As finds an *Error in the list.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// CodeOf returns the Code of the first *Error in err's chain (an ErrorList's
// first, by file and line), or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// Pos is a place in a policy file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }
