package rewrite

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"

	"github.com/ragfence/ragfence/internal/pgwalk"
	"github.com/ragfence/ragfence/policy"
)

// A fence is the filtered subquery that stands for a protected table:
//
//	(SELECT ... FROM table AS t WHERE <tenant and policy> OFFSET 0) AS alias
//
// PostgreSQL neither pulls a subquery with OFFSET into the statement around
// it nor pushes that statement's conditions down into it, so every
// expression the statement's author wrote is evaluated only on rows that
// have passed the tenant predicate and the policy: the guarantee
// PostgreSQL gives row-level security quals over non-LEAKPROOF user quals.
// Without the fence the planner orders the statement's cheap conditions
// before the policy, and an expression that raises an error on some value
// (a cast, a division, a malformed array, an implicit cast PostgreSQL
// inserts) answers with an error that depends on other tenants' rows. Every
// protected table is fenced, in both modes: whether an expression can raise
// depends on types the rewriter does not know.
//
// A fence costs the planner two freedoms, and the rewriter gives back what
// it can prove changes nothing:
//
//   - The statement's conditions cannot reach the table's indexes. Those
//     that cannot raise (pushConditions: a column the catalog calls
//     comparable, compared with a literal, IN lists of literals, IS
//     NULL, and AND/OR/NOT of them) move into the fence, beside the policy.
//   - The statement's ORDER BY stays outside, which turns a vector search
//     into a sort of every permitted row. A top-k search over one table
//     (intoFence: ORDER BY embedding <-> $1 LIMIT k on the resource's
//     embedding column) has its ordering moved inside, where the HNSW index
//     serves it with the policy as its filter; the statement's conditions
//     and its LIMIT stay outside and stop the ordered scan once k rows pass.
type fence struct {
	res    *policy.Resource
	body   *pg.SelectStmt  // the subquery
	alias  *pg.Alias       // the name the statement knows it by
	star   bool            // the subquery selects *: every column, none masked
	masked map[string]bool // the columns the subquery masks
	// comparable are the columns a condition may compare with a value
	// inside the fence (Column.Comparable); none without a catalog.
	comparable map[string]bool
}

func comparableColumns(cols []Column) map[string]bool {
	out := map[string]bool{}
	for _, c := range cols {
		if c.Comparable {
			out[c.Name] = true
		}
	}
	return out
}

// vectorOperators are pgvector's distance operators, which its indexes
// serve as an ordering.
var vectorOperators = setOf("<->", "<=>", "<#>", "<+>")

// intoFence notes a top-k vector ordering of s to move into a fence, should
// nothing between them reorder rows: s has one FROM item and no joins (a
// sublink in WHERE can become one), grouping, aggregates, DISTINCT, window
// functions or set operations, and the FROM item is the fence, or a
// subquery or a CTE (referenced once, not MATERIALIZED) that only projects
// and filters the fence's rows (passThrough). Then the plan is scans of the
// fence under filters and a Limit, which keep the order in which the fence
// yields its rows, and s needs no ORDER BY of its own.
func (w *walker) intoFence(s *pg.SelectStmt) {
	if s.Op != pg.SetOperation_SETOP_NONE || len(s.FromClause) != 1 || s.LimitCount == nil || len(s.SortClause) != 1 ||
		s.GroupClause != nil || s.HavingClause != nil || s.DistinctClause != nil || s.WindowClause != nil ||
		s.LimitOption == pg.LimitOption_LIMIT_OPTION_WITH_TIES || hasSubLink(s.WhereClause) || aggregates(s.TargetList) {
		return
	}
	e := distanceOrder(s.SortClause[0].GetSortBy(), s.TargetList)
	if e == nil {
		return
	}
	f, col := w.source(s.FromClause[0], e.Lexpr.GetColumnRef(), s.WithClause, 0)
	// Only the resource's embedding column: the moved ordering is computed
	// for every permitted row, the statement's WHERE excludes or not, so it
	// must not be one that fails on some of them (that column holds vectors
	// of the dimension its index was built for).
	if f == nil || col != f.res.Embedding || f.masked[col] {
		return
	}
	inner := pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(innerAlias(f.res)), pg.MakeStrNode(col)}, -1)
	order := &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{
		Kind: pg.A_Expr_Kind_AEXPR_OP, Name: e.Name, Lexpr: inner, Rexpr: proto.Clone(e.Rexpr).(*pg.Node), Location: -1,
	}}}
	w.orders = append(w.orders, func() {
		f.body.SortClause = []*pg.Node{{Node: &pg.Node_SortBy{SortBy: &pg.SortBy{
			Node: order, SortbyDir: pg.SortByDir_SORTBY_DEFAULT, SortbyNulls: pg.SortByNulls_SORTBY_NULLS_DEFAULT, Location: -1,
		}}}}
		s.SortClause = nil
	})
}

