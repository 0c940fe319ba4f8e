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
// Without the fence the planner would order the statement's cheap
// conditions before the policy, and an expression that raises an error on
// some value (a cast, a division, a malformed array) would reveal rows of
// other tenants through its error.
//
// A fence also keeps the statement's ORDER BY and LIMIT outside, which
// would turn a vector search into a sort of every permitted row. So a
// top-k search over one protected table, ORDER BY col <-> $1 LIMIT k, has
// its ordering moved inside the fence (see intoFence), where the HNSW
// index serves it with the policy as its filter; the statement's own
// conditions and its LIMIT stay outside and stop the ordered scan once k
// rows pass.
type fence struct {
	res    *policy.Resource
	body   *pg.SelectStmt  // the subquery
	alias  *pg.Alias       // the name the statement knows it by
	star   bool            // the subquery selects *: every column, none masked
	masked map[string]bool // the columns the subquery masks
}

// vectorOperators are pgvector's distance operators, which its indexes
// serve as an ordering.
var vectorOperators = setOf("<->", "<=>", "<#>", "<+>")

// intoFence notes a top-k vector ordering of s to move into the fence of
// its only FROM item, should the statement need fences. Only where nothing
// in s could reorder the fence's rows: one FROM item and no joins (a
// sublink in WHERE can become one), no grouping, aggregates, DISTINCT,
// window functions or set operations; then the plan is a scan of the fence
// under a filter and a Limit, which keep the order in which the fence
// yields its rows, and s needs no ORDER BY of its own.
func (w *walker) intoFence(s *pg.SelectStmt) {
	if s.Op != pg.SetOperation_SETOP_NONE || len(s.FromClause) != 1 || s.LimitCount == nil || len(s.SortClause) != 1 ||
		s.GroupClause != nil || s.HavingClause != nil || s.DistinctClause != nil || s.WindowClause != nil ||
		s.LimitOption == pg.LimitOption_LIMIT_OPTION_WITH_TIES {
		return
	}
	f := w.fences[s.FromClause[0].GetRangeSubselect()]
	if f == nil || hasSubLink(s.WhereClause) || aggregates(s.TargetList) {
		return
	}
	order := f.distance(s.SortClause[0].GetSortBy(), s.TargetList)
	if order == nil {
		return
	}
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

// distance returns the fence's own spelling of an ascending ORDER BY
// col <op> x, where col is a column of the fence, op a pgvector distance
// and x a constant or parameter, written directly or as the name of an
// output column; or nil.
func (f *fence) distance(sb *pg.SortBy, targets []*pg.Node) *pg.Node {
	if sb == nil || sb.SortbyDir == pg.SortByDir_SORTBY_DESC || sb.SortbyDir == pg.SortByDir_SORTBY_USING ||
		sb.SortbyNulls != pg.SortByNulls_SORTBY_NULLS_DEFAULT {
		return nil
	}
	e := sb.Node.GetAExpr()
	if ref := sb.Node.GetColumnRef(); ref != nil && len(ref.Fields) == 1 {
		e = outputExpr(targets, ref.Fields[0].GetString_().GetSval()).GetAExpr()
	}
	if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || len(e.Name) != 1 ||
		!vectorOperators[e.Name[0].GetString_().GetSval()] || !constant(e.Rexpr) {
		return nil
	}
	col := f.column(e.Lexpr.GetColumnRef())
	if col == "" {
		return nil
	}
	inner := pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(innerAlias(f.res)), pg.MakeStrNode(col)}, -1)
	return &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{
		Kind: pg.A_Expr_Kind_AEXPR_OP, Name: e.Name, Lexpr: inner, Rexpr: proto.Clone(e.Rexpr).(*pg.Node), Location: -1,
	}}}
}

// column returns the name of the fence's column that ref names (as
// alias.col, or col when the fence has every column of the table), or "".
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
	col := parts[len(parts)-1]
	if f.masked[col] {
		return "" // the statement orders by the masked value, not the column's
	}
	switch {
	case len(parts) == 2 && parts[0] == f.alias.Aliasname:
		return parts[1]
	case len(parts) == 1 && f.star && (parts[0] == f.res.Embedding || slices.Contains(f.res.Columns, parts[0])):
		return parts[0] // a column the table is known to have
	case len(parts) == 1 && slices.Contains(f.res.Columns, parts[0]):
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
