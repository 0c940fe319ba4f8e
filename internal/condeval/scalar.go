package condeval

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// kind is the static type of an operand, with the two literal types
// PostgreSQL resolves from context: NULL and the untyped string.
type kind uint8

const (
	kNull    kind = iota // the NULL literal
	kUnknown             // a string literal, typed by what it meets
	kBool
	kInt
	kText
	kTime
	kTextArray
)

func (k kind) String() string {
	switch k {
	case kNull:
		return "NULL"
	case kUnknown:
		return "a string literal"
	case kBool:
		return "boolean"
	case kInt:
		return "integer"
	case kText:
		return "text"
	case kTime:
		return "timestamptz"
	}
	return "text[]"
}

func kindOf(t Type) kind {
	switch t {
	case Bool:
		return kBool
	case Int:
		return kInt
	case Text:
		return kText
	case Timestamptz:
		return kTime
	}
	return kTextArray
}

// scalar is a compiled operand: a constant or a function of the values.
type scalar struct {
	kind kind
	// wide marks an integer literal PostgreSQL types bigint; a string
	// literal compared with it is read as bigint, not integer.
	wide  bool
	lit   string // kUnknown: the literal's text
	konst *Value // a constant, or nil
	fn    func([]Value) Value
	loc   int32
	desc  string // how messages name it
}

func (s scalar) eval(vals []Value) Value {
	if s.konst != nil {
		return *s.konst
	}
	return s.fn(vals)
}

func constant(k kind, v Value, loc int32, desc string) scalar {
	return scalar{kind: k, konst: &v, loc: loc, desc: desc}
}

func (c *compiler) constant(a *pg.A_Const) (scalar, bool) {
	loc := a.Location
	switch {
	case a.Isnull:
		return constant(kNull, Value{}, loc, "NULL"), true
	case a.GetIval() != nil:
		return constant(kInt, Value{Valid: true, Int: int64(a.GetIval().Ival)}, loc, strconv.Itoa(int(a.GetIval().Ival))), true
	case a.GetFval() != nil:
		// The lexer makes any integer beyond int4 a "float"; PostgreSQL then
		// types it bigint when it fits, and numeric otherwise.
		f := a.GetFval().Fval
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			c.fail(loc, Forbidden, "%s: only whole numbers within bigint are allowed here", f)
			return scalar{}, false
		}
		s := constant(kInt, Value{Valid: true, Int: n}, loc, f)
		s.wide = n < math.MinInt32 || n > math.MaxInt32
		return s, true
	case a.GetBoolval() != nil:
		return constant(kBool, Value{Valid: true, Bool: a.GetBoolval().Boolval}, loc, strconv.FormatBool(a.GetBoolval().Boolval)), true
	case a.GetSval() != nil:
		// Its value is its text until a comparison gives it a type: IS NULL
		// reads it as text, as PostgreSQL does.
		s := a.GetSval().Sval
		lit := constant(kUnknown, Value{Valid: true, Text: s}, loc, quote(s))
		lit.lit = s
		return lit, true
	}
	c.fail(loc, Forbidden, "bit strings are not allowed here")
	return scalar{}, false
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// castTargets maps the type names a literal may be cast to onto the
// operand kind and, for integers, the range the type holds.
var castTargets = map[string]struct {
	kind     kind
	min, max int64
}{
	"text":        {kind: kText},
	"varchar":     {kind: kText},
	"int2":        {kInt, math.MinInt16, math.MaxInt16},
	"smallint":    {kInt, math.MinInt16, math.MaxInt16},
	"int4":        {kInt, math.MinInt32, math.MaxInt32},
	"int":         {kInt, math.MinInt32, math.MaxInt32},
	"integer":     {kInt, math.MinInt32, math.MaxInt32},
	"int8":        {kInt, math.MinInt64, math.MaxInt64},
	"bigint":      {kInt, math.MinInt64, math.MaxInt64},
	"timestamptz": {kind: kTime},
}