// buildFences makes every filtered subquery a fence and moves the top-k
// orderings noted by intoFence into theirs.
func (w *walker) buildFences() {
	for _, f := range w.fences {
		f.body.LimitOffset = pg.MakeAConstIntNode(0, -1)
		f.body.LimitOption = pg.LimitOption_LIMIT_OPTION_COUNT
	}
	for _, move := range w.orders {
		move()
	}
}

// distanceOrder is an ascending ORDER BY col <op> x, where op is a pgvector
// distance and x a constant or parameter, written directly or as the name
// of an output column; or nil.
func distanceOrder(sb *pg.SortBy, targets []*pg.Node) *pg.A_Expr {
	if sb == nil || sb.SortbyDir == pg.SortByDir_SORTBY_DESC || sb.SortbyDir == pg.SortByDir_SORTBY_USING ||
		sb.SortbyNulls != pg.SortByNulls_SORTBY_NULLS_DEFAULT {
		return nil
	}
	e := sb.Node.GetAExpr()
	if ref := sb.Node.GetColumnRef(); ref != nil && len(ref.Fields) == 1 {
		e = outputExpr(targets, ref.Fields[0].GetString_().GetSval()).GetAExpr()
	}
	if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || len(e.Name) != 1 ||
		!vectorOperators[e.Name[0].GetString_().GetSval()] || !constant(e.Rexpr) || e.Lexpr.GetColumnRef() == nil {
		return nil
	}
	return e
}

// source follows a column of a FROM item down to the fence it comes from,
// through subqueries and CTEs that only pass the fence's rows on, and
// returns the fence and the column's name there; or nil.
func (w *walker) source(item *pg.Node, ref *pg.ColumnRef, with *pg.WithClause, depth int) (*fence, string) {
	if ref == nil || depth > 8 {
		return nil, ""
	}
	if rs := item.GetRangeSubselect(); rs != nil {
		if f := w.fences[rs]; f != nil {
			return f, f.column(ref)
		}
		return w.through(rs.Alias, rs.Subquery.GetSelectStmt(), ref, depth)
	}
	rv := item.GetRangeVar()
	if rv == nil || rv.Schemaname != "" {
		return nil, ""
	}
	// Only a CTE of the statement's own WITH (so the name means it there,
	// not a CTE of some subquery), read nowhere else.
	cte := cteOf(with, rv.Relname)
	if cte == nil || w.refs[rv.Relname] != 1 || len(cte.Aliascolnames) > 0 ||
		cte.Ctematerialized == pg.CTEMaterialize_CTEMaterializeAlways {
		return nil, ""
	}
	alias := rv.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: rv.Relname}
	}
	return w.through(alias, cte.Ctequery.GetSelectStmt(), ref, depth)
}

// through follows ref (a column of the item named alias, whose rows body
// yields) into body's own FROM item, when body only projects and filters.
func (w *walker) through(alias *pg.Alias, body *pg.SelectStmt, ref *pg.ColumnRef, depth int) (*fence, string) {
	if alias == nil || len(alias.Colnames) > 0 || !passThrough(body) {
		return nil, ""
	}
	var name string
	switch {
	case len(ref.Fields) == 1:
		name = ref.Fields[0].GetString_().GetSval()
	case len(ref.Fields) == 2 && ref.Fields[0].GetString_().GetSval() == alias.Aliasname:
		name = ref.Fields[1].GetString_().GetSval()
	default:
		return nil, ""
	}
	var inner *pg.ColumnRef
	for _, t := range body.TargetList {
		rt := t.GetResTarget()
		c := rt.GetVal().GetColumnRef()
		if c == nil || c.Fields[len(c.Fields)-1].GetString_() == nil {
			continue
		}
		if out := rt.Name; out == name || (out == "" && lastField(c) == name) {
			if inner != nil {
				return nil, "" // two output columns of that name
			}
			inner = c
		}
	}
	if inner == nil {
		return nil, ""
	}
	return w.source(body.FromClause[0], inner, nil, depth+1)
}

// cteOf is the non-recursive CTE named name in with, or nil.
func cteOf(with *pg.WithClause, name string) *pg.CommonTableExpr {
	if with == nil || with.Recursive {
		return nil
	}
	for _, n := range with.Ctes {
		if c := n.GetCommonTableExpr(); c != nil && c.Ctename == name {
			return c
		}
	}
	return nil
}

