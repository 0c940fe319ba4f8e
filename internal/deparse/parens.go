package deparse

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"

	"github.com/ragfence/ragfence/internal/pgwalk"
)

// placeholderPrefix names the column references that stand for hoisted
// operands while the deparser writes their parent. The final comparison of
// trees catches a statement that happens to use such a name itself.
const placeholderPrefix = "ragfence_paren_"

// parenthesized deparses a copy of tree in which every compound operand of
// an operator (the operands of A_Expr, BoolExpr, IS [NOT] NULL, IS TRUE,
// casts, COLLATE, subscripts and field selection, x IN (SELECT ...), and
// SQL-syntax functions such as AT TIME ZONE) is written inside
// parentheses. Each operand is replaced by a placeholder column, the
// deparser writes the rest, and the placeholder is replaced by the
// operand's own (recursively parenthesized) text.
func parenthesized(tree *pg.ParseResult) (string, error) {
	h := &hoister{}
	c := proto.Clone(tree).(*pg.ParseResult)
	for _, s := range c.Stmts {
		h.visit(s.Stmt)
	}
	out, err := pg.Deparse(c)
	if err != nil {
		return "", fmt.Errorf("deparse: %w", err)
	}
	return h.expand(out, 0)
}

// hoister replaces operands with placeholders and remembers them.
type hoister struct {
	operands []*pg.Node
}

// visit hoists the compound operands of every operator below n.
func (h *hoister) visit(n *pg.Node) {
	if n == nil || n.Node == nil {
		return
	}
	pgwalk.EachChild(n, h.visit)
	for _, c := range operandsOf(n) {
		h.hoist(c)
	}
}

// hoist moves n's content aside and leaves a placeholder in its place.
func (h *hoister) hoist(n *pg.Node) {
	h.operands = append(h.operands, &pg.Node{Node: n.Node})
	name := placeholderPrefix + strconv.Itoa(len(h.operands)-1)
	n.Node = pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(name)}, 0).Node
}

// expand replaces the placeholders in sql with their operands' text.
func (h *hoister) expand(sql string, depth int) (string, error) {
	if depth > len(h.operands) {
		// Only a statement that writes a placeholder's name itself
		// makes an operand contain its own placeholder.
		return "", fmt.Errorf("deparse: %w: the statement uses the reserved name prefix %s", ErrUnfaithful, placeholderPrefix)
	}
	scan, err := pg.Scan(sql)
	if err != nil {
		return "", fmt.Errorf("deparse: %w", err)
	}
	var b strings.Builder
	last := 0
	for j, tok := range scan.Tokens {
		word := sql[tok.Start:tok.End]
		i, ok := h.placeholder(tok.Token, word)
		if !ok {
			continue
		}
		open, shut := "(", ")"
		if j > 0 && j+1 < len(scan.Tokens) && scan.Tokens[j-1].Token == pg.Token_ASCII_40 && scan.Tokens[j+1].Token == pg.Token_ASCII_41 {
			open, shut = "", "" // the deparser delimited it already
		}
		inner, err := pg.Deparse(selectOf(h.operands[i]))
		if err != nil {
			return "", fmt.Errorf("deparse: %w", err)
		}
		inner, err = h.expand(strings.TrimPrefix(inner, "SELECT "), depth+1)
		if err != nil {
			return "", err
		}
		b.WriteString(sql[last:tok.Start])
		b.WriteString(open + inner + shut)
		last = int(tok.End)
	}
	b.WriteString(sql[last:])
	return b.String(), nil
}