// typeCast accepts a string literal or NULL cast to text, an integer type
// or timestamptz: a typed constant. Casting attributes or expressions
// would need PostgreSQL's conversions, which this package does not copy.
func (c *compiler) typeCast(tc *pg.TypeCast) (scalar, bool) {
	name, ok := castName(tc.TypeName)
	target, known := castTargets[name]
	if !ok || !known {
		c.fail(tc.TypeName.GetLocation(), Forbidden, "a literal may be cast only to text, an integer type or timestamptz")
		return scalar{}, false
	}
	a := tc.Arg.GetAConst()
	if a == nil || (!a.Isnull && a.GetSval() == nil) {
		c.fail(location(tc.Arg), Forbidden, "only a string literal or NULL may be cast here")
		return scalar{}, false
	}
	if a.Isnull {
		return constant(target.kind, Value{}, a.Location, "NULL::"+name), true
	}
	lit := constant(kUnknown, Value{Valid: true, Text: a.GetSval().Sval}, a.Location, quote(a.GetSval().Sval)+"::"+name)
	lit.lit = a.GetSval().Sval
	if target.kind == kInt {
		return c.intLiteral(lit, target.min, target.max)
	}
	return c.coerce(lit, target.kind, false)
}

// castName returns a cast's type name without pg_catalog, refusing type
// modifiers and arrays.
func castName(t *pg.TypeName) (string, bool) {
	if t == nil || len(t.Typmods) > 0 || len(t.ArrayBounds) > 0 || t.Setof || t.PctType || len(t.Names) == 0 {
		return "", false
	}
	var parts []string
	for _, n := range t.Names {
		parts = append(parts, n.GetString_().GetSval())
	}
	if len(parts) == 2 && parts[0] == "pg_catalog" {
		parts = parts[1:]
	}
	return parts[0], len(parts) == 1
}

// coerce gives a string literal the kind it is compared with, reading it as
// PostgreSQL would; a literal PostgreSQL might read differently (or not
// at all) is refused. Other operands are returned as they are.
func (c *compiler) coerce(s scalar, to kind, wide bool) (scalar, bool) {
	if s.kind != kUnknown {
		return s, true
	}
	switch to {
	case kText, kUnknown:
		return constant(kText, Value{Valid: true, Text: s.lit}, s.loc, s.desc), true
	case kInt:
		if wide {
			return c.intLiteral(s, math.MinInt64, math.MaxInt64)
		}
		return c.intLiteral(s, math.MinInt32, math.MaxInt32)
	case kTime:
		return c.timeLiteral(s)
	}
	c.fail(s.loc, Mismatch, "%s cannot be compared with %s here: write the value without quotes", s.desc, to)
	return scalar{}, false
}

var integerText = regexp.MustCompile(`^[+-]?[0-9]+$`)

func (c *compiler) intLiteral(s scalar, lo, hi int64) (scalar, bool) {
	n, err := strconv.ParseInt(s.lit, 10, 64)
	if !integerText.MatchString(s.lit) || err != nil || n < lo || n > hi {
		c.fail(s.loc, Mismatch, "%s is not an integer in range [%d, %d]", s.desc, lo, hi)
		return scalar{}, false
	}
	return constant(kInt, Value{Valid: true, Int: n}, s.loc, s.desc), true
}

// timeLiteral reads an RFC 3339 time with its offset: without one,
// PostgreSQL would read it in the session's time zone.
func (c *compiler) timeLiteral(s scalar) (scalar, bool) {
	t, err := time.Parse(time.RFC3339Nano, s.lit)
	if err != nil || t.Year() < 1 || fractionDigits(s.lit) > 6 {
		c.fail(s.loc, Mismatch, "%s is not a time such as '2026-01-31T18:00:00Z': write RFC 3339 with its offset and at most microseconds", s.desc)
		return scalar{}, false
	}
	return constant(kTime, Value{Valid: true, Time: t}, s.loc, s.desc), true
}

func fractionDigits(s string) int {
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return 0
	}
	n := 0
	for _, r := range s[i+1:] {
		if r < '0' || r > '9' {
			break
		}
		n++
	}
	return n
}
