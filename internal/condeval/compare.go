package condeval

import (
	"cmp"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v5"
)

func (c *compiler) aExpr(e *pg.A_Expr) boolFn {
	op := ""
	if len(e.Name) == 1 {
		op = e.Name[0].GetString_().GetSval()
	}
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		if e.Lexpr == nil {
			c.fail(e.Location, Forbidden, "prefix operator %s is not allowed here", op)
			return nil
		}
		return c.binary(op, e.Lexpr, e.Rexpr, e.Location)
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		return c.distinct(e)
	case pg.A_Expr_Kind_AEXPR_IN:
		return c.in(op, e)
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		return c.anyAll(op, e)
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return c.between(e)
	}
	c.fail(e.Location, Forbidden, "%s is not allowed here", strings.TrimPrefix(e.Kind.String(), "AEXPR_"))
	return nil
}

// comparisons maps each comparison operator to the results of cmp that
// make it true.
var comparisons = map[string]func(int) bool{
	"=":  func(c int) bool { return c == 0 },
	"<>": func(c int) bool { return c != 0 },
	"!=": func(c int) bool { return c != 0 },
	"<":  func(c int) bool { return c < 0 },
	"<=": func(c int) bool { return c <= 0 },
	">":  func(c int) bool { return c > 0 },
	">=": func(c int) bool { return c >= 0 },
}

func ordering(op string) bool { return op != "=" && op != "<>" && op != "!=" }

func (c *compiler) binary(op string, l, r *pg.Node, loc int32) boolFn {
	ls, lok := c.scalar(l)
	rs, rok := c.scalar(r)
	if !lok || !rok {
		return nil
	}
	return c.compare(op, ls, rs, loc)
}

// compare compiles l op r, typing string literals and NULL by the other
// side as PostgreSQL does.
func (c *compiler) compare(op string, l, r scalar, loc int32) boolFn {
	test, ok := comparisons[op]
	if !ok {
		c.fail(loc, Forbidden, "operator %s is not allowed here: use =, <>, <, <=, > or >=", op)
		return nil
	}
	k, l, r, ok := c.unify(l, r, loc)
	if !ok {
		return nil
	}
	if !comparable(k, op, loc, c) {
		return nil
	}
	return func(vals []Value) Tri {
		a, b := l.eval(vals), r.eval(vals)
		if !a.Valid || !b.Valid {
			return Unknown
		}
		return triOf(test(compareValues(k, a, b)))
	}
}

// unify resolves the kinds of two operands to one, or reports why
// PostgreSQL would not compare them.
func (c *compiler) unify(l, r scalar, loc int32) (kind, scalar, scalar, bool) {
	l, r = typeNull(l, r), typeNull(r, l)
	var ok bool
	if l, ok = c.coerce(l, r.kind, r.wide); !ok {
		return 0, l, r, false
	}
	if r, ok = c.coerce(r, l.kind, l.wide); !ok {
		return 0, l, r, false
	}
	if l.kind != r.kind {
		c.fail(loc, Mismatch, "%s (%s) cannot be compared with %s (%s)", l.desc, l.kind, r.desc, r.kind)
		return 0, l, r, false
	}
	return l.kind, l, r, true
}

// typeNull gives a NULL literal the kind of the other operand: text when
// that is a NULL or a string literal too, as PostgreSQL resolves them.
func typeNull(s, other scalar) scalar {
	if s.kind != kNull {
		return s
	}
	s.kind = other.kind
	if other.kind == kNull || other.kind == kUnknown {
		s.kind = kText
	}
	return s
}

// comparable reports whether op is evaluated here for kind k. Text is
// only tested for equality: its order depends on the database collation.
func comparable(k kind, op string, loc int32, c *compiler) bool {
	switch {
	case k == kTextArray:
		c.fail(loc, Forbidden, "text[] values can only be tested with = ANY (...), <> ALL (...) and IS [NOT] NULL")
		return false
	case ordering(op) && (k == kText || k == kBool):
		c.fail(loc, Forbidden, "%s values are compared only with = and <> here (the order of text depends on the database's collation)", k)
		return false
	}
	return true
}

