package policy

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	pgparser "github.com/pganalyze/pg_query_go/v5/parser"
	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/internal/condtree"
	"github.com/ragfence/ragfence/internal/deparse"
	"github.com/ragfence/ragfence/internal/suggest"
)

// Condition is a validated SQL boolean expression of a rule or mask.
type Condition struct {
	// Text is the condition as written.
	Text string
	// expr is its parse tree, handed to ragfence's compiler through
	// internal/condtree; nothing may modify it (clone first).
	expr *pg.Node
	// Subject and Context list the attributes it uses, sorted.
	Subject []string
	Context []string
	// Columns lists the resource columns it uses, sorted.
	Columns []string
	// Relations lists the relations its EXISTS subqueries read, sorted.
	Relations []string
}

func init() {
	condtree.Of = func(cond any) *pg.Node {
		if c, ok := cond.(*Condition); ok && c != nil {
			return c.expr
		}
		return nil
	}
}

// conditionPrefix makes a condition a statement pg_query can parse.
const conditionPrefix = "SELECT "

// scope is what a condition of one resource may refer to.
type scope struct {
	res     *Resource
	set     *Set
	columns map[string]bool // nil: unchecked
}

func newScope(res *Resource, set *Set) *scope {
	sc := &scope{res: res, set: set}
	if res.Columns != nil {
		sc.columns = map[string]bool{}
		for _, c := range res.Columns {
			sc.columns[c] = true
		}
	}
	return sc
}

// ParseCondition validates a condition outside a file, for tests and tools.
func ParseCondition(text string, res *Resource, set *Set) (*Condition, error) {
	var errs ErrorList
	r := &reader{file: "<condition>", lines: []string{text}, errs: &errs}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: text, Line: 1, Column: 1, Style: yaml.FlowStyle}
	c := readCondition(r, n, newScope(res, set))
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func readCondition(r *reader, n *yaml.Node, sc *scope) *Condition {
	text := strings.TrimSpace(r.str(n, "condition", ""))
	if n == nil || text == "" {
		return nil // r.str reported an empty one
	}
	at := func(offset int32) Pos { return r.offsetPos(n, text, int(offset)-len(conditionPrefix)) }
	if i := strings.IndexByte(text, 0); i >= 0 {
		// PostgreSQL's parser stops at a NUL, so the rest would be ignored.
		r.errorAt(at(int32(len(conditionPrefix)+i)), CodeSyntax, "SQL syntax: a condition may not contain a NUL character")
		return nil
	}
	tree, err := pg.Parse(conditionPrefix + text)
	if err != nil {
		r.errorAt(at(syntaxOffset(err, conditionPrefix+text)), CodeSyntax, "%s", syntaxMessage(err))
		return nil
	}
	expr, ok := singleExpr(tree)
	if !ok {
		r.errorAt(at(int32(len(conditionPrefix))), CodeForbidden, "a condition is one boolean expression, not a statement or a list")
		return nil
	}
	c := &Condition{Text: text, expr: expr}
	v := &validator{sc: sc, cond: c, report: func(loc int32, code Code, format string, args ...any) {
		r.errorAt(at(loc), code, format, args...)
	}}
	before := len(*r.errs)
	v.expr(expr, nil)
	if len(*r.errs) > before {
		return nil
	}
	// Every condition reaches PostgreSQL as deparsed text: one whose text
	// would read back as another expression would grant something else.
	if _, err := deparse.Expr(expr); err != nil {
		r.errorAt(at(int32(len(conditionPrefix))), CodeUnfaithful,
			"ragfence cannot write this condition back as SQL with the same meaning (%v); add parentheses or restate it", err)
		return nil
	}
	for _, l := range [][]string{c.Subject, c.Context, c.Columns, c.Relations} {
		sort.Strings(l)
	}
	c.Subject, c.Context = slices.Compact(c.Subject), slices.Compact(c.Context)
	c.Columns, c.Relations = slices.Compact(c.Columns), slices.Compact(c.Relations)
	return c
}

