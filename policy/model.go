package policy

import (
	"slices"
	"strings"
	"time"
)

// Type is the SQL type of a subject or context attribute.
type Type string

// The attribute types a policy may declare.
const (
	Text        Type = "text"
	TextArray   Type = "text[]"
	Integer     Type = "integer"
	Boolean     Type = "boolean"
	Timestamptz Type = "timestamptz"
	Inet        Type = "inet"
)

var declarableTypes = []Type{Text, TextArray, Integer, Boolean, Timestamptz}

// builtinSubject are the subject attributes every request carries.
var builtinSubject = map[string]Type{"id": Text, "tenant": Text, "roles": TextArray, "groups": TextArray}

// contextAttrs are the facts the server knows about a request.
var contextAttrs = map[string]Type{"time": Timestamptz, "hour": Integer, "weekday": Integer, "ip": Inet, "agent": Text}

// Set is a loaded, validated policy set.
type Set struct {
	// Files the set was loaded from, in load order.
	Files []string
	// Subject is the type of every subject attribute, built-in and declared.
	Subject map[string]Type
	// Location is the time zone of context.hour and context.weekday.
	Location *time.Location
	// Resources by name; Names lists them sorted.
	Resources map[string]*Resource
	Names     []string
	// Unfiltered lists tables that may be read without a policy (rewriter).
	Unfiltered []string
	// Guardrails are the behavioural limits, in file order.
	Guardrails []*Guardrail

	version string
}

// Version is a stable hash of the set's canonical form: it changes when a
// rule, a mask, a grant or a declaration changes, not with comments or layout.
func (s *Set) Version() string { return s.version }

// Resource is a protected table and its rules.
type Resource struct {
	Name      string
	Table     string // as written, possibly schema-qualified
	Tenant    string // the tenant column
	ID        string
	Content   string
	Embedding string
	Metadata  string
	// Document is the column naming the document a row belongs to, which
	// guardrails with max_documents count; "" when not declared.
	Document string
	// Columns conditions may use; nil when neither the policy nor a database
	// said, in which case names are checked by PostgreSQL at query time.
	Columns    []string
	Filterable []string
	Relations  map[string]*Relation
	Allow      []*Rule
	Deny       []*Rule
	Masks      []*Mask
	// Agents maps an agent id to its grant; an agent not in it sees nothing.
	Agents map[string]*Grant
	Pos    Pos
}

// Relation is a table a resource's conditions may look into with EXISTS.
type Relation struct {
	Name    string
	Table   string
	Tenant  string
	Columns []string
	Pos     Pos
}

// Effect says whether a rule grants or denies.
type Effect string

// The effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
	// Approval marks an agent's rows withheld until its user approves.
	Approval Effect = "approval"
)

// Rule is one named allow or deny condition.
type Rule struct {
	Name   string
	Effect Effect
	// Agent is the agent whose grant holds the rule, or "" for user rules.
	Agent string
	When  *Condition
	Pos   Pos
}

// Mask makes a column read as NULL unless its condition holds.
type Mask struct {
	Column string
	Unless *Condition
	Pos    Pos
}

// Grant is what an agent may see of a resource, within its user's rights.
type Grant struct {
	Agent string
	Allow []*Rule
	Deny  []*Rule
	// Approval are the rows the agent reads only while its user's
	// approval is in force: without it they are withheld as by a deny.
	Approval []*ApprovalRule
	Pos      Pos
}

// ApprovalRule marks rows an agent may read only with its user's explicit,
// time-boxed approval (its Rule's Effect is Approval). An approval lifts
// only this rule for one (tenant, user, agent, resource): it never widens
// beyond the user's own rights or the agent's allow rules.
type ApprovalRule struct {
	*Rule
	// TTL is how long an approval lasts once given.
	TTL time.Duration
}

// Rules are every rule of the grant: allow, deny, then approval.
func (g *Grant) Rules() []*Rule {
	out := slices.Concat(g.Allow, g.Deny)
	for _, a := range g.Approval {
		out = append(out, a.Rule)
	}
	return out
}

// ApprovalRule returns the approval rule named name, or nil.
func (g *Grant) ApprovalRule(name string) *ApprovalRule {
	for _, a := range g.Approval {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// MaxApprovalTTL bounds an approval rule's ttl in any policy; a server
// may bound it further.
const MaxApprovalTTL = 30 * 24 * time.Hour

// Tables returns the resource's table split into schema (possibly "") and name.
func (r *Resource) TableName() (schema, name string) { return splitTable(r.Table) }

// TableName returns the relation's table split into schema (possibly "") and name.
func (r *Relation) TableName() (schema, name string) { return splitTable(r.Table) }

func splitTable(t string) (string, string) {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			return t[:i], t[i+1:]
		}
	}
	return "", t
}

// QuotedTable is the resource's table as a quoted SQL name, schema-qualified
// when declared so.
func (r *Resource) QuotedTable() string {
	schema, table := r.TableName()
	if schema == "" {
		return QuoteIdent(table)
	}
	return QuoteIdent(schema, table)
}

// QuoteIdent quotes a name, or the parts of a qualified name, as PostgreSQL
// reads them: every part in double quotes, quotes doubled, NUL dropped
// (PostgreSQL refuses it anyway). The one way ragfence quotes names.
func QuoteIdent(parts ...string) string {
	quoted := make([]string, len(parts))
	for i, p := range parts {
		quoted[i] = `"` + strings.ReplaceAll(strings.ReplaceAll(p, "\x00", ""), `"`, `""`) + `"`
	}
	return strings.Join(quoted, ".")
}

// ReservedPrefix starts the names ragfence gives what it adds to SQL (the
// aliases of relations inside a policy's EXISTS, the columns it selects): a
// statement or a policy may not name an alias with it, so what ragfence
// adds can never be captured by what the author wrote.
const ReservedPrefix = "ragfence_"
