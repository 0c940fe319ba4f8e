package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v5"
	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/internal/condeval"
	"github.com/ragfence/ragfence/internal/deparse"
)

// GuardrailCondition is a guardrail's when: a SQL boolean expression over
// subject and context attributes only, parsed by PostgreSQL's parser at
// load and evaluated in Go on each request (internal/condeval), so a
// guardrail costs the request no database round trip. Load refuses what
// the evaluator cannot evaluate exactly as PostgreSQL would.
type GuardrailCondition struct {
	// Text is the condition as written.
	Text string
	// Subject and Context list the attributes it uses, sorted.
	Subject []string
	Context []string

	expr  *pg.Node // for the set's version; never modified
	prog  *condeval.Program
	types []Type // of prog.Refs
	loc   *time.Location
}

// canonical is the condition as PostgreSQL's deparser writes it, so
// layout and comments do not change a set's version; its text if the
// deparser cannot write it faithfully.
func (c *GuardrailCondition) canonical() string {
	if sql, err := deparse.Expr(c.expr); err == nil {
		return sql
	}
	return c.Text
}

// Eval evaluates the condition for a request by agent ("" for a user
// calling directly). known is false when the result is NULL, as when an
// attribute the result depends on is missing (or of the wrong type).
func (c *GuardrailCondition) Eval(s *Subject, ctx Context, agent string) (holds, known bool) {
	vals := make([]condeval.Value, len(c.prog.Refs))
	for i, ref := range c.prog.Refs {
		if ref.Qualifier == "context" {
			vals[i] = contextValue(ctx, ref.Name, agent, c.loc)
		} else {
			vals[i] = subjectValue(s, ref.Name, c.types[i])
		}
	}
	t := c.prog.Eval(vals)
	return t == condeval.True, t != condeval.Unknown
}

// Applies reports whether a guardrail with this condition applies to a
// request: unless the condition is false. A guardrail restricts, so a
// condition that cannot be decided (NULL, because an attribute it needs
// is missing) applies it: failing closed. A condition that means to
// exempt requests without an attribute says so with IS NULL.
func (c *GuardrailCondition) Applies(s *Subject, ctx Context, agent string) bool {
	holds, known := c.Eval(s, ctx, agent)
	return holds || !known
}

func contextValue(ctx Context, name, agent string, loc *time.Location) condeval.Value {
	v, ok := ctx.Attr(name, agent, loc)
	if !ok {
		return condeval.Value{}
	}
	switch x := v.(type) {
	case time.Time:
		return condeval.Value{Valid: true, Time: x}
	case int64:
		return condeval.Value{Valid: true, Int: x}
	case string:
		return condeval.Value{Valid: true, Text: x}
	}
	return condeval.Value{}
}

// subjectValue converts a subject attribute as binding it for a policy
// condition would; a value of the wrong type counts as missing.
func subjectValue(s *Subject, name string, typ Type) condeval.Value {
	if s == nil {
		return condeval.Value{}
	}
	raw, ok := s.Attr(name)
	if !ok {
		return condeval.Value{}
	}
	v, err := convert(raw, typ)
	if err != nil {
		return condeval.Value{}
	}
	switch x := v.(type) {
	case string:
		return condeval.Value{Valid: true, Text: x}
	case bool:
		return condeval.Value{Valid: true, Bool: x}
	case int64:
		return condeval.Value{Valid: true, Int: x}
	case []string:
		return condeval.Value{Valid: true, Texts: x}
	case time.Time:
		return condeval.Value{Valid: true, Time: x}
	}
	return condeval.Value{}
}

