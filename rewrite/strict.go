package rewrite

import (
	"fmt"
	"math"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// position says when PostgreSQL may evaluate an expression relative to the
// policy of the rows it reads.
type position uint8

const (
	// qual: a condition (WHERE, JOIN ON, HAVING) or anything the planner
	// can turn into one (the select list of a subquery, a CTE or an IN
	// subquery, which it pulls up into the statement around it). The planner
	// orders conditions by cost, so such an expression may run on rows the
	// policy has not yet filtered out.
	qual position = iota
	// post: the outermost select list, ORDER BY, GROUP BY and DISTINCT, and
	// the arguments of aggregate and window functions. These are computed
	// only for rows that have passed every condition of their query level,
	// the policy's included.
	post
)

// verdict is how safe one node is where it stands.
type verdict uint8

const (
	safe verdict = iota // cannot raise an error on any row's data
	// own: may raise on the data of the rows it reads, which are visible
	// rows wherever it is computed after the policy: a vector distance
	// (dimensions differ; only the database knows the column's) and a
	// scalar subquery (more than one row).
	own
	raising // may raise an error that depends on a row's data
)

// judge checks one node of an expression (its children are judged as the
// walk reaches them, so an expression is as safe as its least safe node: a
// CASE is as safe as its least safe branch). In strict mode an expression
// that may raise on data is refused; in either mode a possibly raising
// expression in a qual position fences the statement's protected tables
// (see fence.go), so that it only ever sees permitted rows.
func (w *walker) judge(n *pg.Node, pos position) {
	v, why := nodeVerdict(n)
	switch {
	case v == safe:
	case v == own && pos == post:
		// Computed after the policy: an error there is about visible rows.
	case v == own || w.req.Mode == Trusted:
		if pos == qual {
			w.needFence = true
		}
	default:
		w.fail(refuse(why.code, location(n), "%s; strict mode accepts only expressions that cannot fail on a row's data", why.msg))
	}
}

type reason struct {
	code Code
	msg  string
}

func because(code Code, format string, args ...any) reason {
	return reason{code, fmt.Sprintf(format, args...)}
}

// nodeVerdict judges a node by its kind and its constants.
func nodeVerdict(n *pg.Node) (verdict, reason) {
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef, *pg.Node_AConst, *pg.Node_ParamRef, *pg.Node_BoolExpr, *pg.Node_NullTest,
		*pg.Node_BooleanTest, *pg.Node_CaseExpr, *pg.Node_CaseWhen, *pg.Node_CoalesceExpr, *pg.Node_MinMaxExpr,
		*pg.Node_ResTarget, *pg.Node_SortBy, *pg.Node_AStar, *pg.Node_String_, *pg.Node_Integer, *pg.Node_List,
		*pg.Node_RowExpr, *pg.Node_GroupingSet, *pg.Node_WindowDef, *pg.Node_TypeName, *pg.Node_SqlvalueFunction,
		*pg.Node_CollateClause:
		return safe, reason{}
	case *pg.Node_TypeCast:
		if !constant(x.TypeCast.Arg) {
			return raising, because(CodeExpression, "a cast of a column value can fail on a row's data (cast only constants and parameters)")
		}
		return safe, reason{}
	case *pg.Node_AExpr:
		return aExprVerdict(x.AExpr)
	case *pg.Node_AArrayExpr:
		if !arrayShapeSafe(x.AArrayExpr) {
			return raising, because(CodeExpression, "an ARRAY[...] of arrays raises when its sub-arrays differ in size")
		}
		return safe, reason{}
	case *pg.Node_AIndirection:
		return indirectionVerdict(x.AIndirection)
	case *pg.Node_AIndices:
		return safe, reason{} // judged with its A_Indirection
	case *pg.Node_FuncCall:
		return funcVerdict(x.FuncCall)
	case *pg.Node_SubLink:
		return subLinkVerdict(x.SubLink)
	}
	return raising, because(CodeExpression, "%s is not allowed in strict mode", nodeKind(n))
}

