// Package condeval evaluates a small subset of SQL boolean expressions in
// Go, with PostgreSQL's semantics: the conditions of a policy's guardrails,
// which must be decided before a request reaches the database, so a
// request stays one round trip.
//
// A condition names attributes as qualifier.name (subject.roles,
// context.hour); Compile resolves each through a Lookup, checks types as
// PostgreSQL would, and refuses every shape it cannot evaluate exactly
// (rather than evaluate it differently from PostgreSQL). The subset:
//
//   - literals: integers, strings, true, false, NULL, and casts of a
//     literal to text, an integer type or timestamptz;
//   - attributes of type boolean, integer, text, timestamptz, and text[]
//     (the last only in = ANY / <> ALL and IS [NOT] NULL);
//   - comparisons (=, <>, and for integers and timestamps <, <=, >, >=; text
//     ordering depends on the database's collation, so it is refused),
//     [NOT] BETWEEN [SYMMETRIC], [NOT] IN (list), x = ANY / <> ALL (array);
//   - AND, OR, NOT, IS [NOT] NULL, IS [NOT] TRUE / FALSE / UNKNOWN.
//
// Eval uses SQL's three-valued logic: a missing attribute is NULL, and a
// comparison with NULL is Unknown.
package condeval

import (
	"fmt"
	"time"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// Type is the SQL type of an attribute.
type Type uint8

// The attribute types a condition may use.
const (
	Bool Type = iota + 1
	Int       // integer (int4)
	Text
	Timestamptz
	TextArray
)

func (t Type) String() string {
	switch t {
	case Bool:
		return "boolean"
	case Int:
		return "integer"
	case Text:
		return "text"
	case Timestamptz:
		return "timestamptz"
	case TextArray:
		return "text[]"
	}
	return fmt.Sprintf("Type(%d)", t)
}

// Tri is a truth value of SQL's three-valued logic.
type Tri int8

// The truth values.
const (
	False Tri = iota
	True
	Unknown
)

func (t Tri) String() string {
	switch t {
	case False:
		return "false"
	case True:
		return "true"
	}
	return "unknown"
}

func triOf(b bool) Tri {
	if b {
		return True
	}
	return False
}

// Value is an attribute's value; the zero Value is NULL (a missing
// attribute). Only the field of the attribute's Type is read.
type Value struct {
	Valid bool
	Bool  bool
	Int   int64
	Text  string
	// Time is compared at microsecond precision, as PostgreSQL stores it.
	Time  time.Time
	Texts []string
}

// Ref is an attribute a condition uses.
type Ref struct {
	Qualifier, Name string
	Type            Type
}

// Lookup returns the type of the attribute qualifier.name, or an error
// saying why a condition may not use it.
type Lookup func(qualifier, name string) (Type, error)

// ErrorKind says why Compile refused a condition.
type ErrorKind uint8

// The kinds of Error.
const (
	// Forbidden: a shape outside the subset (a function, a subquery, ...).
	Forbidden ErrorKind = iota + 1
	// UnknownName: a name Lookup refused.
	UnknownName
	// Mismatch: types PostgreSQL would not compare, or a literal it
	// would not read as the type it is compared with.
	Mismatch
)

// Error is one reason a condition cannot be evaluated, at the byte offset
// of the node in the statement the expression was parsed from.
type Error struct {
	Location int32
	Kind     ErrorKind
	Msg      string
}

func (e Error) Error() string { return e.Msg }

// Program is a compiled condition; it is safe for concurrent use.
type Program struct {
	// Refs are the attributes it uses, in the order Eval takes their values.
	Refs []Ref
	root boolFn
}

// boolFn evaluates a boolean expression on the attributes' values.
type boolFn func(vals []Value) Tri

// Eval evaluates the condition; vals[i] is the value of Refs[i].
func (p *Program) Eval(vals []Value) Tri {
	if len(vals) < len(p.Refs) {
		panic(fmt.Sprintf("condeval: %d values for %d attributes", len(vals), len(p.Refs)))
	}
	return p.root(vals)
}

// Compile compiles a boolean expression's parse tree. It returns every
// reason it refuses the expression, or the Program.
func Compile(expr *pg.Node, lookup Lookup) (*Program, []Error) {
	c := &compiler{lookup: lookup, slots: map[string]int{}}
	root := c.boolean(expr)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return &Program{Refs: c.refs, root: root}, nil
}
