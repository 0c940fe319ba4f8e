package rewrite

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// verdict is how safe one node is.
type verdict uint8

const (
	safe verdict = iota // cannot raise an error on any row's data
	// own: may raise on the data of the rows it reads, which the fence
	// keeps to visible rows: a vector distance (dimensions differ; only the
	// database knows the column's) and a scalar subquery (more than one
	// row). Strict mode accepts them.
	own
	raising // may raise an error that depends on a row's data
)

// judge checks one node of an expression in strict mode (its children are
// judged as the walk reaches them, so an expression is as safe as its least
// safe node: a CASE is as safe as its least safe branch) and refuses it
// when it may raise on a row's data. The fence (fence.go) already keeps
// every expression to permitted rows; strict mode is for SQL written to
// probe, which should not run at all. It judges without column types, so
// what PostgreSQL decides from them (implicit casts, see doc.go) it cannot
// see; the fence covers those too.
func (w *walker) judge(n *pg.Node) {
	if w.req.Mode != Strict || w.vetted[n] {
		return
	}
	v, why := nodeVerdict(n)
	if v == safe && w.wholeRow(n) {
		v, why = raising, because(CodeExpression, "a whole row compares as a record, which fails when the records' columns differ; name its columns")
	}
	if v == raising {
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
	case *pg.Node_AConst, *pg.Node_ParamRef, *pg.Node_BoolExpr, *pg.Node_NullTest,
		*pg.Node_BooleanTest, *pg.Node_CaseExpr, *pg.Node_CaseWhen, *pg.Node_CoalesceExpr, *pg.Node_MinMaxExpr,
		*pg.Node_ResTarget, *pg.Node_SortBy, *pg.Node_AStar, *pg.Node_String_, *pg.Node_Integer, *pg.Node_List,
		*pg.Node_GroupingSet, *pg.Node_WindowDef, *pg.Node_TypeName, *pg.Node_SqlvalueFunction:
		return safe, reason{}
	case *pg.Node_CollateClause:
		return raising, because(CodeExpression, "COLLATE can make two collations meet in a comparison, which fails when it runs")
	case *pg.Node_ColumnRef:
		if _, star := x.ColumnRef.Fields[len(x.ColumnRef.Fields)-1].Node.(*pg.Node_AStar); star {
			return raising, because(CodeExpression, "a whole row (alias.*) compares as a record, which fails when the records differ")
		}
		return safe, reason{} // a whole-row alias is refused by the walker (wholeRow)
	case *pg.Node_RowExpr:
		// A row compared with a row, (a, b) = (c, d), is checked when the
		// statement is parsed (vetRows); anywhere else (a CASE choosing
		// between rows, COALESCE, GREATEST, = ANY) it compares as a record,
		// which raises when the records' columns differ.
		return raising, because(CodeExpression, "a row value outside a row comparison (a, b) = (c, d) compares as a record, which fails when the records differ")
	case *pg.Node_TypeCast:
		return castVerdict(x.TypeCast)
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
		return likeVerdict(e.Rexpr, false)
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
		// LIKE ANY (ARRAY[...]): each pattern is checked; an array written
		// as a string is decoded only when the statement runs.
		return likeVerdict(e.Rexpr, e.Kind != pg.A_Expr_Kind_AEXPR_OP)
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
func likeVerdict(pattern *pg.Node, array bool) (verdict, reason) {
	if arr := pattern.GetAArrayExpr(); arr != nil && array {
		for _, e := range arr.Elements {
			if v, why := likeVerdict(e, false); v != safe {
				return v, why
			}
		}
		return safe, reason{}
	}
	if array {
		return raising, because(CodeOperator, "LIKE ANY/ALL needs its patterns as ARRAY['...', ...] of literals")
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
	if !validLike(p, escape) || !validLike(byteaPattern(p), escape) {
		return raising, because(CodeOperator, "LIKE pattern %q ends with its escape character, which PostgreSQL refuses", p)
	}
	return safe, reason{}
}

// byteaPattern is what a pattern literal holds when it is compared with a
// bytea column: PostgreSQL decodes '\x5c' or '\134' to a lone backslash.
// A literal that is not valid bytea would fail when the statement is parsed.
func byteaPattern(p string) string {
	if hex, ok := strings.CutPrefix(p, `\x`); ok {
		var b strings.Builder
		for i := 0; i+1 < len(hex); i += 2 {
			v, err := strconv.ParseUint(hex[i:i+2], 16, 8)
			if err != nil {
				return p
			}
			b.WriteByte(byte(v))
		}
		return b.String()
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] != '\\':
			b.WriteByte(p[i])
		case i+1 < len(p) && p[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+3 < len(p):
			v, err := strconv.ParseUint(p[i+1:i+4], 8, 8)
			if err != nil {
				return p
			}
			b.WriteByte(byte(v))
			i += 3
		default:
			return p
		}
	}
	return b.String()
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
// different sizes, or nest deeper than six dimensions. It cannot when every
// element is a literal (the planner builds it before any row is read), or
// when one element is certainly not an array (then none is: they share a
// type). A string literal or NULL is not certain: '{q}' beside an array is
// read as one.
func arrayShapeSafe(a *pg.A_ArrayExpr) bool {
	if allLiteral(a) {
		return true
	}
	for _, e := range a.Elements {
		if knownScalar(e) {
			return true
		}
	}
	return false
}

func allLiteral(a *pg.A_ArrayExpr) bool {
	for _, e := range a.Elements {
		if tc := e.GetTypeCast(); tc != nil {
			e = tc.Arg
		}
		switch {
		case e.GetAConst() != nil:
		case e.GetAArrayExpr() != nil && allLiteral(e.GetAArrayExpr()):
		default:
			return false
		}
	}
	return true
}

// knownScalar: a number or boolean literal, a cast to a type that is not an
// array, or a comparison or boolean test.
func knownScalar(n *pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_AConst:
		return x.AConst.GetIval() != nil || x.AConst.GetFval() != nil || x.AConst.GetBoolval() != nil
	case *pg.Node_TypeCast:
		return !arrayType(x.TypeCast.TypeName)
	case *pg.Node_BoolExpr, *pg.Node_NullTest, *pg.Node_BooleanTest:
		return true
	case *pg.Node_AExpr:
		return aExprLevelComparison(x.AExpr)
	}
	return false
}

// aExprLevelComparison: the expression is a comparison, so boolean.
func aExprLevelComparison(e *pg.A_Expr) bool {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT,
		pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_LIKE,
		pg.A_Expr_Kind_AEXPR_ILIKE:
		return true
	}
	return len(e.Name) == 1 && comparisonOperators[e.Name[0].GetString_().GetSval()]
}

var comparisonOperators = setOf("=", "<>", "!=", "<", ">", "<=", ">=")

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

// nonNegativeLiteral is an integer literal >= 0.
func nonNegativeLiteral(n *pg.Node) bool {
	c := n.GetAConst()
	return c != nil && c.GetIval() != nil && c.GetIval().Ival >= 0
}

// int32Literal: the parser keeps an integer literal that does not fit in
// int32 as a numeric (Fval), which a subscript converts when it runs.
func int32Literal(n *pg.Node) bool {
	c := n.GetAConst()
	return c != nil && c.GetIval() != nil
}

// oneArgument are leakproof in their one-argument form only: length(bytea,
// encoding) fails on bytes that are not valid in the encoding.
var oneArgument = setOf("length", "char_length", "lower", "upper", "cardinality", "jsonb_typeof", "vector_dims", "vector_norm", "l2_normalize")

func funcVerdict(f *pg.FuncCall) (verdict, reason) {
	name := funcName(f)
	switch {
	case f.Over != nil || f.AggStar || aggregateFunctions[name] || windowFunctions[name]:
		return safe, reason{} // their arguments are judged in post position
	case distanceFunctions[name]:
		return own, reason{}
	case oneArgument[name] && len(f.Args) != 1:
		return raising, because(CodeFunction, "%s takes one argument in strict mode (its other forms can fail on a row's data)", name)
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
	if c := s.LimitCount.GetAConst(); c != nil && c.GetIval() != nil && c.GetIval().Ival >= 0 && c.GetIval().Ival <= 1 {
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

// castVerdict: a cast of a string literal is converted when the statement
// is parsed, whatever the rows; a parameter's type is inferred by the
// server from the cast, so the driver converts the value before the
// statement runs; a number literal cast to a number type is folded by the
// planner. Only to the built-in types in castTypes: a domain's CHECK runs
// when the statement does, a cast through a stable function (numbers to
// money, date to timestamptz) is not folded, and an array of a type without
// equality (json) fails when compared. A cast of a column, or of a cast
// ('x'::text::regclass converts when it runs), may raise.
func castVerdict(tc *pg.TypeCast) (verdict, reason) {
	if !constant(tc.Arg) || tc.Arg.GetTypeCast() != nil {
		return raising, because(CodeExpression, "a cast of a column value, or of a cast, can fail on a row's data (cast only literals and parameters)")
	}
	name, ok := castType(tc.TypeName)
	if !ok {
		return raising, because(CodeExpression, "a cast to %s can fail when the statement runs; strict mode casts only to the built-in scalar types", typeString(tc.TypeName))
	}
	if c := tc.Arg.GetAConst(); c != nil && (c.GetIval() != nil || c.GetFval() != nil) && !numberTypes[name] {
		return raising, because(CodeExpression, "a number cast to %s converts when the statement runs", name)
	}
	return safe, reason{}
}

// castTypes are the types strict mode casts literals and parameters to, by
// the name PostgreSQL's grammar gives them.
var castTypes = union(numberTypes, setOf("text", "varchar", "bpchar", "bool", "date", "time", "timestamp",
	"timestamptz", "interval", "uuid", "jsonb", "bytea", "vector", "halfvec", "sparsevec"))

// numberTypes may take a number literal: the cast is immutable, so folded.
var numberTypes = setOf("int2", "int4", "int8", "numeric", "float4", "float8")

// castType is the name of a built-in cast target in castTypes (arrays of
// them included), or false.
func castType(t *pg.TypeName) (string, bool) {
	names := t.GetNames()
	if len(names) == 0 || len(names) > 2 || t.Setof || t.PctType {
		return "", false
	}
	if len(names) == 2 && names[0].GetString_().GetSval() != "pg_catalog" {
		return "", false
	}
	name := strings.TrimPrefix(names[len(names)-1].GetString_().GetSval(), "_")
	return name, castTypes[name]
}

// arrayType: int[] or the catalog's spelling of it, _int4.
func arrayType(t *pg.TypeName) bool {
	names := t.GetNames()
	return len(t.GetArrayBounds()) > 0 || (len(names) > 0 && strings.HasPrefix(names[len(names)-1].GetString_().GetSval(), "_"))
}

func typeString(t *pg.TypeName) string {
	var parts []string
	for _, n := range t.GetNames() {
		parts = append(parts, n.GetString_().GetSval())
	}
	return strings.Join(parts, ".")
}

// constant is a literal, a parameter or an ARRAY[...] of constants,
// possibly cast once.
func constant(n *pg.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_AConst, *pg.Node_ParamRef:
		return true
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

// vetRows marks the row values and whole-row references below n that
// PostgreSQL checks when it parses the statement: both sides of a row
// comparison, (a, b) IN ((1, 2), ...) and (a, b) IN (SELECT ...), a row's
// IS NULL, and * or alias.* in a select list, which expand to columns.
func (w *walker) vetRows(n *pg.Node) {
	vet := func(ns ...*pg.Node) {
		for _, c := range ns {
			if c.GetRowExpr() == nil {
				return
			}
		}
		if w.vetted == nil {
			w.vetted = map[*pg.Node]bool{}
		}
		for _, c := range ns {
			w.vetted[c] = true
		}
	}
	switch x := n.Node.(type) {
	case *pg.Node_AExpr:
		e := x.AExpr
		switch {
		case e.Kind == pg.A_Expr_Kind_AEXPR_IN:
			vet(append([]*pg.Node{e.Lexpr}, e.Rexpr.GetList().GetItems()...)...)
		case e.Kind == pg.A_Expr_Kind_AEXPR_DISTINCT, e.Kind == pg.A_Expr_Kind_AEXPR_NOT_DISTINCT,
			e.Kind == pg.A_Expr_Kind_AEXPR_OP && aExprLevelComparison(e):
			vet(e.Lexpr, e.Rexpr)
		}
	case *pg.Node_SubLink:
		if x.SubLink.Testexpr != nil {
			vet(x.SubLink.Testexpr)
		}
	case *pg.Node_NullTest:
		vet(x.NullTest.Arg)
	case *pg.Node_ResTarget:
		if ref := x.ResTarget.Val.GetColumnRef(); ref != nil && ref.Fields[len(ref.Fields)-1].GetAStar() != nil {
			if w.vetted == nil {
				w.vetted = map[*pg.Node]bool{}
			}
			w.vetted[x.ResTarget.Val] = true // * and alias.* expand to columns
		}
	}
}

// wholeRow reports whether n names a whole row: a column reference that is
// just the name of a table, an alias or a CTE of the statement. It compares
// as a record, which fails when the records' columns differ.
func (w *walker) wholeRow(n *pg.Node) bool {
	c := n.GetColumnRef()
	return c != nil && len(c.Fields) == 1 && c.Fields[0].GetString_() != nil && w.relNames[c.Fields[0].GetString_().Sval]
}