func aExprVerdict(e *pg.A_Expr) (verdict, reason) {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
	case pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT,
		pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_NULLIF:
		return safe, reason{}
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		return likeVerdict(e.Rexpr)
	default:
		return raising, because(CodeOperator, "this kind of expression (SIMILAR TO, BETWEEN SYMMETRIC, ...) is not allowed in strict mode")
	}
	op := ""
	if len(e.Name) > 0 {
		op = e.Name[len(e.Name)-1].GetString_().GetSval()
	}
	switch {
	case len(e.Name) != 1 || !strictOperators[op]:
		return raising, because(CodeOperator, "operator %s can fail on a row's data (or is not a built-in)", op)
	case likeOperators[op]:
		return likeVerdict(e.Rexpr)
	case vectorOperators[op]:
		return own, reason{}
	}
	return safe, reason{}
}

// likeOperators are LIKE and ILIKE as operators: a malformed pattern raises
// an error, so the pattern must be a valid literal.
var likeOperators = setOf("~~", "!~~", "~~*", "!~~*")

// likeVerdict accepts a LIKE pattern that is a valid string literal (or an
// ARRAY of them, for LIKE ANY), optionally with a valid literal ESCAPE. A
// parameter or column could hold a pattern that ends in the escape
// character, which raises an error for the rows that reach it.
func likeVerdict(pattern *pg.Node) (verdict, reason) {
	if arr := pattern.GetAArrayExpr(); arr != nil {
		for _, e := range arr.Elements {
			if v, why := likeVerdict(e); v != safe {
				return v, why
			}
		}
		return safe, reason{}
	}
	escape := "\\"
	if f := pattern.GetFuncCall(); f != nil && funcName(f) == "like_escape" && len(f.Args) == 2 {
		e, ok := literalString(f.Args[1])
		if !ok || len([]rune(e)) > 1 {
			return raising, because(CodeOperator, "LIKE ... ESCAPE needs a literal escape of at most one character")
		}
		escape, pattern = e, f.Args[0]
	}
	p, ok := literalString(pattern)
	if !ok {
		return raising, because(CodeOperator, "LIKE with a pattern from a column or parameter can fail on a row's data; write the pattern as a literal")
	}
	if !validLike(p, escape) {
		return raising, because(CodeOperator, "LIKE pattern %q ends with its escape character, which PostgreSQL refuses", p)
	}
	return safe, reason{}
}

// validLike reports whether PostgreSQL accepts pattern with escape (""
// means no escape character).
func validLike(pattern, escape string) bool {
	if escape == "" {
		return true
	}
	esc := []rune(escape)[0]
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		if rs[i] == esc {
			if i+1 == len(rs) {
				return false
			}
			i++
		}
	}
	return true
}

// literalString is the value of a string literal, possibly cast.
func literalString(n *pg.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	c := n.GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().Sval, true
}

// arrayShapeSafe: ARRAY[a, b, ...] raises when its elements are arrays of
// different sizes. It cannot when an element is a scalar literal (then all
// are scalars), when it has at most one element, or when its elements are
// ARRAY[...] literals of one shape.
func arrayShapeSafe(a *pg.A_ArrayExpr) bool {
	if len(a.Elements) <= 1 {
		return true
	}
	var shape []int
	for i, e := range a.Elements {
		if scalarLiteral(e) {
			return true
		}
		s, ok := literalShape(e)
		if !ok || (i > 0 && !equalShapes(s, shape)) {
			return false
		}
		shape = s
	}
	return true
}

// scalarLiteral is a literal or parameter cast to a type that is not an
// array, or a bare literal.
func scalarLiteral(n *pg.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		return len(tc.TypeName.GetArrayBounds()) == 0 && (tc.Arg.GetAConst() != nil || tc.Arg.GetParamRef() != nil)
	}
	return n.GetAConst() != nil
}

// literalShape is the size of each dimension of a nested ARRAY[...] of
// scalar literals.
func literalShape(n *pg.Node) ([]int, bool) {
	a := n.GetAArrayExpr()
	if a == nil {
		return nil, false
	}
	var inner []int
	for i, e := range a.Elements {
		if scalarLiteral(e) {
			if i > 0 && inner != nil {
				return nil, false
			}
			continue
		}
		s, ok := literalShape(e)
		if !ok || (i > 0 && !equalShapes(s, inner)) {
			return nil, false
		}
		inner = s
	}
	return append([]int{len(a.Elements)}, inner...), true
}

