package doctor

import (
	"fmt"
	"maps"
	"slices"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/internal/condtree"
	"github.com/ragfence/ragfence/internal/pgwalk"
	"github.com/ragfence/ragfence/policy"
)

// uses is what a resource's row rules ask of the database: the columns of
// its own table and of its relations that every filtered query reads.
type uses struct {
	// Columns of the resource's table, sorted, each with the labels of the
	// rules that use it ("the tenant restriction" for the tenant column).
	Columns []string
	Rules   map[string][]string
	// Correlated are resource columns compared inside an EXISTS.
	Correlated map[string]bool
	// Relations maps a relation's name to the columns its EXISTS
	// subqueries compare with =, IN or = ANY, each with its rules' labels.
	Relations map[string]map[string][]string
}

// ruleUses collects the columns the resource's allow and deny rules use,
// its agents' included. Masks are left out: they are evaluated in the
// select list, for rows already found, so no index helps them.
func ruleUses(res *policy.Resource) uses {
	u := uses{Rules: map[string][]string{}, Correlated: map[string]bool{}, Relations: map[string]map[string][]string{}}
	u.add(res.Tenant, "the tenant restriction")
	for _, r := range rules(res) {
		label := ruleLabel(r)
		// The validator already resolved which names are the resource's
		// columns (bare or qualified with the resource or table name).
		for _, col := range r.When.Columns {
			u.add(col, label)
		}
		w := &walker{res: res, label: label, u: &u}
		w.walk(condtree.Of(r.When), nil)
	}
	slices.Sort(u.Columns)
	return u
}

func (u *uses) add(col, label string) {
	if _, ok := u.Rules[col]; !ok {
		u.Columns = append(u.Columns, col)
	}
	if !slices.Contains(u.Rules[col], label) {
		u.Rules[col] = append(u.Rules[col], label)
	}
}

// rules lists the resource's rules in policy order: allow, deny, then each
// agent's (sorted by agent).
func rules(res *policy.Resource) []*policy.Rule {
	out := slices.Concat(res.Allow, res.Deny)
	for _, a := range slices.Sorted(maps.Keys(res.Agents)) {
		out = append(out, res.Agents[a].Rules()...)
	}
	return out
}

func ruleLabel(r *policy.Rule) string {
	if r.Agent != "" {
		return fmt.Sprintf("agent %s %s rule %q", r.Agent, r.Effect, r.Name)
	}
	return fmt.Sprintf("%s rule %q", r.Effect, r.Name)
}

// walker finds the columns EXISTS subqueries compare. The policy validator
// has accepted the tree, so every FROM item is a declared relation and
// every name inside EXISTS is qualified.
type walker struct {
	res   *policy.Resource
	label string
	u     *uses
}

// walk visits n; scope maps the aliases of the enclosing EXISTS subqueries
// to their relations (nil outside any).
func (w *walker) walk(n *pg.Node, scope map[string]*policy.Relation) {
	if n == nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg.Node_SubLink:
		w.subLink(x.SubLink, scope)
		return
	case *pg.Node_ColumnRef:
		if q, col, ok := qualifiedName(n); ok && scope != nil && w.isResource(q) {
			w.u.Correlated[col] = true
		}
	case *pg.Node_AExpr:
		if scope != nil && isEquality(x.AExpr) {
			w.compared(x.AExpr.Lexpr, scope)
			w.compared(x.AExpr.Rexpr, scope)
		}
	}
	pgwalk.EachChild(n, func(c *pg.Node) { w.walk(c, scope) })
}

func (w *walker) subLink(s *pg.SubLink, scope map[string]*policy.Relation) {
	sel := s.Subselect.GetSelectStmt()
	if sel == nil {
		return
	}
	inner := maps.Clone(scope)
	if inner == nil {
		inner = map[string]*policy.Relation{}
	}
	for _, from := range sel.FromClause {
		rv := from.GetRangeVar()
		if rv == nil || w.res.Relations[rv.Relname] == nil {
			continue
		}
		alias := rv.Relname
		if rv.Alias != nil {
			alias = rv.Alias.Aliasname
		}
		inner[alias] = w.res.Relations[rv.Relname]
	}
	for _, t := range sel.TargetList {
		w.walk(t, inner)
	}
	w.walk(sel.WhereClause, inner)
}

// compared records a relation's column that an equality compares.
func (w *walker) compared(n *pg.Node, scope map[string]*policy.Relation) {
	for n != nil && n.GetTypeCast() != nil {
		n = n.GetTypeCast().Arg
	}
	q, col, ok := qualifiedName(n)
	if !ok || scope[q] == nil {
		return
	}
	rel := scope[q].Name
	if w.u.Relations[rel] == nil {
		w.u.Relations[rel] = map[string][]string{}
	}
	if !slices.Contains(w.u.Relations[rel][col], w.label) {
		w.u.Relations[rel][col] = append(w.u.Relations[rel][col], w.label)
	}
}

func (w *walker) isResource(q string) bool {
	_, table := w.res.TableName()
	return q == w.res.Name || q == table
}

// qualifiedName returns q and col of a q.col column reference.
func qualifiedName(n *pg.Node) (q, col string, ok bool) {
	ref := n.GetColumnRef()
	if ref == nil || len(ref.Fields) != 2 {
		return "", "", false
	}
	a, b := ref.Fields[0].GetString_(), ref.Fields[1].GetString_()
	if a == nil || b == nil {
		return "", "", false
	}
	return a.Sval, b.Sval, true
}

// isEquality is true for the comparisons a btree index can answer by
// lookup: a = b, a IN (...), a = ANY (...).
func isEquality(e *pg.A_Expr) bool {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_IN:
	default:
		return false
	}
	return len(e.Name) == 1 && e.Name[0].GetString_() != nil && e.Name[0].GetString_().Sval == "="
}
