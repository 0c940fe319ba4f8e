package filter

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ragfence/ragfence/policy"
)

// Policy is a policy set compiled once, at load: every rule is a template
// and a request only picks templates and binds values.
type Policy struct {
	set       *policy.Set
	resources map[string]*resource
}

// resource is one compiled resource.
type resource struct {
	res    *policy.Resource
	tenant template
	allow  []rule
	deny   []rule
	masks  map[string]rule
	agents map[string]*grant
	cache  sync.Map // shapeKey -> *shape
	// attrs are the attributes any template of the resource binds; a
	// rendered fragment's slots index into them.
	attrs     []attrRef
	attrIndex map[string]int
}

// attrRef is a subject or context attribute a template binds, or an
// approval rule's state.
type attrRef struct {
	full    string // "subject.x", "context.x" or approvalAttr
	name    string
	context bool
	typ     policy.Type
	// approval is the rule whose state this is, for approvalAttr, of
	// resource.
	approval *policy.ApprovalRule
	resource string
}

type grant struct {
	allow, deny []rule
	approval    []rule // each: (approved OR NOT (when)), approved bound per request
}

// approvalPrefix names an approval rule's state among a resource's bound
// attributes: approval.<agent>.<rule>, a boolean every request binds.
const approvalPrefix = "approval."

func approvalAttr(agent, rule string) string { return approvalPrefix + agent + "." + rule }

// rule is one compiled rule and the attributes it needs.
type rule struct {
	src   *policy.Rule // nil for masks
	name  string
	tmpl  template
	needs []string // "subject.x" / "context.x", sorted, unique
}

// Compile compiles every rule of set.
func Compile(set *policy.Set) (*Policy, error) {
	p := &Policy{set: set, resources: map[string]*resource{}}
	for _, name := range set.Names {
		r, err := compileResource(set.Resources[name], set)
		if err != nil {
			return nil, err
		}
		p.resources[name] = r
	}
	return p, nil
}

// Set returns the policy set p was compiled from.
func (p *Policy) Set() *policy.Set { return p.set }

// Version is the policy set's version (see policy.Set.Version).
func (p *Policy) Version() string { return p.set.Version() }

func compileResource(res *policy.Resource, set *policy.Set) (*resource, error) {
	r := &resource{res: res, masks: map[string]rule{}, agents: map[string]*grant{}}
	r.tenant = template{}.add(aliasPiece, "").text("."+quoteIdent(res.Tenant)+" = ").add(paramPiece, "subject.tenant").text("::pg_catalog.text")
	var err error
	if r.allow, err = compileRules(res.Allow, res, set); err != nil {
		return nil, err
	}
	if r.deny, err = compileRules(res.Deny, res, set); err != nil {
		return nil, err
	}
	for _, m := range res.Masks {
		t, err := compileCondition(m.Unless, res, set)
		if err != nil {
			return nil, err
		}
		r.masks[m.Column] = rule{name: "mask " + m.Column, tmpl: t, needs: needs(t)}
	}
	for id, g := range res.Agents {
		cg := &grant{}
		if cg.allow, err = compileRules(g.Allow, res, set); err != nil {
			return nil, err
		}
		if cg.deny, err = compileRules(g.Deny, res, set); err != nil {
			return nil, err
		}
		for _, a := range g.Approval {
			t, err := compileCondition(a.When, res, set)
			if err != nil {
				return nil, fmt.Errorf("filter: resource %s: approval rule %s: %w", res.Name, a.Name, err)
			}
			cg.approval = append(cg.approval, rule{src: a.Rule, name: a.Name, tmpl: t, needs: needs(t)})
		}
		r.agents[id] = cg
	}
	r.indexAttrs(set)
	return r, nil
}

// indexAttrs collects the attributes every template of r binds.
func (r *resource) indexAttrs(set *policy.Set) {
	all := needs(r.tenant)
	add := func(rs []rule) {
		for _, x := range rs {
			all = append(all, x.needs...)
		}
	}
	add(r.allow)
	add(r.deny)
	for _, m := range r.masks {
		all = append(all, m.needs...)
	}
	approvals := map[string]*policy.ApprovalRule{}
	for id, g := range r.agents {
		add(g.allow)
		add(g.deny)
		add(g.approval)
		for _, a := range r.res.Agents[id].Approval {
			approvals[approvalAttr(id, a.Name)] = a
			all = append(all, approvalAttr(id, a.Name))
		}
	}
	slices.Sort(all)
	all = slices.Compact(all)
	r.attrIndex = make(map[string]int, len(all))
	for i, full := range all {
		if a := approvals[full]; a != nil {
			r.attrs = append(r.attrs, attrRef{full: full, name: a.Name, approval: a, resource: r.res.Name})
			r.attrIndex[full] = i
			continue
		}
		q, name, _ := strings.Cut(full, ".")
		typ, _ := set.AttrType(q, name)
		r.attrs = append(r.attrs, attrRef{full: full, name: name, context: q == "context", typ: typ})
		r.attrIndex[full] = i
	}
}