func compareValues(k kind, a, b Value) int {
	switch k {
	case kInt:
		return cmp.Compare(a.Int, b.Int)
	case kText:
		return strings.Compare(a.Text, b.Text)
	case kBool:
		return cmp.Compare(b2i(a.Bool), b2i(b.Bool))
	case kTime:
		// PostgreSQL keeps microseconds, and a bound time is truncated to them.
		return a.Time.Truncate(time.Microsecond).Compare(b.Time.Truncate(time.Microsecond))
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// distinct compiles IS [NOT] DISTINCT FROM: equality in which NULL equals
// NULL, so the result is never unknown.
func (c *compiler) distinct(e *pg.A_Expr) boolFn {
	l, lok := c.scalar(e.Lexpr)
	r, rok := c.scalar(e.Rexpr)
	if !lok || !rok {
		return nil
	}
	k, l, r, ok := c.unify(l, r, e.Location)
	if !ok || !comparable(k, "=", e.Location, c) {
		return nil
	}
	wantDistinct := e.Kind == pg.A_Expr_Kind_AEXPR_DISTINCT
	return func(vals []Value) Tri {
		a, b := l.eval(vals), r.eval(vals)
		same := a.Valid == b.Valid && (!a.Valid || compareValues(k, a, b) == 0)
		return triOf(same != wantDistinct)
	}
}

// in compiles x [NOT] IN (a, b, ...) as PostgreSQL does: x = a OR x = b
// ..., and for NOT IN x <> a AND x <> b ....
func (c *compiler) in(op string, e *pg.A_Expr) boolFn {
	left, ok := c.scalar(e.Lexpr)
	list := e.Rexpr.GetList()
	if !ok || list == nil {
		if ok {
			c.fail(e.Location, Forbidden, "IN takes a list of values here, not a subquery")
		}
		return nil
	}
	parts := make([]boolFn, 0, len(list.Items))
	for _, item := range list.Items {
		r, ok := c.scalar(item)
		if !ok {
			continue
		}
		parts = append(parts, c.compare(op, left, r, e.Location))
	}
	if op == "<>" {
		return and(parts)
	}
	return or(parts)
}

// between compiles the four BETWEEN forms into the comparisons PostgreSQL
// rewrites them to.
func (c *compiler) between(e *pg.A_Expr) boolFn {
	a, aok := c.scalar(e.Lexpr)
	bounds := e.Rexpr.GetList()
	if !aok || bounds == nil || len(bounds.Items) != 2 {
		return nil
	}
	b, bok := c.scalar(bounds.Items[0])
	hi, cok := c.scalar(bounds.Items[1])
	if !bok || !cok {
		return nil
	}
	cmp := func(op string, x, y scalar) boolFn { return c.compare(op, x, y, e.Location) }
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_BETWEEN:
		return and([]boolFn{cmp(">=", a, b), cmp("<=", a, hi)})
	case pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		return or([]boolFn{cmp("<", a, b), cmp(">", a, hi)})
	case pg.A_Expr_Kind_AEXPR_BETWEEN_SYM:
		return or([]boolFn{
			and([]boolFn{cmp(">=", a, b), cmp("<=", a, hi)}),
			and([]boolFn{cmp(">=", a, hi), cmp("<=", a, b)}),
		})
	}
	return and([]boolFn{
		or([]boolFn{cmp("<", a, b), cmp(">", a, hi)}),
		or([]boolFn{cmp("<", a, hi), cmp(">", a, b)}),
	})
}

// anyAll compiles x = ANY (array) and x <> ALL (array) over a text[]
// attribute. Over an empty array ANY is false and ALL true, even when x
// is NULL.
func (c *compiler) anyAll(op string, e *pg.A_Expr) boolFn {
	x, xok := c.scalar(e.Lexpr)
	arr, aok := c.scalar(e.Rexpr)
	if !xok || !aok {
		return nil
	}
	if arr.kind != kTextArray || arr.konst != nil {
		c.fail(e.Location, Forbidden, "ANY and ALL take a text[] attribute here, such as subject.roles; for a list of values use IN (...)")
		return nil
	}
	test, known := comparisons[op]
	if !known || ordering(op) {
		c.fail(e.Location, Forbidden, "ANY and ALL are used with = and <> here")
		return nil
	}
	if x.kind == kNull {
		x.kind = kText
	}
	x, ok := c.coerce(x, kText, false)
	if !ok {
		return nil
	}
	if x.kind != kText {
		c.fail(x.loc, Mismatch, "%s (%s) cannot be compared with the elements of %s (text)", x.desc, x.kind, arr.desc)
		return nil
	}
	all := e.Kind == pg.A_Expr_Kind_AEXPR_OP_ALL
	return func(vals []Value) Tri { return quantify(x.eval(vals), arr.eval(vals), test, all) }
}

func quantify(x, arr Value, test func(int) bool, all bool) Tri {
	if !arr.Valid {
		return Unknown
	}
	out := triOf(all)
	for _, e := range arr.Texts {
		if !x.Valid {
			out = Unknown
			continue
		}
		if test(strings.Compare(x.Text, e)) != all {
			return triOf(!all)
		}
	}
	return out
}
