package policy

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/internal/suggest"
)

var guardrailFields = []string{
	"name", "who", "collections", "when", "window", "max_rows", "max_requests", "max_documents",
	"baseline", "action", "cap_k", "suspend_for",
}

var audiences = []string{string(AudienceAgents), string(AudienceSubjects), string(AudienceEveryone)}

// guardrailName is the form of a guardrail's name: it is stored in the
// database and in the revocations it makes, so it is kept plain.
var guardrailName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// readGuardrails reads a file's guardrails section; seen holds the names
// of the set's guardrails read so far.
func readGuardrails(r *reader, n *yaml.Node, set *Set, seen map[string]*Guardrail) []*Guardrail {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errorf(n, CodeInvalid, "guardrails must be a list of guardrails with name, who, window and action")
		return nil
	}
	var out []*Guardrail
	for _, item := range n.Content {
		g := readGuardrail(r, item, set)
		if g.Name == "" {
			continue
		}
		if prev, dup := seen[g.Name]; dup {
			r.errorf(item, CodeDuplicate, "guardrail %q is already defined at %s", g.Name, prev.Pos)
			continue
		}
		seen[g.Name] = g
		out = append(out, g)
	}
	return out
}

// guardrailReader reads one guardrail, naming it in every message.
type guardrailReader struct {
	*reader
	what string // `guardrail "name"`
	f    map[string]*yaml.Node
}

func (gr *guardrailReader) errorf(n *yaml.Node, code Code, format string, args ...any) {
	gr.reader.errorf(n, code, "%s: %s", gr.what, fmt.Sprintf(format, args...))
}

func readGuardrail(r *reader, item *yaml.Node, set *Set) *Guardrail {
	gr := &guardrailReader{reader: r, what: "guardrail"}
	if name := peekField(item, "name"); name != "" {
		gr.what = fmt.Sprintf("guardrail %q", name)
	}
	gr.f = r.fields(item, gr.what, guardrailFields...)
	r.require(item, gr.f, gr.what, "name", "who", "window", "action")
	g := &Guardrail{Name: gr.name(), Pos: r.pos(item)}
	g.Who, g.Agent = gr.who()
	g.Collections = gr.collections(set)
	g.When = readGuardrailCondition(r, gr.f["when"], set, g.Name)
	g.Window = gr.duration("window", time.Second, MaxGuardrailWindow, true)
	g.MaxRows = gr.positive("max_rows", math.MaxInt64)
	g.MaxRequests = gr.positive("max_requests", math.MaxInt64)
	g.MaxDocuments = gr.positive("max_documents", math.MaxInt64)
	g.Baseline = gr.baseline()
	if g.MaxRows == 0 && g.MaxRequests == 0 && g.MaxDocuments == 0 && g.Baseline == nil && !gr.anyLimitWritten() {
		r.errorf(item, CodeMissing, "%s needs a budget: max_rows, max_requests, max_documents or baseline", gr.what)
	}
	gr.action(g)
	gr.documents(g, set)
	return g
}

// peekField returns a mapping's scalar value for key, before the mapping
// is validated, so messages can name what they are about.
func peekField(n *yaml.Node, key string) string {
	if n == nil || n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// str reads a non-empty string, as reader.str, naming the guardrail.
func (gr *guardrailReader) str(n *yaml.Node, what string) string {
	switch {
	case n == nil:
		return ""
	case n.Kind != yaml.ScalarNode || n.Tag == "!!null":
		gr.errorf(n, CodeInvalid, "%s must be a string", what)
		return ""
	case strings.TrimSpace(n.Value) == "":
		gr.errorf(n, CodeInvalid, "%s must not be empty", what)
		return ""
	}
	return n.Value
}

func (gr *guardrailReader) name() string {
	n := gr.f["name"]
	name := gr.str(n, "the name")
	if name != "" && (!guardrailName.MatchString(name) || len(name) > maxGuardrailNameBytes) {
		gr.errorf(n, CodeInvalid, "the name must be lower-case letters, digits, - and _ (at most %d characters)", maxGuardrailNameBytes)
	}
	return name
}

// who reads agents | subjects | everyone | {agent: ID}.
func (gr *guardrailReader) who() (Audience, string) {
	n := gr.f["who"]
	if n == nil {
		return "", ""
	}
	if n.Kind == yaml.MappingNode {
		f := gr.fields(n, gr.what+" who", "agent")
		gr.require(n, f, gr.what+" who", "agent")
		return AudienceAgent, gr.str(f["agent"], "agent")
	}
	s := gr.str(n, "who")
	if s != "" && !slices.Contains(audiences, s) {
		gr.errorf(n, CodeInvalid, "who %q must be agents, subjects, everyone or {agent: <id>}%s", s, suggest.Hint(s, audiences))
		return "", ""
	}
	return Audience(s), ""
}

func (gr *guardrailReader) collections(set *Set) []string {
	n := gr.f["collections"]
	list, nodes := gr.strListNodes(n, "collections")
	if n != nil && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		gr.errorf(n, CodeInvalid, "collections is empty; leave it out to count every collection")
	}
	names := keys(set.Resources)
	for i, c := range list {
		switch {
		case set.Resources[c] == nil:
			gr.errorf(nodes[i], CodeUnknownName, "collection %q is not a resource of the policy%s", c, hintFor(c, names))
		case slices.Index(list, c) < i:
			gr.errorf(nodes[i], CodeDuplicate, "collection %q is listed twice", c)
		}
	}
	if len(list) == 0 {
		return nil
	}
	return list
}

