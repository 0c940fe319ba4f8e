package condeval

import (
	"fmt"
	"reflect"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// compiler turns a parse tree into closures, collecting every error.
type compiler struct {
	lookup Lookup
	refs   []Ref
	slots  map[string]int
	errs   []Error
}

func (c *compiler) fail(loc int32, kind ErrorKind, format string, args ...any) {
	c.errs = append(c.errs, Error{Location: loc, Kind: kind, Msg: fmt.Sprintf(format, args...)})
}

// boolean compiles an expression that must be boolean.
func (c *compiler) boolean(n *pg.Node) boolFn {
	switch x := n.Node.(type) {
	case *pg.Node_BoolExpr:
		return c.boolExpr(x.BoolExpr)
	case *pg.Node_AExpr:
		return c.aExpr(x.AExpr)
	case *pg.Node_NullTest:
		return c.nullTest(x.NullTest)
	case *pg.Node_BooleanTest:
		return c.booleanTest(x.BooleanTest)
	}
	s, ok := c.leaf(n)
	if !ok {
		return nil
	}
	switch s.kind {
	case kNull:
		return constTri(Unknown)
	case kBool:
		return func(vals []Value) Tri {
			v := s.eval(vals)
			if !v.Valid {
				return Unknown
			}
			return triOf(v.Bool)
		}
	}
	c.fail(s.loc, Mismatch, "%s is %s, not a boolean condition", s.desc, s.kind)
	return nil
}

func constTri(t Tri) boolFn { return func([]Value) Tri { return t } }

func (c *compiler) boolExpr(e *pg.BoolExpr) boolFn {
	args := make([]boolFn, len(e.Args))
	for i, a := range e.Args {
		args[i] = c.boolean(a)
	}
	switch e.Boolop {
	case pg.BoolExprType_AND_EXPR:
		return and(args)
	case pg.BoolExprType_OR_EXPR:
		return or(args)
	case pg.BoolExprType_NOT_EXPR:
		arg := args[0]
		return func(vals []Value) Tri { return not(arg(vals)) }
	}
	c.fail(e.Location, Forbidden, "unsupported boolean operator %s", e.Boolop)
	return nil
}

// and is Kleene's conjunction: false wins, then unknown.
func and(args []boolFn) boolFn {
	return func(vals []Value) Tri {
		out := True
		for _, a := range args {
			switch a(vals) {
			case False:
				return False
			case Unknown:
				out = Unknown
			}
		}
		return out
	}
}

// or is Kleene's disjunction: true wins, then unknown.
func or(args []boolFn) boolFn {
	return func(vals []Value) Tri {
		out := False
		for _, a := range args {
			switch a(vals) {
			case True:
				return True
			case Unknown:
				out = Unknown
			}
		}
		return out
	}
}

func not(t Tri) Tri {
	switch t {
	case True:
		return False
	case False:
		return True
	}
	return Unknown
}

func (c *compiler) nullTest(t *pg.NullTest) boolFn {
	s, ok := c.scalar(t.Arg)
	if !ok {
		return nil
	}
	isNull := t.Nulltesttype == pg.NullTestType_IS_NULL
	return func(vals []Value) Tri { return triOf(s.eval(vals).Valid != isNull) }
}

func (c *compiler) booleanTest(t *pg.BooleanTest) boolFn {
	arg := c.boolean(t.Arg)
	want, negate := Unknown, false
	switch t.Booltesttype {
	case pg.BoolTestType_IS_TRUE:
		want = True
	case pg.BoolTestType_IS_NOT_TRUE:
		want, negate = True, true
	case pg.BoolTestType_IS_FALSE:
		want = False
	case pg.BoolTestType_IS_NOT_FALSE:
		want, negate = False, true
	case pg.BoolTestType_IS_NOT_UNKNOWN:
		negate = true
	}
	return func(vals []Value) Tri { return triOf((arg(vals) == want) != negate) }
}

// scalar compiles an operand: a literal, an attribute, or a boolean
// expression used as a value.
func (c *compiler) scalar(n *pg.Node) (scalar, bool) {
	switch n.Node.(type) {
	case *pg.Node_BoolExpr, *pg.Node_AExpr, *pg.Node_NullTest, *pg.Node_BooleanTest:
		b := c.boolean(n)
		return scalar{kind: kBool, loc: location(n), desc: "the expression", fn: func(vals []Value) Value {
			t := b(vals)
			return Value{Valid: t != Unknown, Bool: t == True}
		}}, true
	}
	return c.leaf(n)
}

// leaf compiles a literal, a cast literal or an attribute.
func (c *compiler) leaf(n *pg.Node) (scalar, bool) {
	switch x := n.Node.(type) {
	case *pg.Node_AConst:
		return c.constant(x.AConst)
	case *pg.Node_TypeCast:
		return c.typeCast(x.TypeCast)
	case *pg.Node_ColumnRef:
		return c.columnRef(x.ColumnRef)
	case *pg.Node_ParamRef:
		c.fail(x.ParamRef.Location, Forbidden, "parameters ($%d) are not allowed: use subject.<attr> or context.<attr>", x.ParamRef.Number)
	case *pg.Node_SqlvalueFunction:
		c.fail(x.SqlvalueFunction.Location, Forbidden, "CURRENT_* functions are not allowed: use context.time, which tests can fix")
	case *pg.Node_FuncCall:
		c.fail(x.FuncCall.Location, Forbidden, "function calls are not allowed here: compare attributes with literals")
	default:
		c.fail(location(n), Forbidden, "%s is not allowed here: use comparisons, BETWEEN, IN, = ANY, IS [NOT] NULL, AND, OR and NOT over attributes and literals", nodeKind(n))
	}
	return scalar{}, false
}

func (c *compiler) columnRef(ref *pg.ColumnRef) (scalar, bool) {
	var parts []string
	for _, f := range ref.Fields {
		s := f.GetString_()
		if s == nil {
			c.fail(ref.Location, Forbidden, "* is not allowed here")
			return scalar{}, false
		}
		parts = append(parts, s.Sval)
	}
	qualifier, name := "", parts[len(parts)-1]
	switch len(parts) {
	case 1:
	case 2:
		qualifier = parts[0]
	default:
		c.fail(ref.Location, Forbidden, "%s: write qualifier.attribute, such as subject.roles", strings.Join(parts, "."))
		return scalar{}, false
	}
	typ, err := c.lookup(qualifier, name)
	if err != nil {
		c.fail(ref.Location, UnknownName, "%s", err.Error())
		return scalar{}, false
	}
	full := strings.Join(parts, ".")
	slot, seen := c.slots[full]
	if !seen {
		slot = len(c.refs)
		c.slots[full] = slot
		c.refs = append(c.refs, Ref{Qualifier: qualifier, Name: name, Type: typ})
	}
	return scalar{kind: kindOf(typ), loc: ref.Location, desc: full, fn: func(vals []Value) Value { return vals[slot] }}, true
}

// location returns a node's byte offset, or 0 for node types without one.
func location(n *pg.Node) int32 {
	type located interface{ GetLocation() int32 }
	v := reflect.ValueOf(n.Node)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().NumField() > 0 {
		if l, ok := v.Elem().Field(0).Interface().(located); ok {
			return l.GetLocation()
		}
	}
	return 0
}

// nodeKind names a node type for messages.
func nodeKind(n *pg.Node) string {
	name := strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_")
	switch name {
	case "SubLink":
		return "a subquery"
	case "CaseExpr":
		return "CASE"
	case "CoalesceExpr":
		return "COALESCE"
	case "AArrayExpr":
		return "an ARRAY constructor"
	case "RowExpr":
		return "a row constructor"
	case "AIndirection":
		return "subscripting or field selection"
	case "CollateClause":
		return "COLLATE"
	}
	return name
}