// singleExpr returns the one target of "SELECT <expr>", refusing anything
// that smuggles in more (a FROM, a second statement, a second target).
func singleExpr(tree *pg.ParseResult) (*pg.Node, bool) {
	if len(tree.Stmts) != 1 {
		return nil, false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 || sel.FromClause != nil || sel.WhereClause != nil ||
		sel.GroupClause != nil || sel.HavingClause != nil || sel.SortClause != nil || sel.LimitCount != nil ||
		sel.LimitOffset != nil || sel.WithClause != nil || sel.Op != pg.SetOperation_SETOP_NONE ||
		sel.DistinctClause != nil || sel.IntoClause != nil || sel.LockingClause != nil || sel.WindowClause != nil {
		return nil, false
	}
	rt := sel.TargetList[0].GetResTarget()
	if rt == nil || rt.Name != "" || rt.Val == nil {
		return nil, false
	}
	return rt.Val, true
}

func syntaxOffset(err error, query string) int32 {
	var perr *pgparser.Error
	if errors.As(err, &perr) && perr.Cursorpos > 0 {
		// PostgreSQL counts characters here, where node locations count bytes.
		return int32(byteIndex(query, perr.Cursorpos-1))
	}
	return int32(len(conditionPrefix))
}

func syntaxMessage(err error) string {
	var perr *pgparser.Error
	if errors.As(err, &perr) {
		return "SQL syntax: " + perr.Message
	}
	return "SQL syntax: " + err.Error()
}

func hintFor(name string, candidates []string) string { return suggest.Hint(name, candidates) }

// validator walks a condition's tree and accepts only the allowed subset.
type validator struct {
	sc     *scope
	cond   *Condition
	report func(loc int32, code Code, format string, args ...any)
}

// relScope maps the aliases of an EXISTS subquery to their relations.
type relScope map[string]*Relation

func (v *validator) exprs(ns []*pg.Node, rels relScope) {
	for _, n := range ns {
		v.expr(n, rels)
	}
}

func (v *validator) expr(n *pg.Node, rels relScope) {
	if n == nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg.Node_AConst:
	case *pg.Node_ColumnRef:
		v.columnRef(x.ColumnRef, rels)
	case *pg.Node_AExpr:
		v.aExpr(x.AExpr, rels)
	case *pg.Node_BoolExpr:
		v.exprs(x.BoolExpr.Args, rels)
	case *pg.Node_NullTest:
		v.expr(x.NullTest.Arg, rels)
	case *pg.Node_BooleanTest:
		v.expr(x.BooleanTest.Arg, rels)
	case *pg.Node_TypeCast:
		v.typeName(x.TypeCast.TypeName)
		v.expr(x.TypeCast.Arg, rels)
	case *pg.Node_AArrayExpr:
		v.exprs(x.AArrayExpr.Elements, rels)
	case *pg.Node_List:
		v.exprs(x.List.Items, rels)
	case *pg.Node_CoalesceExpr:
		v.exprs(x.CoalesceExpr.Args, rels)
	case *pg.Node_MinMaxExpr:
		v.exprs(x.MinMaxExpr.Args, rels)
	case *pg.Node_CaseExpr:
		v.expr(x.CaseExpr.Arg, rels)
		v.exprs(x.CaseExpr.Args, rels)
		v.expr(x.CaseExpr.Defresult, rels)
	case *pg.Node_CaseWhen:
		v.expr(x.CaseWhen.Expr, rels)
		v.expr(x.CaseWhen.Result, rels)
	case *pg.Node_FuncCall:
		v.funcCall(x.FuncCall, rels)
	case *pg.Node_SubLink:
		v.subLink(x.SubLink, rels)
	case *pg.Node_ParamRef:
		v.report(x.ParamRef.Location, CodeForbidden, "parameters ($%d) are not allowed: use subject.<attr> or context.<attr>", x.ParamRef.Number)
	case *pg.Node_SqlvalueFunction:
		v.report(x.SqlvalueFunction.Location, CodeForbidden, "CURRENT_* functions are not allowed: use context.time, which tests can fix")
	default:
		v.report(location(n), CodeForbidden, "%s is not allowed in a policy condition", nodeKind(n))
	}
}

func (v *validator) aExpr(e *pg.A_Expr, rels relScope) {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL,
		pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg.A_Expr_Kind_AEXPR_NULLIF,
		pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE,
		pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
	default:
		v.report(e.Location, CodeForbidden, "this kind of expression (%s) is not allowed in a policy condition", strings.TrimPrefix(e.Kind.String(), "AEXPR_"))
		return
	}
	between := e.Kind >= pg.A_Expr_Kind_AEXPR_BETWEEN && e.Kind <= pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM
	if op, ok := operatorName(e.Name); between {
		// The grammar names BETWEEN itself; its comparisons are built in.
	} else if !ok {
		v.report(e.Location, CodeForbidden, "schema-qualified operators are not allowed")
	} else if !allowedOperators[op] {
		v.report(e.Location, CodeForbidden, "operator %s is not allowed in a policy condition", op)
	}
	v.expr(e.Lexpr, rels)
	v.expr(e.Rexpr, rels)
}

func operatorName(name []*pg.Node) (string, bool) {
	if len(name) != 1 {
		return "", false
	}
	return name[0].GetString_().Sval, true
}