func (h *hoister) placeholder(tok pg.Token, word string) (int, bool) {
	if tok != pg.Token_IDENT {
		return 0, false
	}
	digits, ok := strings.CutPrefix(word, placeholderPrefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(digits)
	if err != nil || i < 0 || i >= len(h.operands) {
		return 0, false
	}
	return i, true
}

// operandsOf returns the operands of an operator node that bind less
// tightly than it (or as tightly: associativity is not assumed), so that
// the grammar reads them as its operands only inside parentheses. It
// returns nil when n is not an operator.
func operandsOf(n *pg.Node) []*pg.Node {
	var out []*pg.Node
	add := func(parent int, ns ...*pg.Node) {
		for _, c := range ns {
			if c != nil && c.Node != nil && level(c) <= parent {
				out = append(out, c)
			}
		}
	}
	own := level(n)
	switch x := n.Node.(type) {
	case *pg.Node_AExpr:
		e := x.AExpr
		if e.Kind == pg.A_Expr_Kind_AEXPR_NULLIF {
			own = 0 // NULLIF(a, b): its operands are delimited
		}
		add(own, e.Lexpr)
		if l := e.Rexpr.GetList(); l != nil {
			if e.Kind == pg.A_Expr_Kind_AEXPR_IN {
				own = 0 // IN (a, b): delimited by commas
			} else {
				// BETWEEN a AND b: that AND is grammar, and a is a
				// b_expr, which has no COLLATE, IS, NOT, ...
				own = atomLevel - 1
			}
			add(own, l.Items...)
		} else {
			add(own, e.Rexpr)
		}
	case *pg.Node_BoolExpr:
		add(own, x.BoolExpr.Args...)
	case *pg.Node_NullTest:
		add(own, x.NullTest.Arg)
	case *pg.Node_BooleanTest:
		add(own, x.BooleanTest.Arg)
	case *pg.Node_TypeCast:
		add(own, x.TypeCast.Arg)
	case *pg.Node_CollateClause:
		add(own, x.CollateClause.Arg)
	case *pg.Node_SubLink:
		add(own, x.SubLink.Testexpr)
	case *pg.Node_AIndirection:
		if indirectionNeedsParens(x.AIndirection) {
			out = append(out, x.AIndirection.Arg)
		}
	case *pg.Node_FuncCall:
		if x.FuncCall.Funcformat != pg.CoercionForm_COERCE_SQL_SYNTAX {
			return nil
		}
		// EXTRACT(a FROM b), x AT TIME ZONE z, ...: the deparser writes
		// their arguments bare, so every compound one gets parentheses.
		add(atomLevel-1, x.FuncCall.Args...)
	default:
		return nil
	}
	return out
}

// indirectionNeedsParens says whether the argument of a subscript or field
// selection needs parentheses: only a column or parameter followed by a
// subscript goes without (f(x)[1] and 1.a do not parse; t.c.f reads as a
// column of schema t).
func indirectionNeedsParens(ind *pg.A_Indirection) bool {
	if ind.Arg == nil || ind.Arg.Node == nil {
		return false
	}
	subscript := len(ind.Indirection) > 0 && ind.Indirection[0].GetAIndices() != nil
	switch ind.Arg.Node.(type) {
	case *pg.Node_ColumnRef, *pg.Node_ParamRef:
		return !subscript
	}
	return true
}

// atomLevel is the level of expressions the grammar delimits by itself
// (columns, constants, function calls, CASE ... END, ARRAY[...]).
const atomLevel = 100

// level is how tightly an expression binds in PostgreSQL's grammar (the
// operator precedence table of the manual, higher binds tighter). Node kinds
// not known here get 0: as operands they are always parenthesized.
func level(n *pg.Node) int {
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef, *pg.Node_ParamRef, *pg.Node_AArrayExpr, *pg.Node_CaseExpr,
		*pg.Node_CoalesceExpr, *pg.Node_MinMaxExpr, *pg.Node_RowExpr, *pg.Node_SqlvalueFunction,
		*pg.Node_GroupingFunc:
		return atomLevel
	case *pg.Node_AConst:
		if negative(x.AConst) {
			return 13 // unary minus
		}
		return atomLevel
	case *pg.Node_BoolExpr:
		return map[pg.BoolExprType]int{pg.BoolExprType_OR_EXPR: 1, pg.BoolExprType_AND_EXPR: 2, pg.BoolExprType_NOT_EXPR: 3}[x.BoolExpr.Boolop]
	case *pg.Node_NullTest, *pg.Node_BooleanTest:
		return 4
	case *pg.Node_AExpr:
		return aExprLevel(x.AExpr)
	case *pg.Node_CollateClause:
		return 12
	case *pg.Node_AIndirection:
		return 14
	case *pg.Node_TypeCast:
		return 15
	case *pg.Node_SubLink:
		return subLinkLevel(x.SubLink)
	case *pg.Node_FuncCall:
		return funcLevel(x.FuncCall)
	}
	return 0
}

func aExprLevel(e *pg.A_Expr) int {
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		return 4
	case pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE,
		pg.A_Expr_Kind_AEXPR_SIMILAR, pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return 6
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		return atomLevel
	}
	return operatorLevel(e.Name, e.Lexpr == nil)
}

// operatorLevel is the level of an operator by its name: OPERATOR(s.op) and
// operators without a precedence of their own bind as "any other operator".
func operatorLevel(name []*pg.Node, prefix bool) int {
	if len(name) != 1 {
		return 7
	}
	op := name[0].GetString_().GetSval()
	switch {
	case prefix && (op == "-" || op == "+"):
		return 13
	case prefix:
		return 7
	}
	switch op {
	case "=", "<", ">", "<=", ">=", "<>", "!=":
		return 5
	case "+", "-":
		return 8
	case "*", "/", "%":
		return 9
	case "^":
		return 10
	}
	return 7
}

func subLinkLevel(s *pg.SubLink) int {
	if s.Testexpr == nil {
		return atomLevel // EXISTS (...), (SELECT ...), ARRAY(...)
	}
	if len(s.OperName) == 0 {
		return 6 // x IN (SELECT ...)
	}
	return operatorLevel(s.OperName, false)
}

func funcLevel(f *pg.FuncCall) int {
	if f.Funcformat != pg.CoercionForm_COERCE_SQL_SYNTAX {
		return atomLevel
	}
	switch f.Funcname[len(f.Funcname)-1].GetString_().GetSval() {
	case "timezone":
		return 11 // x AT TIME ZONE z
	case "is_normalized":
		return 4 // x IS NORMALIZED
	case "overlaps":
		return 5
	}
	return atomLevel // EXTRACT(...), POSITION(...), SUBSTRING(...), ...
}

// negative constants are written with a leading minus, which binds less
// tightly than :: and subscripts: -1::text is -(1::text).
func negative(c *pg.A_Const) bool {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return v.Ival.Ival < 0
	case *pg.A_Const_Fval:
		return strings.HasPrefix(v.Fval.Fval, "-")
	}
	return false
}
