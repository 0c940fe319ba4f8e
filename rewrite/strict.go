package rewrite

import (
	pg "github.com/pganalyze/pg_query_go/v5"
)

// strict refuses, in untrusted SQL, expressions that can raise an error
// depending on a row's data. The planner may evaluate the statement's own
// predicates before the policy's (the leaky-view problem), so such an error
// could reveal a row the policy hides. Only node kinds known not to fail
// are allowed; their operands are checked as the walk goes on.
func (w *walker) strict(n *pg.Node) {
	switch x := n.Node.(type) {
	case *pg.Node_AExpr:
		w.strictAExpr(x.AExpr)
	case *pg.Node_TypeCast:
		if !constant(x.TypeCast.Arg) {
			w.fail(refuse(CodeExpression, x.TypeCast.Location,
				"casts of column values can fail on a row's data; strict mode allows casting only constants and parameters"))
		}
	case *pg.Node_ColumnRef, *pg.Node_AConst, *pg.Node_ParamRef, *pg.Node_BoolExpr, *pg.Node_NullTest,
		*pg.Node_BooleanTest, *pg.Node_CaseExpr, *pg.Node_CaseWhen, *pg.Node_CoalesceExpr, *pg.Node_MinMaxExpr,
		*pg.Node_ResTarget, *pg.Node_SortBy, *pg.Node_AStar, *pg.Node_FuncCall, *pg.Node_String_,
		*pg.Node_Integer, *pg.Node_List, *pg.Node_AArrayExpr, *pg.Node_RowExpr, *pg.Node_GroupingSet,
		*pg.Node_WindowDef, *pg.Node_TypeName, *pg.Node_SqlvalueFunction, *pg.Node_CollateClause, *pg.Node_AIndirection, *pg.Node_AIndices:
	default:
		w.fail(refuse(CodeExpression, location(n), "%s is not allowed in strict mode", nodeKind(n)))
	}
}

func (w *walker) strictAExpr(e *pg.A_Expr) {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
	case pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT,
		pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		return
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		if !constant(e.Rexpr) {
			w.fail(refuse(CodeOperator, e.Location, "LIKE with a pattern from a column can fail on a row's data; use a constant pattern"))
		}
		return
	default:
		w.fail(refuse(CodeOperator, e.Location, "this kind of expression is not allowed in strict mode"))
		return
	}
	if len(e.Name) != 1 || !strictOperators[e.Name[0].GetString_().GetSval()] {
		op := ""
		if len(e.Name) > 0 {
			op = e.Name[len(e.Name)-1].GetString_().GetSval()
		}
		w.fail(refuse(CodeOperator, e.Location, "operator %s can fail on a row's data (or is not a built-in); it is not allowed in strict mode", op))
		return
	}
	// The operator spelling of LIKE (~~, ~~*, !~~, !~~*) and LIKE ANY/ALL
	// (ARRAY[...]) need a constant pattern just as LIKE does.
	if likeOperators[e.Name[0].GetString_().GetSval()] && !constant(e.Rexpr) {
		w.fail(refuse(CodeOperator, e.Location, "LIKE with a pattern from a column can fail on a row's data; use a constant pattern"))
	}
}

// likeOperators are LIKE and ILIKE as operators: a malformed pattern raises
// an error, so the pattern must be a constant.
var likeOperators = setOf("~~", "!~~", "~~*", "!~~*")

// strictSubLink checks the operator of x op ANY/ALL (SELECT ...): it is
// applied to the subquery's rows, so it must not fail on data either, and a
// LIKE pattern from the subquery is a pattern from a column.
func (w *walker) strictSubLink(s *pg.SubLink) {
	if len(s.OperName) == 0 {
		return // IN, EXISTS, a scalar or ARRAY subquery
	}
	op := s.OperName[len(s.OperName)-1].GetString_().GetSval()
	if len(s.OperName) != 1 || !strictOperators[op] || likeOperators[op] {
		w.fail(refuse(CodeOperator, s.Location, "operator %s applied to a subquery's rows can fail on a row's data; it is not allowed in strict mode", op))
	}
}

// constant is a literal or a parameter, possibly cast, or an ARRAY[...] of them.
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