// ParseGuardrailCondition validates a guardrail condition outside a file,
// for tests and tools.
func ParseGuardrailCondition(text string, set *Set) (*GuardrailCondition, error) {
	var errs ErrorList
	r := &reader{file: "<condition>", lines: []string{text}, errs: &errs}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: text, Line: 1, Column: 1, Style: yaml.FlowStyle}
	c := readGuardrailCondition(r, n, set, "")
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func readGuardrailCondition(r *reader, n *yaml.Node, set *Set, guardrail string) *GuardrailCondition {
	text := strings.TrimSpace(r.str(n, "when", ""))
	if n == nil || text == "" {
		return nil
	}
	prefix := ""
	if guardrail != "" {
		prefix = fmt.Sprintf("guardrail %q: ", guardrail)
	}
	at := func(offset int32) Pos { return r.offsetPos(n, text, int(offset)-len(conditionPrefix)) }
	expr, ok := parseGuardrailExpr(r, text, at, prefix)
	if !ok {
		return nil
	}
	prog, errs := condeval.Compile(expr, guardrailLookup(set))
	for _, e := range errs {
		r.errorAt(at(e.Location), guardrailErrCode(e.Kind), "%swhen: %s", prefix, e.Msg)
	}
	if len(errs) > 0 {
		return nil
	}
	c := &GuardrailCondition{Text: text, expr: expr, prog: prog, loc: set.Location}
	for _, ref := range prog.Refs {
		c.types = append(c.types, policyType(ref.Type))
		if ref.Qualifier == "context" {
			c.Context = append(c.Context, ref.Name)
		} else {
			c.Subject = append(c.Subject, ref.Name)
		}
	}
	slices.Sort(c.Subject)
	slices.Sort(c.Context)
	return c
}

// parseGuardrailExpr parses text as one expression, reporting a syntax
// error at its place in the file.
func parseGuardrailExpr(r *reader, text string, at func(int32) Pos, prefix string) (*pg.Node, bool) {
	if i := strings.IndexByte(text, 0); i >= 0 {
		r.errorAt(at(int32(len(conditionPrefix)+i)), CodeSyntax, "%sSQL syntax: a condition may not contain a NUL character", prefix)
		return nil, false
	}
	tree, err := pg.Parse(conditionPrefix + text)
	if err != nil {
		r.errorAt(at(syntaxOffset(err, conditionPrefix+text)), CodeSyntax, "%s%s", prefix, syntaxMessage(err))
		return nil, false
	}
	expr, ok := singleExpr(tree)
	if !ok {
		r.errorAt(at(int32(len(conditionPrefix))), CodeForbidden, "%sa condition is one boolean expression, not a statement or a list", prefix)
	}
	return expr, ok
}

func guardrailErrCode(k condeval.ErrorKind) Code {
	switch k {
	case condeval.UnknownName:
		return CodeUnknownName
	case condeval.Mismatch:
		return CodeInvalid
	}
	return CodeForbidden
}

// guardrailLookup resolves the names a guardrail condition may use: the
// subject's attributes and the context's, but not context.ip, whose
// network comparisons only PostgreSQL evaluates.
func guardrailLookup(set *Set) condeval.Lookup {
	return func(qualifier, name string) (condeval.Type, error) {
		switch qualifier {
		case "subject":
			t, ok := set.Subject[name]
			if !ok {
				return 0, fmt.Errorf("unknown subject attribute %q%s; declare it under subject.attributes", name, hintFor(name, keys(set.Subject)))
			}
			return evalType(t), nil
		case "context":
			if name == "ip" {
				return 0, errors.New("context.ip cannot be used in a guardrail's when: its network comparisons are evaluated only by PostgreSQL")
			}
			t, ok := contextAttrs[name]
			if !ok {
				return 0, fmt.Errorf("unknown context attribute %q%s; context has %s", name, hintFor(name, keys(contextAttrs)), strings.Join(keys(contextAttrs), ", "))
			}
			return evalType(t), nil
		case "":
			return 0, fmt.Errorf("%q is not an attribute: a guardrail's when may use only subject.<attr> and context.<attr>, never a table's columns", name)
		}
		return 0, fmt.Errorf("unknown name %q in %s.%s%s: a guardrail's when may use only subject.<attr> and context.<attr>", qualifier, qualifier, name, hintFor(qualifier, []string{"subject", "context"}))
	}
}

func evalType(t Type) condeval.Type {
	switch t {
	case Boolean:
		return condeval.Bool
	case Integer:
		return condeval.Int
	case Timestamptz:
		return condeval.Timestamptz
	case TextArray:
		return condeval.TextArray
	}
	return condeval.Text
}

func policyType(t condeval.Type) Type {
	switch t {
	case condeval.Bool:
		return Boolean
	case condeval.Int:
		return Integer
	case condeval.Timestamptz:
		return Timestamptz
	case condeval.TextArray:
		return TextArray
	}
	return Text
}