func compileRules(rs []*policy.Rule, res *policy.Resource, set *policy.Set) ([]rule, error) {
	out := make([]rule, 0, len(rs))
	for _, src := range rs {
		t, err := compileCondition(src.When, res, set)
		if err != nil {
			return nil, fmt.Errorf("filter: resource %s: rule %s: %w", res.Name, src.Name, err)
		}
		out = append(out, rule{src: src, name: src.Name, tmpl: t, needs: needs(t)})
	}
	return out, nil
}

func needs(t template) []string {
	a := t.attrs()
	sort.Strings(a)
	return slices.Compact(a)
}

// Outcome is what a fragment decides before any row is read.
type Outcome int

const (
	// Conditional: rows are visible where the fragment's SQL holds.
	Conditional Outcome = iota
	// AlwaysDenied: no row is visible; the fragment is FALSE.
	AlwaysDenied
)

func (o Outcome) String() string {
	if o == AlwaysDenied {
		return "always-denied"
	}
	return "conditional"
}

// RuleState says what one rule does for a request.
type RuleState struct {
	Name   string `json:"name"`
	Effect string `json:"effect"`          // allow or deny
	Agent  string `json:"agent,omitempty"` // set for an agent grant's rules
	// Active rules take part; an inactive rule lacks an attribute (Missing):
	// an inactive allow grants nothing, an inactive deny denies every row.
	Active  bool     `json:"active"`
	Missing []string `json:"missing,omitempty"`
}

// shape is everything about a request that changes the fragment's SQL text:
// the agent and which attributes are missing. Values never do.
type shape struct {
	key       string // shapeKey
	outcome   Outcome
	reason    string
	tmpl      template
	rules     []RuleState
	masks     map[string]template // masked column -> CASE WHEN ... THEN col END
	granted   template            // text[]: the allow rules that hold for a row (Fragment.Granted)
	rendered  sync.Map            // alias -> *rendered
	maskCache sync.Map            // alias + "\x00" + column -> *rendered
}

type rendered struct {
	sql   string // with ? placeholders, literal ? doubled for squirrel
	slots []int  // the attribute (index into resource.attrs) each placeholder binds
}

// build assembles the shape for an agent (or "") and the missing attributes.
func (r *resource) build(agent string, missing map[string]bool) *shape {
	sh := &shape{masks: map[string]template{}}
	allow, states := activeRules(r.allow, "", missing)
	named := namedRules(r.allow, "", missing)
	deny, denyStates, denyAll := denyRules(r.deny, "", missing)
	sh.rules = append(states, denyStates...)
	parts := []template{r.tenant, or(allow)}
	if len(deny) > 0 {
		parts = append(parts, not(or(deny)))
	}
	if agent != "" {
		g := r.agents[agent]
		gAllow, gStates := activeRules(g.allow, agent, missing)
		named = append(named, namedRules(g.allow, agent, missing)...)
		gDeny, gDenyStates, gDenyAll := denyRules(g.deny, agent, missing)
		sh.rules = append(append(sh.rules, gStates...), gDenyStates...)
		parts = append(parts, or(gAllow))
		if len(gDeny) > 0 {
			parts = append(parts, not(or(gDeny)))
		}
		gApproval, gApprovalStates := approvalRules(g.approval, agent, missing)
		sh.rules = append(sh.rules, gApprovalStates...)
		parts = append(parts, gApproval...)
		allow, denyAll = append(allow, gAllow...), denyAll || gDenyAll
		if len(gAllow) == 0 {
			sh.outcome, sh.reason = AlwaysDenied, fmt.Sprintf("no allow rule of agent %s applies", agent)
		}
	}
	switch {
	case denyAll:
		sh.outcome, sh.reason = AlwaysDenied, "a deny rule lacks an attribute the request does not carry"
	case len(allow) == 0 && sh.outcome != AlwaysDenied:
		sh.outcome, sh.reason = AlwaysDenied, "no allow rule applies"
	case missing["subject.tenant"]:
		sh.outcome, sh.reason = AlwaysDenied, "the subject has no tenant"
	}
	if sh.outcome == AlwaysDenied {
		sh.tmpl = template{}.text("FALSE")
	} else {
		sh.tmpl = and(parts)
	}
	sh.granted = grantedBy(named, sh.outcome == AlwaysDenied)
	for col, m := range r.masks {
		cond := m.tmpl
		if lacks(m.needs, missing) {
			cond = template{}.text("FALSE") // keeps the column's type, unlike a bare NULL
		}
		sh.masks[col] = template{}.text("CASE WHEN ").join(cond).text(" THEN ").add(aliasPiece, "").text("." + quoteIdent(col) + " END")
	}
	return sh
}