// passThrough: a SELECT that only projects and filters the rows of its one
// FROM item, in their order.
func passThrough(s *pg.SelectStmt) bool {
	return s != nil && s.Op == pg.SetOperation_SETOP_NONE && len(s.FromClause) == 1 && s.WithClause == nil &&
		s.GroupClause == nil && s.HavingClause == nil && s.DistinctClause == nil && s.WindowClause == nil &&
		s.SortClause == nil && s.LimitCount == nil && s.LimitOffset == nil && len(s.LockingClause) == 0 &&
		!hasSubLink(s.WhereClause) && !aggregates(s.TargetList)
}

// column returns the name of the fence's column that ref names (as
// alias.col, or col when it is a column the table is known to have), or "".
func (f *fence) column(ref *pg.ColumnRef) string {
	if ref == nil || len(f.alias.Colnames) > 0 {
		return "" // AS alias(a, b, ...) renames the columns
	}
	parts := make([]string, len(ref.Fields))
	for i, p := range ref.Fields {
		s := p.GetString_()
		if s == nil {
			return "" // alias.*
		}
		parts[i] = s.Sval
	}
	switch {
	case len(parts) == 2 && parts[0] == f.alias.Aliasname:
		return parts[1]
	case len(parts) == 1 && (parts[0] == f.res.Embedding || slices.Contains(f.res.Columns, parts[0])):
		return parts[0]
	}
	return ""
}

// outputExpr is the expression of the output column named name, or nil
// when there is none or more than one.
func outputExpr(targets []*pg.Node, name string) *pg.Node {
	var found *pg.Node
	for _, t := range targets {
		if rt := t.GetResTarget(); rt != nil && rt.Name == name {
			if found != nil {
				return nil
			}
			found = rt.Val
		}
	}
	return found
}

// hasSubLink reports whether a subquery appears anywhere in n.
func hasSubLink(n *pg.Node) bool {
	found := false
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if found || n == nil {
			return
		}
		if n.GetSubLink() != nil {
			found = true
			return
		}
		pgwalk.EachChild(n, visit)
	}
	visit(n)
	return found
}

// aggregates reports whether the target list calls an aggregate or window
// function, which would make the statement read every row.
func aggregates(targets []*pg.Node) bool {
	found := false
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if found || n == nil {
			return
		}
		if fc := n.GetFuncCall(); fc != nil && (fc.Over != nil || fc.AggStar || aggregateFunctions[funcName(fc)]) {
			found = true
			return
		}
		pgwalk.EachChild(n, visit)
	}
	for _, t := range targets {
		visit(t)
	}
	return found
}

func funcName(f *pg.FuncCall) string {
	return f.Funcname[len(f.Funcname)-1].GetString_().GetSval()
}

// pushConditions moves the conditions of s's WHERE that cannot raise on any
// row into the fence whose table they test, so the planner can serve them
// from its indexes: a comparable column (Column.Comparable, from the
// catalog) compared with literals. Only into fences that s
// joins with INNER joins (a condition on an outer join's nullable side
// means something else inside it), and only conditions that name one
// fence's columns through its alias (or unqualified, when the fence is s's
// only FROM item) and nothing else but literals and parameters.
func (w *walker) pushConditions(s *pg.SelectStmt) {
	if s.WhereClause == nil {
		return
	}
	fences := map[string]*fence{}
	for _, item := range s.FromClause {
		w.innerFences(item, fences)
	}
	if len(fences) == 0 {
		return
	}
	var only *fence
	if len(s.FromClause) == 1 {
		only = w.fences[s.FromClause[0].GetRangeSubselect()]
	}
	var keep []*pg.Node
	for _, c := range conjuncts(s.WhereClause) {
		f := pushTarget(c, fences, only)
		if f == nil {
			keep = append(keep, c)
			continue
		}
		f.body.WhereClause = and(f.body.WhereClause, requalify(c, f))
	}
	s.WhereClause = and(keep...)
}

// innerFences collects the fences reachable from a FROM item through INNER
// joins, by alias.
func (w *walker) innerFences(n *pg.Node, out map[string]*fence) {
	switch x := n.Node.(type) {
	case *pg.Node_RangeSubselect:
		if f := w.fences[x.RangeSubselect]; f != nil && len(f.alias.Colnames) == 0 {
			out[f.alias.Aliasname] = f
		}
	case *pg.Node_JoinExpr:
		if x.JoinExpr.Jointype == pg.JoinType_JOIN_INNER {
			w.innerFences(x.JoinExpr.Larg, out)
			w.innerFences(x.JoinExpr.Rarg, out)
		}
	}
}