func (v *validator) typeName(t *pg.TypeName) {
	if t == nil {
		return
	}
	var parts []string
	for _, n := range t.Names {
		parts = append(parts, n.GetString_().Sval)
	}
	name := parts[len(parts)-1]
	if len(parts) > 2 || (len(parts) == 2 && parts[0] != "pg_catalog") || !allowedTypes[name] || t.Setof || t.PctType {
		v.report(t.Location, CodeForbidden, "cast to %s is not allowed: cast to a built-in type such as text, integer, numeric, boolean, timestamptz, inet or jsonb", strings.Join(parts, "."))
		return
	}
	for _, m := range t.Typmods {
		// The grammar takes any expression here; PostgreSQL wants integers.
		if c := m.GetAConst(); c == nil || c.GetIval() == nil {
			v.report(location(m), CodeForbidden, "a type modifier must be an integer constant, as in numeric(10, 2)")
			return
		}
	}
}

func (v *validator) funcCall(f *pg.FuncCall, rels relScope) {
	var parts []string
	for _, n := range f.Funcname {
		parts = append(parts, n.GetString_().Sval)
	}
	name := parts[len(parts)-1]
	qualifiedOK := len(parts) == 1 || (len(parts) == 2 && parts[0] == "pg_catalog")
	switch {
	case !qualifiedOK || !slices.Contains(Functions, name):
		v.report(f.Location, CodeForbidden, "function %s is not allowed in a policy condition%s; allowed: %s",
			strings.Join(parts, "."), hintFor(name, Functions), strings.Join(Functions, ", "))
		return
	case f.AggStar || f.AggDistinct || f.Over != nil || f.AggFilter != nil || f.AggOrder != nil || f.AggWithinGroup || f.FuncVariadic:
		v.report(f.Location, CodeForbidden, "aggregate, window and variadic calls are not allowed in a policy condition")
		return
	}
	v.exprs(f.Args, rels)
}

// columnRef resolves a name: subject.x, context.x, a resource column (bare or
// qualified by the resource or table name) or, inside EXISTS, alias.column.
func (v *validator) columnRef(c *pg.ColumnRef, rels relScope) {
	var parts []string
	for _, f := range c.Fields {
		s := f.GetString_()
		if s == nil {
			v.report(c.Location, CodeForbidden, "* is not allowed in a policy condition")
			return
		}
		parts = append(parts, s.Sval)
	}
	switch {
	case len(parts) == 1 && rels != nil:
		v.report(c.Location, CodeForbidden, "qualify %q inside EXISTS: write %s.%s or <alias>.%s", parts[0], v.sc.res.Name, parts[0], parts[0])
	case len(parts) == 1:
		v.column(parts[0], c.Location)
	case len(parts) == 2:
		v.qualified(parts[0], parts[1], c.Location, rels)
	default:
		v.report(c.Location, CodeForbidden, "%s: write column, %s.column, subject.attr or context.attr", strings.Join(parts, "."), v.sc.res.Name)
	}
}

func (v *validator) qualified(q, name string, loc int32, rels relScope) {
	_, table := v.sc.res.TableName()
	switch {
	case q == "subject":
		if _, ok := v.sc.set.Subject[name]; !ok {
			v.report(loc, CodeUnknownName, "unknown subject attribute %q%s; declare it under subject.attributes", name, hintFor(name, keys(v.sc.set.Subject)))
			return
		}
		v.cond.Subject = append(v.cond.Subject, name)
	case q == "context":
		if _, ok := contextAttrs[name]; !ok {
			v.report(loc, CodeUnknownName, "unknown context attribute %q%s; context has %s", name, hintFor(name, keys(contextAttrs)), strings.Join(keys(contextAttrs), ", "))
			return
		}
		v.cond.Context = append(v.cond.Context, name)
	case q == v.sc.res.Name || q == table:
		v.column(name, loc)
	case rels[q] != nil:
		rel := rels[q]
		if systemColumns[name] {
			v.report(loc, CodeForbidden, "system column %s.%s is not allowed in a policy condition", q, name)
		} else if rel.Columns != nil && !slices.Contains(rel.Columns, name) {
			v.report(loc, CodeUnknownName, "relation %s has no column %q%s", rel.Name, name, hintFor(name, rel.Columns))
		}
	default:
		cands := append([]string{"subject", "context", v.sc.res.Name}, keys(rels)...)
		v.report(loc, CodeUnknownName, "unknown name %q in %s.%s%s", q, q, name, hintFor(q, cands))
	}
}

// systemColumns are in every table but hold no data a policy may decide on;
// without a columns list they would pass to PostgreSQL unchecked.
var systemColumns = map[string]bool{"ctid": true, "xmin": true, "xmax": true, "cmin": true, "cmax": true, "tableoid": true}