func activeRules(rs []rule, agent string, missing map[string]bool) ([]template, []RuleState) {
	var out []template
	var states []RuleState
	for _, r := range rs {
		st := RuleState{Name: r.name, Effect: "allow", Agent: agent, Active: true, Missing: missingOf(r.needs, missing)}
		if len(st.Missing) > 0 {
			st.Active = false
		} else {
			out = append(out, r.tmpl)
		}
		states = append(states, st)
	}
	return out, states
}

// namedRule is an active allow rule under the name Granted reports it by:
// its own, or agent:name for an agent grant's.
type namedRule struct {
	name string
	tmpl template
}

func namedRules(rs []rule, agent string, missing map[string]bool) []namedRule {
	var out []namedRule
	for _, r := range rs {
		if lacks(r.needs, missing) {
			continue
		}
		name := r.name
		if agent != "" {
			name = agent + ":" + r.name
		}
		out = append(out, namedRule{name, r.tmpl})
	}
	return out
}

// grantedBy is a text[] of the names of the rules that hold for the row:
// array_remove(ARRAY[CASE WHEN (rule) THEN 'name' END, ...], NULL). A row
// the fragment lets through passed its tenant, deny and grant conditions
// already; these are the rules that let it in.
func grantedBy(rs []namedRule, denied bool) template {
	if len(rs) == 0 || denied {
		return template{}.text("'{}'::pg_catalog.text[]")
	}
	out := template{}.text("pg_catalog.array_remove(ARRAY[")
	for i, r := range rs {
		if i > 0 {
			out = out.text(", ")
		}
		out = out.text("CASE WHEN (").join(r.tmpl).text(") THEN " + quoteLiteral(r.name) + " END")
	}
	return out.text("]::pg_catalog.text[], NULL)")
}

// quoteLiteral writes s as a SQL string literal (standard_conforming_strings,
// PostgreSQL's default since 9.1: only quotes are doubled).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func denyRules(rs []rule, agent string, missing map[string]bool) ([]template, []RuleState, bool) {
	var out []template
	var states []RuleState
	all := false
	for _, r := range rs {
		st := RuleState{Name: r.name, Effect: "deny", Agent: agent, Active: true, Missing: missingOf(r.needs, missing)}
		if len(st.Missing) > 0 {
			st.Active, all = false, true
		} else {
			out = append(out, r.tmpl)
		}
		states = append(states, st)
	}
	return out, states, all
}

// approvalRules are an agent's approval rules as conditions: a row the
// rule marks passes only while the rule's approval (a bound boolean, so
// the text is the same approved or not) is in force. A NULL condition
// withholds the row, as a deny's does; a condition lacking an attribute
// marks every row.
func approvalRules(rs []rule, agent string, missing map[string]bool) ([]template, []RuleState) {
	var out []template
	var states []RuleState
	for _, r := range rs {
		st := RuleState{Name: r.name, Effect: string(policy.Approval), Agent: agent, Active: true, Missing: missingOf(r.needs, missing)}
		t := template{}.text("(").add(paramPiece, approvalAttr(agent, r.name)).text("::pg_catalog.bool")
		if len(st.Missing) > 0 {
			st.Active = false
		} else {
			t = t.text(" OR NOT (").join(r.tmpl).text(")")
		}
		out = append(out, t.text(")"))
		states = append(states, st)
	}
	return out, states
}

func missingOf(needs []string, missing map[string]bool) []string {
	var out []string
	for _, n := range needs {
		if missing[n] {
			out = append(out, n)
		}
	}
	return out
}

func lacks(needs []string, missing map[string]bool) bool { return len(missingOf(needs, missing)) > 0 }

// or joins conditions with OR; no condition is FALSE, never an empty string.
func or(ts []template) template {
	if len(ts) == 0 {
		return template{}.text("FALSE")
	}
	return joinWith(ts, " OR ")
}

func and(ts []template) template { return joinWith(ts, " AND ") }

func not(t template) template { return template{}.text("NOT ").join(t) }

func joinWith(ts []template, sep string) template {
	out := template{}.text("(")
	for i, t := range ts {
		if i > 0 {
			out = out.text(sep)
		}
		out = out.text("(").join(t).text(")")
	}
	return out.text(")")
}

// shapeKey identifies a shape in the cache.
func shapeKey(agent string, missing map[string]bool) string {
	if len(missing) == 0 {
		return agent
	}
	names := make([]string, 0, len(missing))
	for n := range missing {
		names = append(names, n)
	}
	sort.Strings(names)
	return agent + "\x00" + strings.Join(names, ",")
}