// pushTarget is the one fence all of c's columns belong to, when c is a
// condition that cannot raise, or nil.
func pushTarget(c *pg.Node, fences map[string]*fence, only *fence) *fence {
	var target *fence
	ok := true
	column := func(n *pg.Node) bool {
		ref := n.GetColumnRef()
		f := (*fence)(nil)
		if ref != nil {
			f = fenceOf(ref, fences, only)
		}
		if f == nil || (target != nil && f != target) || f.masked[lastField(ref)] || !f.comparable[lastField(ref)] {
			return false
		}
		target = f
		return true
	}
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if !ok {
			return
		}
		switch x := n.GetNode().(type) {
		case *pg.Node_BoolExpr:
			for _, a := range x.BoolExpr.Args {
				visit(a)
			}
		case *pg.Node_NullTest:
			ok = column(x.NullTest.Arg)
		case *pg.Node_BooleanTest:
			ok = column(x.BooleanTest.Arg)
		case *pg.Node_AExpr:
			ok = columnAgainstValues(x.AExpr, column)
		case *pg.Node_ColumnRef:
			ok = column(n) // a boolean column
		default:
			ok = false
		}
	}
	visit(c)
	if !ok {
		return nil
	}
	return target
}

// columnAgainstValues: one column compared with literals
// (never two columns: comparing numeric with float8 casts the numeric,
// which can overflow).
func columnAgainstValues(e *pg.A_Expr, column func(*pg.Node) bool) bool {
	if !simpleComparison(e) {
		return false
	}
	if l := e.Rexpr.GetList(); l != nil { // IN (...)
		return allPlain(l.Items) && column(e.Lexpr)
	}
	if e.Kind == pg.A_Expr_Kind_AEXPR_OP_ANY { // = ANY (ARRAY[...])
		if a := e.Rexpr.GetAArrayExpr(); a != nil {
			return allPlain(a.Elements) && column(e.Lexpr)
		}
		return false
	}
	switch {
	case plainValue(e.Rexpr):
		return column(e.Lexpr)
	case plainValue(e.Lexpr):
		return column(e.Rexpr)
	}
	return false
}

func allPlain(ns []*pg.Node) bool {
	for _, n := range ns {
		if !plainValue(n) {
			return false
		}
	}
	return true
}

// simpleComparison: a column compared with a value by =, <>, <, >, <=, >=,
// IN, = ANY or IS [NOT] DISTINCT FROM (see plainValue for the value).
func simpleComparison(e *pg.A_Expr) bool {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		return true
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY:
		return e.Lexpr != nil && aExprLevelComparison(e)
	}
	return false
}

// plainValue is a literal, uncast: an untyped string literal takes the
// column's type when the statement is parsed, and a number literal (int4,
// int8, numeric) at most widens the column (int to numeric, float4 to
// float8), which cannot fail. Not a parameter: the statement may fix its
// type elsewhere first (WITH p AS (SELECT $1::float8) ... WHERE amount =
// $1), and then the column is cast to it (numeric to float8 overflows).
func plainValue(n *pg.Node) bool {
	return n.GetAConst() != nil
}

// fenceOf is the fence a column reference names.
func fenceOf(ref *pg.ColumnRef, fences map[string]*fence, only *fence) *fence {
	switch len(ref.Fields) {
	case 1:
		if only != nil && ref.Fields[0].GetString_() != nil {
			return only
		}
	case 2:
		if q := ref.Fields[0].GetString_(); q != nil && ref.Fields[1].GetString_() != nil {
			return fences[q.Sval]
		}
	}
	return nil
}

func lastField(ref *pg.ColumnRef) string {
	return ref.Fields[len(ref.Fields)-1].GetString_().GetSval()
}

// requalify copies a condition for inside f: alias.col becomes t.col.
func requalify(c *pg.Node, f *fence) *pg.Node {
	out := proto.Clone(c).(*pg.Node)
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if ref := n.GetColumnRef(); ref != nil && len(ref.Fields) == 2 {
			ref.Fields[0] = pg.MakeStrNode(innerAlias(f.res))
		}
		pgwalk.EachChild(n, visit)
	}
	visit(out)
	return out
}

// conjuncts splits a WHERE at its top-level ANDs.
func conjuncts(n *pg.Node) []*pg.Node {
	if b := n.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
		var out []*pg.Node
		for _, a := range b.Args {
			out = append(out, conjuncts(a)...)
		}
		return out
	}
	return []*pg.Node{n}
}

// and joins conditions, skipping nil, into one flat AND (as PostgreSQL's
// parser builds a AND b AND c, so the text reads back as the same tree);
// nil when none is left.
func and(ns ...*pg.Node) *pg.Node {
	var args []*pg.Node
	for _, n := range ns {
		if n != nil {
			args = append(args, conjuncts(n)...)
		}
	}
	switch len(args) {
	case 0:
		return nil
	case 1:
		return args[0]
	}
	return pg.MakeBoolExprNode(pg.BoolExprType_AND_EXPR, args, -1)
}