// duration reads a Go duration in (0, hi]; whole seconds when asked.
func (gr *guardrailReader) duration(key string, lo, hi time.Duration, wholeSeconds bool) time.Duration {
	n := gr.f[key]
	s := gr.str(n, key)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		gr.errorf(n, CodeInvalid, "%s %q is not a duration such as 1m or 15m", key, s)
	case d <= 0:
		gr.errorf(n, CodeInvalid, "%s must be positive", key)
	case d < lo || d > hi:
		gr.errorf(n, CodeInvalid, "%s %s is out of range: from %s to %s", key, d, lo, hi)
	case wholeSeconds && d%time.Second != 0:
		gr.errorf(n, CodeInvalid, "%s %s must be a whole number of seconds", key, d)
	default:
		return d
	}
	return 0
}

// positive reads an optional integer in [1, hi]; 0 means absent or invalid.
func (gr *guardrailReader) positive(key string, hi int64) int64 {
	return gr.integer(gr.f[key], key, 1, hi)
}

func (gr *guardrailReader) integer(n *yaml.Node, what string, lo, hi int64) int64 {
	if n == nil {
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil || v < lo || v > hi {
		gr.errorf(n, CodeInvalid, "%s must be a whole number from %d to %d", what, lo, hi)
		return 0
	}
	return v
}

func (gr *guardrailReader) anyLimitWritten() bool {
	for _, k := range []string{"max_rows", "max_requests", "max_documents", "baseline"} {
		if gr.f[k] != nil {
			return true // invalid, and reported as such
		}
	}
	return false
}

// baseline reads {windows, factor, min_rows}, all required.
func (gr *guardrailReader) baseline() *Baseline {
	n := gr.f["baseline"]
	if n == nil {
		return nil
	}
	what := gr.what + " baseline"
	f := gr.fields(n, what, "windows", "factor", "min_rows")
	if n.Kind != yaml.MappingNode {
		return nil
	}
	gr.require(n, f, what, "windows", "factor", "min_rows")
	b := &Baseline{
		Windows: int(gr.integer(f["windows"], "baseline windows", 1, MaxBaselineWindows)),
		MinRows: gr.integer(f["min_rows"], "baseline min_rows", 1, math.MaxInt64),
	}
	if fn := f["factor"]; fn != nil {
		v, err := strconv.ParseFloat(fn.Value, 64)
		if fn.Kind != yaml.ScalarNode || (fn.Tag != "!!int" && fn.Tag != "!!float") || err != nil || math.IsInf(v, 0) || math.IsNaN(v) || v < 1 || v > 1e6 {
			gr.errorf(fn, CodeInvalid, "baseline factor must be a number from 1 to 1000000: a spike is more than the average")
		} else {
			b.Factor = v
		}
	}
	if b.Windows == 0 || b.MinRows == 0 || b.Factor == 0 {
		return nil
	}
	return b
}

// action reads the action and the one setting it needs.
func (gr *guardrailReader) action(g *Guardrail) {
	n := gr.f["action"]
	s := gr.str(n, "action")
	if s != "" && !slices.Contains(guardrailActions, s) {
		gr.errorf(n, CodeInvalid, "action %q must be one of %s%s", s, strings.Join(guardrailActions, ", "), suggest.Hint(s, guardrailActions))
		return
	}
	g.Action = GuardrailAction(s)
	gr.needs(g.Action == ActionCap, "cap_k", "action cap")
	gr.needs(g.Action == ActionSuspend, "suspend_for", "action suspend")
	if g.Action == ActionCap && gr.f["cap_k"] != nil {
		g.CapK = int(gr.integer(gr.f["cap_k"], "cap_k", 1, math.MaxInt32))
	}
	if g.Action == ActionSuspend && gr.f["suspend_for"] != nil {
		g.SuspendFor = gr.duration("suspend_for", time.Nanosecond, MaxGuardrailSuspend, false)
	}
}

// needs reports key missing where it is needed (at the action) and
// present where it is not.
func (gr *guardrailReader) needs(needed bool, key, by string) {
	switch n := gr.f[key]; {
	case needed && n == nil:
		gr.errorf(gr.f["action"], CodeMissing, "%s needs %s", by, key)
	case !needed && n != nil && gr.f["action"] != nil:
		gr.errorf(n, CodeInvalid, "%s applies only to %s", key, by)
	}
}

// documents requires a document column of every resource a guardrail
// with max_documents counts.
func (gr *guardrailReader) documents(g *Guardrail, set *Set) {
	if g.MaxDocuments == 0 {
		return
	}
	resources := g.Collections
	if resources == nil {
		resources = keys(set.Resources)
	}
	var missing []string
	for _, name := range resources {
		if res := set.Resources[name]; res != nil && res.Document == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		gr.errorf(gr.f["max_documents"], CodeMissing, "max_documents counts the distinct documents rows belong to, so every resource it counts needs a document column; add document: <column> to %s",
			strings.Join(missing, ", "))
	}
}
