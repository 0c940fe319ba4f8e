package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error codes, stable for callers and tests that branch on them.
const (
	CodeYAML         = "yaml"          // the file is not valid YAML
	CodeUnknownField = "unknown_field" // a key the format does not have
	CodeMissing      = "missing"       // a required key is absent
	CodeInvalid      = "invalid"       // a value of the wrong kind or out of range
	CodeDuplicate    = "duplicate"     // a name defined twice
	CodeSyntax       = "syntax"        // a condition PostgreSQL cannot parse
	CodeForbidden    = "forbidden"     // SQL outside the allowed subset
	CodeUnfaithful   = "unfaithful"    // a condition ragfence cannot write back as SQL of the same meaning
	CodeUnknownName  = "unknown_name"  // a column, attribute, relation or function that does not exist
	CodeCatalog      = "catalog"       // the live database disagrees with the policy
)

// Error is one problem in a policy set, located in its file.
type Error struct {
	File     string
	Line     int
	Col      int
	Resource string
	Rule     string
	Code     string
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