func (v *validator) column(name string, loc int32) {
	if systemColumns[name] {
		v.report(loc, CodeForbidden, "system column %s is not allowed in a policy condition", name)
		return
	}
	if v.sc.columns != nil && !v.sc.columns[name] {
		v.report(loc, CodeUnknownName, "%s has no column %q%s", v.sc.res.Table, name, hintFor(name, v.sc.res.Columns))
		return
	}
	v.cond.Columns = append(v.cond.Columns, name)
}

// subLink accepts EXISTS (SELECT ... FROM declared relations WHERE ...).
func (v *validator) subLink(s *pg.SubLink, rels relScope) {
	if s.SubLinkType != pg.SubLinkType_EXISTS_SUBLINK {
		v.report(s.Location, CodeForbidden, "only EXISTS subqueries are allowed in a policy condition")
		return
	}
	sel := s.Subselect.GetSelectStmt()
	if sel == nil || sel.WithClause != nil || sel.GroupClause != nil || sel.HavingClause != nil ||
		sel.Op != pg.SetOperation_SETOP_NONE || sel.ValuesLists != nil || sel.LockingClause != nil ||
		sel.WindowClause != nil || sel.IntoClause != nil || sel.DistinctClause != nil || sel.SortClause != nil ||
		sel.LimitCount != nil || sel.LimitOffset != nil {
		v.report(s.Location, CodeForbidden, "an EXISTS subquery may only be SELECT ... FROM relations WHERE ...")
		return
	}
	if len(sel.FromClause) == 0 {
		v.report(s.Location, CodeForbidden, "an EXISTS subquery needs FROM a declared relation")
		return
	}
	inner := relScope{}
	for k, r := range rels {
		inner[k] = r
	}
	ok := true
	for _, from := range sel.FromClause {
		ok = v.fromItem(from, inner) && ok
	}
	if !ok {
		return // the body's names would only repeat the FROM error
	}
	for _, t := range sel.TargetList {
		if rt := t.GetResTarget(); rt != nil {
			v.expr(rt.Val, inner)
		} else {
			v.expr(t, inner)
		}
	}
	v.expr(sel.WhereClause, inner)
}

func (v *validator) fromItem(n *pg.Node, rels relScope) bool {
	rv := n.GetRangeVar()
	if rv == nil {
		v.report(location(n), CodeForbidden, "FROM inside EXISTS may only list declared relations (no joins, functions or subqueries)")
		return false
	}
	rel := v.sc.res.Relations[rv.Relname]
	if rv.Schemaname != "" || rel == nil {
		v.report(rv.Location, CodeUnknownName, "%q is not a declared relation of resource %s%s; declare it under relations",
			rv.Relname, v.sc.res.Name, hintFor(rv.Relname, keys(v.sc.res.Relations)))
		return false
	}
	alias := rel.Name
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
		if len(rv.Alias.Colnames) > 0 {
			// The filter replaces the FROM item, so renamed columns would
			// silently refer to the relation's own columns.
			v.report(rv.Location, CodeForbidden, "column aliases are not allowed: write %s %s and use its column names", rv.Relname, alias)
			return false
		}
	}
	if reservedQualifier(alias, v.sc.res) || rels[alias] != nil {
		v.report(rv.Location, CodeInvalid, "alias %q is taken: choose another", alias)
		return false
	}
	rels[alias] = rel
	v.cond.Relations = append(v.cond.Relations, rel.Name)
	return true
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nodeKind names a node type for messages, e.g. "SubLink" for a subquery.
func nodeKind(n *pg.Node) string {
	name := fmt.Sprintf("%T", n.Node)
	name = strings.TrimPrefix(name, "*pg_query.Node_")
	if friendly, ok := friendlyKinds[name]; ok {
		return friendly
	}
	return name
}

var friendlyKinds = map[string]string{
	"AIndirection":          "subscripting or field selection",
	"RowExpr":               "a row constructor",
	"CollateClause":         "COLLATE",
	"GroupingFunc":          "GROUPING",
	"XmlExpr":               "an XML expression",
	"SelectStmt":            "a SELECT",
	"RangeFunction":         "a function in FROM",
	"CurrentOfExpr":         "CURRENT OF",
	"SetToDefault":          "DEFAULT",
	"MultiAssignRef":        "a multi-assignment",
	"AStar":                 "*",
	"JsonObjectConstructor": "a JSON constructor",
}

// location returns a node's byte offset, or the start of the condition for
// node types without one.
func location(n *pg.Node) int32 {
	type located interface{ GetLocation() int32 }
	v := reflect.ValueOf(n.Node)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().NumField() > 0 {
		if l, ok := v.Elem().Field(0).Interface().(located); ok {
			return l.GetLocation()
		}
	}
	return int32(len(conditionPrefix))
}