func equalShapes(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// indirectionVerdict: a subscript by a column or an expression can be out
// of the integer range on a row's data; integer literals cannot, nor field
// selection.
func indirectionVerdict(ind *pg.A_Indirection) (verdict, reason) {
	for _, n := range ind.Indirection {
		idx := n.GetAIndices()
		if idx == nil {
			continue
		}
		for _, b := range []*pg.Node{idx.Lidx, idx.Uidx} {
			if b != nil && !int32Literal(b) {
				return raising, because(CodeExpression, "an array subscript must be an integer literal: from a column it can be out of range")
			}
		}
	}
	return safe, reason{}
}

func int32Literal(n *pg.Node) bool {
	c := n.GetAConst()
	if c == nil || c.GetIval() == nil {
		return false
	}
	v := c.GetIval().Ival
	return v >= math.MinInt32 && v <= math.MaxInt32
}

func funcVerdict(f *pg.FuncCall) (verdict, reason) {
	name := funcName(f)
	switch {
	case f.Over != nil || f.AggStar || aggregateFunctions[name] || windowFunctions[name]:
		return safe, reason{} // their arguments are judged in post position
	case distanceFunctions[name]:
		return own, reason{}
	case leakproofFunctions[name]:
		return safe, reason{}
	}
	return raising, because(CodeFunction, "function %s can fail on a row's data", name)
}

// subLinkVerdict: EXISTS, IN and op ANY/ALL cannot fail by themselves (their
// operator is checked); a scalar subquery raises when it returns more than
// one (visible) row, unless it cannot (LIMIT 1, or an aggregate without
// GROUP BY); ARRAY(SELECT ...) raises on arrays of different sizes.
func subLinkVerdict(s *pg.SubLink) (verdict, reason) {
	switch s.SubLinkType {
	case pg.SubLinkType_EXISTS_SUBLINK:
		return safe, reason{}
	case pg.SubLinkType_ANY_SUBLINK, pg.SubLinkType_ALL_SUBLINK:
		if len(s.OperName) == 0 {
			return safe, reason{} // IN
		}
		op := s.OperName[len(s.OperName)-1].GetString_().GetSval()
		if len(s.OperName) != 1 || !strictOperators[op] || likeOperators[op] || vectorOperators[op] {
			return raising, because(CodeOperator, "operator %s applied to a subquery's rows can fail on a row's data", op)
		}
		return safe, reason{}
	case pg.SubLinkType_EXPR_SUBLINK:
		if atMostOneRow(s.Subselect.GetSelectStmt()) {
			return safe, reason{}
		}
		return own, reason{}
	}
	return raising, because(CodeExpression, "this kind of subquery can fail on a row's data")
}

// atMostOneRow: LIMIT 1 (or 0), or an aggregate without GROUP BY.
func atMostOneRow(s *pg.SelectStmt) bool {
	if s == nil || s.Op != pg.SetOperation_SETOP_NONE {
		return false
	}
	if c := s.LimitCount.GetAConst(); c != nil && c.GetIval() != nil && c.GetIval().Ival <= 1 {
		return true
	}
	return s.GroupClause == nil && len(s.TargetList) > 0 && aggregates(s.TargetList) && onlyAggregates(s.TargetList)
}

// onlyAggregates: every output column is an aggregate call, so the query
// yields exactly one row.
func onlyAggregates(targets []*pg.Node) bool {
	for _, t := range targets {
		f := t.GetResTarget().GetVal().GetFuncCall()
		if f == nil || f.Over != nil || !(f.AggStar || aggregateFunctions[funcName(f)]) {
			return false
		}
	}
	return true
}

// constant is a literal or a parameter, possibly cast, or an ARRAY[...] of
// them. A literal cast is converted when the statement is parsed, whatever
// the rows; a parameter's type is inferred by the server from the cast, so
// the driver converts the value before the statement runs.
func constant(n *pg.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg.Node_AConst, *pg.Node_ParamRef:
		return true
	case *pg.Node_TypeCast:
		return constant(x.TypeCast.Arg)
	case *pg.Node_AArrayExpr:
		for _, e := range x.AArrayExpr.Elements {
			if !constant(e) {
				return false
			}
		}
		return true
	}
	return false
}
