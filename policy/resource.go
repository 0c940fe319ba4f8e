package policy

import (
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var resourceFields = []string{
	"table", "tenant", "id", "content", "embedding", "metadata", "document", "columns", "filterable",
	"relations", "allow", "deny", "mask", "agents",
}

func readResource(r *reader, key, n *yaml.Node, set *Set) *Resource {
	r.res, r.rule = key.Value, ""
	defer func() { r.res = "" }()
	if !validIdent(key.Value, false) {
		r.errorf(key, CodeInvalid, "resource name %q must be a lower-case name (letters, digits, _)", key.Value)
	}
	f := r.fields(n, "resource "+key.Value, resourceFields...)
	r.require(key, f, "resource "+key.Value, "tenant")
	res := &Resource{
		Name:      key.Value,
		Table:     r.ident(f["table"], "table", key.Value, true),
		Tenant:    r.ident(f["tenant"], "tenant column", "", false),
		ID:        r.ident(f["id"], "id column", "id", false),
		Content:   r.ident(f["content"], "content column", "content", false),
		Embedding: r.ident(f["embedding"], "embedding column", "embedding", false),
		Metadata:  r.ident(f["metadata"], "metadata column", "metadata", false),
		Document:  r.ident(f["document"], "document column", "", false),
		Relations: map[string]*Relation{},
		Agents:    map[string]*Grant{},
		Pos:       r.pos(key),
	}
	if f["columns"] != nil {
		res.Columns = r.strList(f["columns"], "columns")
		checkNamedColumns(r, f, res)
	}
	res.Filterable = readFilterable(r, f["filterable"], res)
	for _, kv := range r.entries(f["relations"], "relations") {
		if rel := readRelation(r, kv[0], kv[1], res); rel != nil {
			res.Relations[rel.Name] = rel
		}
	}
	sc := newScope(res, set)
	res.Allow = readRules(r, f["allow"], Allow, "", sc)
	res.Deny = readRules(r, f["deny"], Deny, "", sc)
	res.Masks = readMasks(r, f["mask"], sc)
	for _, kv := range r.entries(f["agents"], "agents") {
		g := &Grant{Agent: kv[0].Value, Pos: r.pos(kv[0])}
		gf := r.fields(kv[1], "agent "+g.Agent, "allow", "deny", "approval")
		g.Allow = readRules(r, gf["allow"], Allow, g.Agent, sc)
		g.Deny = readRules(r, gf["deny"], Deny, g.Agent, sc)
		g.Approval = readApprovals(r, gf["approval"], g.Agent, sc)
		if gf["allow"] == nil {
			r.errorf(kv[0], CodeMissing, "agent %q has no allow rules, so it would see nothing; remove it instead", g.Agent)
		}
		res.Agents[g.Agent] = g
	}
	return res
}

// checkNamedColumns makes sure the columns the policy names itself (tenant,
// id, ...) are in its own columns list.
func checkNamedColumns(r *reader, f map[string]*yaml.Node, res *Resource) {
	named := map[string]string{"tenant": res.Tenant, "id": res.ID, "content": res.Content, "embedding": res.Embedding, "metadata": res.Metadata, "document": res.Document}
	for _, k := range []string{"tenant", "id", "content", "embedding", "metadata", "document"} {
		col := named[k]
		if col == "" || slices.Contains(res.Columns, col) {
			continue
		}
		// Content, embedding and metadata matter only to the retriever; a
		// table used for filtering alone need not have them.
		if k != "tenant" && k != "id" && f[k] == nil {
			continue
		}
		at := f[k]
		if at == nil {
			at = f["columns"]
		}
		r.errorf(at, CodeUnknownName, "%s column %q is not in the resource's columns list%s", k, col, hintFor(col, res.Columns))
	}
}

// readFilterable accepts column names and metadata.<key> paths.
func readFilterable(r *reader, n *yaml.Node, res *Resource) []string {
	list, nodes := r.strListNodes(n, "filterable")
	for i, f := range list {
		col, key, isPath := strings.Cut(f, ".")
		switch {
		case isPath && col != res.Metadata:
			r.errorf(nodes[i], CodeInvalid, "filterable %q: only keys of the metadata column %q may be dotted paths", f, res.Metadata)
		case isPath && key == "":
			r.errorf(nodes[i], CodeInvalid, "filterable %q: missing the key after the dot", f)
		case !isPath && res.Columns != nil && !slices.Contains(res.Columns, col):
			r.errorf(nodes[i], CodeUnknownName, "filterable column %q is not in the resource's columns%s", col, hintFor(col, res.Columns))
		}
	}
	return list
}

func readRelation(r *reader, key, n *yaml.Node, res *Resource) *Relation {
	f := r.fields(n, "relation "+key.Value, "table", "tenant", "columns")
	r.require(key, f, "relation "+key.Value, "tenant")
	name := key.Value
	if !validIdent(name, false) || reservedQualifier(name, res) {
		r.errorf(key, CodeInvalid, "relation name %q must be a lower-case name other than subject, context and %s", name, res.Name)
		return nil
	}
	rel := &Relation{
		Name:   name,
		Table:  r.ident(f["table"], "table", name, true),
		Tenant: r.ident(f["tenant"], "tenant column", "", false),
		Pos:    r.pos(key),
	}
	if f["columns"] != nil {
		rel.Columns = r.strList(f["columns"], "columns")
		if rel.Tenant != "" && !slices.Contains(rel.Columns, rel.Tenant) {
			r.errorf(f["tenant"], CodeUnknownName, "tenant column %q is not in the relation's columns%s", rel.Tenant, hintFor(rel.Tenant, rel.Columns))
		}
	}
	return rel
}

func reservedQualifier(name string, res *Resource) bool {
	_, table := res.TableName()
	return name == "subject" || name == "context" || name == res.Name || name == table
}

func readRules(r *reader, n *yaml.Node, effect Effect, agent string, sc *scope) []*Rule {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errorf(n, CodeInvalid, "%s must be a list of rules with name and when", effect)
		return nil
	}
	var out []*Rule
	seen := map[string]bool{}
	for _, item := range n.Content {
		f := r.fields(item, string(effect)+" rule", "name", "when")
		r.require(item, f, string(effect)+" rule", "name", "when")
		rule := &Rule{Name: r.str(f["name"], "rule name", ""), Effect: effect, Agent: agent, Pos: r.pos(item)}
		if seen[rule.Name] && rule.Name != "" {
			r.errorf(f["name"], CodeDuplicate, "two %s rules are named %q", effect, rule.Name)
		}
		seen[rule.Name] = true
		r.rule = rule.Name
		rule.When = readCondition(r, f["when"], sc)
		r.rule = ""
		if rule.When != nil && rule.Name != "" {
			out = append(out, rule)
		}
	}
	return out
}

