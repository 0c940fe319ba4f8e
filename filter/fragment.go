package filter

import (
	"fmt"
	"slices"
	"strings"

	"github.com/Masterminds/squirrel"

	"github.com/ragfence/ragfence/internal/dollar"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// Request is what a fragment is compiled for.
type Request struct {
	// Subject is who the request acts for; required, with a tenant.
	Subject *policy.Subject
	// Context is what the server knows about the request (time, client IP).
	// A zero time or IP means the request does not carry it.
	Context policy.Context
	// Agent is the AI agent acting for Subject, or "" for the user themself.
	Agent string
	// Alias is how the query names the protected table: its alias, or ""
	// for the table's own name.
	Alias string
	// Approved reports whether the agent's approval rule of resource is
	// lifted for this request by its user's approval in force (see
	// policy.ApprovalRule); nil means none is. It is bound as a value, so
	// the SQL text is the same approved or not.
	Approved func(resource, rule string) bool
}

// Fragment is a resource's policy for one request: a SQL boolean expression
// over the table's alias, with every value bound. Its text depends only on
// the policy and the request's shape (agent, missing attributes, alias),
// never on the subject's values, so statements built from it can be cached
// and prepared.
//
// Fragment implements squirrel.Sqlizer with ? placeholders (a literal ? in
// the SQL, such as the jsonb ? operator, is written ??), for use with
// squirrel.Dollar; SQL renders $n placeholders directly.
type Fragment struct {
	Resource string
	// Outcome is AlwaysDenied when no row can be visible (the SQL is FALSE).
	Outcome Outcome
	// Reason says why the outcome is AlwaysDenied.
	Reason string
	Agent  string

	shape *shape
	where *rendered
	alias string
	args  []any
	vals  []any // resolved values of the resource's attributes
	res   *resource
}

// ToSql implements squirrel.Sqlizer.
func (f *Fragment) ToSql() (string, []any, error) {
	return f.where.sql, slices.Clone(f.args), nil
}

// Shape identifies the fragment's SQL text: two fragments of one policy
// with the same Shape render the same SQL, whatever their values, so a
// statement rewritten for one can be reused with the other's Args.
func (f *Fragment) Shape() string { return f.Resource + "\x00" + f.shape.key + "\x00" + f.alias }

// SQL renders the fragment with placeholders $first, $first+1, ... for a
// query that already binds first-1 arguments of its own.
func (f *Fragment) SQL(first int) string { return dollar.Number(f.where.sql, first) }

// Args returns the fragment's arguments, in placeholder order.
func (f *Fragment) Args() []any { return slices.Clone(f.args) }

// Rules says, for each rule of the resource (and the agent's grant), whether
// it takes part in this request.
func (f *Fragment) Rules() []RuleState { return slices.Clone(f.shape.rules) }

// Granted is a text[] expression over the table's alias: the names of the
// allow rules that hold for the row (an agent grant's as agent:rule), for
// a row the fragment lets through, "why is this row visible". It binds the
// same values as the fragment, in GrantedArgs.
func (f *Fragment) Granted() squirrel.Sqlizer {
	r := f.grantedRendered()
	return squirrel.Expr(r.sql, bind(r, f.vals)...)
}

// GrantedArgs returns the arguments of Granted, without rendering it.
func (f *Fragment) GrantedArgs() []any { return bind(f.grantedRendered(), f.vals) }

func (f *Fragment) grantedRendered() *rendered {
	key := f.alias + "\x01granted" // not a column name: masks use \x00
	if r, ok := f.shape.maskCache.Load(key); ok {
		return r.(*rendered)
	}
	r, _ := f.shape.maskCache.LoadOrStore(key, renderTemplate(f.shape.granted, f.alias, f.res.attrIndex))
	return r.(*rendered)
}

// ApprovalRequired names the agent's approval rules whose rows this
// request withholds, for lack of the user's approval in force.
func (f *Fragment) ApprovalRequired() []string {
	var out []string
	for i, a := range f.res.attrs {
		if a.approval != nil && a.approval.Agent == f.Agent && f.Agent != "" && f.vals[i] == false {
			out = append(out, a.name)
		}
	}
	slices.Sort(out)
	return out
}

// Masked returns the resource's masked columns, sorted.
func (f *Fragment) Masked() []string {
	out := make([]string, 0, len(f.shape.masks))
	for c := range f.shape.masks {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Column returns the expression to select column col as: the qualified
// column, or, for a masked column, a CASE that reads NULL unless the mask's
// condition holds for the row.
func (f *Fragment) Column(col string) squirrel.Sqlizer {
	r := f.maskRendered(col)
	if r == nil {
		return squirrel.Expr(f.alias + "." + quoteIdent(col))
	}
	return squirrel.Expr(r.sql, bind(r, f.vals)...)
}

// ColumnArgs returns the arguments of Column(col), without rendering it.
func (f *Fragment) ColumnArgs(col string) []any {
	r := f.maskRendered(col)
	if r == nil {
		return nil
	}
	return bind(r, f.vals)
}

// maskRendered is the masked column's expression for f's alias, rendered
// once per shape, or nil when col is not masked.
func (f *Fragment) maskRendered(col string) *rendered {
	m, ok := f.shape.masks[col]
	if !ok {
		return nil
	}
	key := f.alias + "\x00" + col
	if r, ok := f.shape.maskCache.Load(key); ok {
		return r.(*rendered)
	}
	r, _ := f.shape.maskCache.LoadOrStore(key, renderTemplate(m, f.alias, f.res.attrIndex))
	return r.(*rendered)
}

// Fragment compiles the named resource's policy for a request. It fails with
// an *Error (see the Code constants) rather than return a fragment that could
// show more than the request may see.
func (p *Policy) Fragment(resourceName string, req Request) (*Fragment, error) {
	r, ok := p.resources[resourceName]
	if !ok {
		return nil, &Error{Code: CodeUnknownResource, Resource: resourceName,
			Msg: "not declared in the policy" + p.didYouMean(resourceName)}
	}
	if req.Subject == nil || req.Subject.Tenant == "" {
		return nil, &Error{Code: CodeNoSubject, Resource: resourceName,
			Msg: "the request has no subject with a tenant; authenticate the caller first"}
	}
	if req.Agent != "" && r.agents[req.Agent] == nil {
		return nil, &Error{Code: CodeAgentNotGranted, Resource: resourceName, Agent: req.Agent,
			Msg: fmt.Sprintf("agent %q has no grant on this resource, so it may see none of its rows; add one under agents:", req.Agent)}
	}
	alias, err := r.aliasFor(resourceName, req.Alias)
	if err != nil {
		return nil, err
	}
	vals, missing, err := r.values(p.set, req)
	if err != nil {
		return nil, err
	}
	sh := r.shapeFor(req.Agent, missing)
	rd := sh.renderFor(alias, r.attrIndex)
	return &Fragment{
		Resource: resourceName, Outcome: sh.outcome, Reason: sh.reason, Agent: req.Agent,
		shape: sh, where: rd, alias: alias, args: bind(rd, vals), vals: vals, res: r,
	}, nil
}

func (p *Policy) didYouMean(name string) string {
	if len(p.set.Names) == 0 {
		return ""
	}
	return fmt.Sprintf("; declared: %s", strings.Join(p.set.Names, ", "))
}

// aliasFor returns the quoted alias. Aliases with the reserved prefix would
// be captured by the aliases ragfence gives relations inside EXISTS.
func (r *resource) aliasFor(resourceName, alias string) (string, error) {
	if alias == "" {
		_, alias = r.res.TableName()
	}
	if strings.HasPrefix(strings.ToLower(alias), policy.ReservedPrefix) {
		return "", &Error{Code: CodeInvalidAlias, Resource: resourceName,
			Msg: fmt.Sprintf("alias %q starts with %q, which ragfence reserves; choose another alias", alias, policy.ReservedPrefix)}
	}
	return quoteIdent(alias), nil
}

// values resolves every attribute the resource's rules bind, and the set of
// those the request does not carry.
func (r *resource) values(set *policy.Set, req Request) ([]any, map[string]bool, error) {
	vals := make([]any, len(r.attrs))
	var missing map[string]bool
	for i, a := range r.attrs {
		v, ok, err := resolve(set, a, req)
		if err != nil {
			return nil, nil, &Error{Code: CodeInvalidSubject, Resource: r.res.Name, Msg: err.Error()}
		}
		if !ok {
			if missing == nil {
				missing = map[string]bool{}
			}
			missing[a.full] = true
			continue
		}
		vals[i] = v
	}
	return vals, missing, nil
}

func resolve(set *policy.Set, a attrRef, req Request) (any, bool, error) {
	if a.approval != nil {
		// Never missing: a request without approvals binds false.
		return req.Approved != nil && a.approval.Agent == req.Agent && req.Approved(a.resource, a.name), true, nil
	}
	if a.context {
		v, ok := req.Context.Attr(a.name, req.Agent, set.Location)
		return v, ok, nil
	}
	v, ok := req.Subject.Attr(a.name)
	if !ok {
		return nil, false, nil
	}
	v, err := policy.ConvertAttr(v, a.typ)
	if err != nil {
		return nil, false, fmt.Errorf("subject attribute %q: %w", a.name, err)
	}
	return v, true, nil
}

// shapeFor returns the cached shape for an agent and missing attributes.
func (r *resource) shapeFor(agent string, missing map[string]bool) *shape {
	key := shapeKey(agent, missing)
	if sh, ok := r.cache.Load(key); ok {
		return sh.(*shape)
	}
	built := r.build(agent, missing)
	built.key = key
	sh, _ := r.cache.LoadOrStore(key, built)
	return sh.(*shape)
}

func (sh *shape) renderFor(alias string, index map[string]int) *rendered {
	if rd, ok := sh.rendered.Load(alias); ok {
		return rd.(*rendered)
	}
	rd, _ := sh.rendered.LoadOrStore(alias, renderTemplate(sh.tmpl, alias, index))
	return rd.(*rendered)
}

// renderTemplate writes t with ? placeholders, doubling literal question
// marks so squirrel keeps them.
func renderTemplate(t template, alias string, index map[string]int) *rendered {
	var b strings.Builder
	rd := &rendered{}
	for _, p := range t {
		switch p.kind {
		case textPiece:
			b.WriteString(strings.ReplaceAll(p.text, "?", "??"))
		case aliasPiece:
			b.WriteString(alias)
		case paramPiece:
			b.WriteByte('?')
			rd.slots = append(rd.slots, index[p.text])
		}
	}
	rd.sql = b.String()
	return rd
}

func bind(rd *rendered, vals []any) []any {
	args := make([]any, len(rd.slots))
	for i, s := range rd.slots {
		args[i] = vals[s]
	}
	return args
}

// Fragments binds p to a request for the rewriter: it returns the
// resource's fragment for the alias the rewriter names the table with.
func (p *Policy) Fragments(req Request) rewrite.Fragments {
	return func(resource, alias string) (rewrite.Fragment, error) {
		r := req
		r.Alias = alias
		f, err := p.Fragment(resource, r)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
}
