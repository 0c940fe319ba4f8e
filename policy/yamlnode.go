package policy

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/internal/suggest"
)

// reader walks one file's YAML nodes, collecting errors with positions
// instead of stopping at the first.
type reader struct {
	file  string
	lines []string // the file's source, for positions inside block scalars
	errs  *ErrorList
	res   string // resource being read, for error context
	rule  string
}

func (r *reader) pos(n *yaml.Node) Pos { return Pos{File: r.file, Line: n.Line, Col: n.Column} }

func (r *reader) errorf(n *yaml.Node, code Code, format string, args ...any) {
	r.errorAt(r.pos(n), code, format, args...)
}

func (r *reader) errorAt(p Pos, code Code, format string, args ...any) {
	*r.errs = append(*r.errs, &Error{File: p.File, Line: p.Line, Col: p.Col, Resource: r.res, Rule: r.rule, Code: code, Msg: fmt.Sprintf(format, args...)})
}

// fields returns a mapping's values by key, reporting keys not in allowed
// (with the nearest allowed one) and a node that is not a mapping.
func (r *reader) fields(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n == nil {
		return out
	}
	if n.Kind != yaml.MappingNode {
		r.errorf(n, CodeInvalid, "%s must be a mapping", what)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			r.errorf(k, CodeUnknownField, "unknown field %q in %s%s; allowed: %s", k.Value, what, suggest.Hint(k.Value, allowed), strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			r.errorf(k, CodeDuplicate, "field %q appears twice in %s", k.Value, what)
			continue
		}
		out[k.Value] = v
	}
	return out
}

// entries returns a mapping's keys and values in file order.
func (r *reader) entries(n *yaml.Node, what string) [][2]*yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		r.errorf(n, CodeInvalid, "%s must be a mapping of names", what)
		return nil
	}
	var out [][2]*yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if seen[k.Value] {
			r.errorf(k, CodeDuplicate, "%q is defined twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, n.Content[i+1]})
	}
	return out
}

// str reads a scalar string; def is returned when n is nil.
func (r *reader) str(n *yaml.Node, what, def string) string {
	if n == nil {
		return def
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		r.errorf(n, CodeInvalid, "%s must be a string", what)
		return def
	}
	if strings.TrimSpace(n.Value) == "" {
		r.errorf(n, CodeInvalid, "%s must not be empty", what)
		return def
	}
	return n.Value
}

// ident reads a lower-case SQL identifier, optionally schema-qualified.
func (r *reader) ident(n *yaml.Node, what, def string, qualified bool) string {
	s := r.str(n, what, def)
	if n != nil && s != "" && !validIdent(s, qualified) {
		form := "a lower-case SQL name (letters, digits, _)"
		if qualified {
			form += ", optionally schema-qualified"
		}
		r.errorf(n, CodeInvalid, "%s %q must be %s", what, s, form)
	}
	return s
}

func validIdent(s string, qualified bool) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 || (len(parts) == 2 && !qualified) {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 || (p[0] >= '0' && p[0] <= '9') {
			return false
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '$') {
				return false
			}
		}
	}
	return true
}

// strList reads a sequence of strings.
func (r *reader) strList(n *yaml.Node, what string) []string {
	out, _ := r.strListNodes(n, what)
	return out
}

// strListNodes is strList with the node each string was read from: entries
// that are not strings are left out, so indexes into n.Content would not do.
func (r *reader) strListNodes(n *yaml.Node, what string) ([]string, []*yaml.Node) {
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errorf(n, CodeInvalid, "%s must be a list", what)
		return nil, nil
	}
	out := make([]string, 0, len(n.Content))
	nodes := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		if s := r.str(c, what+" entry", ""); s != "" {
			out = append(out, s)
			nodes = append(nodes, c)
		}
	}
	return out, nodes
}

// require reports a missing required field at the mapping that lacks it.
func (r *reader) require(parent *yaml.Node, f map[string]*yaml.Node, what string, keys ...string) {
	for _, k := range keys {
		if f[k] == nil {
			r.errorf(parent, CodeMissing, "%s needs %q", what, k)
		}
	}
}