func readMasks(r *reader, n *yaml.Node, sc *scope) []*Mask {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errorf(n, CodeInvalid, "mask must be a list of {column, unless}")
		return nil
	}
	var out []*Mask
	for _, item := range n.Content {
		f := r.fields(item, "mask", "column", "unless")
		r.require(item, f, "mask", "column", "unless")
		m := &Mask{Column: r.ident(f["column"], "mask column", "", false), Pos: r.pos(item)}
		if m.Column != "" && sc.columns != nil && !sc.columns[m.Column] {
			r.errorf(f["column"], CodeUnknownName, "mask column %q is not a column of %s%s", m.Column, sc.res.Table, hintFor(m.Column, sc.res.Columns))
		}
		if m.Column != "" && (m.Column == sc.res.Tenant || m.Column == sc.res.ID) {
			r.errorf(f["column"], CodeInvalid, "the %s column %q cannot be masked", map[bool]string{true: "tenant", false: "id"}[m.Column == sc.res.Tenant], m.Column)
		}
		r.rule = "mask " + m.Column
		m.Unless = readCondition(r, f["unless"], sc)
		r.rule = ""
		if m.Unless != nil {
			out = append(out, m)
		}
	}
	return out
}

// readApprovals reads an agent's approval rules: name, when and ttl, all
// required; the ttl a positive duration of at most MaxApprovalTTL.
func readApprovals(r *reader, n *yaml.Node, agent string, sc *scope) []*ApprovalRule {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errorf(n, CodeInvalid, "approval must be a list of rules with name, when and ttl")
		return nil
	}
	var out []*ApprovalRule
	seen := map[string]bool{}
	for _, item := range n.Content {
		f := r.fields(item, "approval rule", "name", "when", "ttl")
		r.require(item, f, "approval rule", "name", "when", "ttl")
		a := &ApprovalRule{Rule: &Rule{Name: r.str(f["name"], "rule name", ""), Effect: Approval, Agent: agent, Pos: r.pos(item)}}
		if seen[a.Name] && a.Name != "" {
			r.errorf(f["name"], CodeDuplicate, "two approval rules of agent %q are named %q", agent, a.Name)
		}
		seen[a.Name] = true
		a.TTL = readTTL(r, f["ttl"])
		r.rule = a.Name
		a.When = readCondition(r, f["when"], sc)
		r.rule = ""
		if a.When != nil && a.Name != "" && a.TTL > 0 {
			out = append(out, a)
		}
	}
	return out
}

func readTTL(r *reader, n *yaml.Node) time.Duration {
	s := r.str(n, "ttl", "")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		r.errorf(n, CodeInvalid, "ttl %q is not a duration such as 30m or 8h", s)
	case d <= 0:
		r.errorf(n, CodeInvalid, "ttl must be positive")
	case d > MaxApprovalTTL:
		r.errorf(n, CodeInvalid, "ttl %s exceeds the longest an approval may last (%s); ask for a new approval instead", d, MaxApprovalTTL)
	default:
		return d
	}
	return 0
}
