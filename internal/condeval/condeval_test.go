package condeval_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/internal/condeval"
)

// attrs are the attributes the tests' conditions may use.
var attrs = map[string]condeval.Type{
	"subject.id": condeval.Text, "subject.tenant": condeval.Text, "subject.roles": condeval.TextArray,
	"subject.groups": condeval.TextArray, "subject.clearance": condeval.Int, "subject.contractor": condeval.Bool,
	"subject.hired": condeval.Timestamptz, "context.hour": condeval.Int, "context.weekday": condeval.Int,
	"context.time": condeval.Timestamptz, "context.agent": condeval.Text,
}

func lookup(qualifier, name string) (condeval.Type, error) {
	t, ok := attrs[qualifier+"."+name]
	if !ok {
		return 0, fmt.Errorf("unknown attribute %s.%s", qualifier, name)
	}
	return t, nil
}

// parse returns the expression of "SELECT <text>".
func parse(t testing.TB, text string) *pg.Node {
	t.Helper()
	tree, err := pg.Parse("SELECT " + text)
	if err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	return tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val
}

func compile(t testing.TB, text string) (*condeval.Program, []condeval.Error) {
	t.Helper()
	return compileNode(parse(t, text))
}

func compileNode(n *pg.Node) (*condeval.Program, []condeval.Error) {
	return condeval.Compile(n, lookup)
}

// env binds values by attribute name; a missing name is NULL.
type env map[string]condeval.Value

func (e env) values(p *condeval.Program) []condeval.Value {
	out := make([]condeval.Value, len(p.Refs))
	for i, r := range p.Refs {
		out[i] = e[r.Qualifier+"."+r.Name]
	}
	return out
}

func text(s string) condeval.Value     { return condeval.Value{Valid: true, Text: s} }
func integer(n int64) condeval.Value   { return condeval.Value{Valid: true, Int: n} }
func boolean(b bool) condeval.Value    { return condeval.Value{Valid: true, Bool: b} }
func texts(s ...string) condeval.Value { return condeval.Value{Valid: true, Texts: s} }
func when(t time.Time) condeval.Value  { return condeval.Value{Valid: true, Time: t} }

func TestEval(t *testing.T) {
	noon := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	full := env{
		"subject.id": text("alice"), "subject.roles": texts("staff", "admin"), "subject.groups": texts(),
		"subject.clearance": integer(2), "subject.contractor": boolean(false), "context.hour": integer(23),
		"context.time": when(noon), "context.agent": text("crawler"),
	}
	for _, tc := range []struct {
		cond string
		env  env
		want condeval.Tri
	}{
		{"context.hour NOT BETWEEN 7 AND 19", full, condeval.True},
		{"context.hour NOT BETWEEN 7 AND 19", env{}, condeval.Unknown},
		{"context.hour BETWEEN SYMMETRIC 30 AND 20", full, condeval.True},
		{"'admin' = ANY (subject.roles)", full, condeval.True},
		{"'x' = ANY (subject.groups)", full, condeval.False},
		{"NULL = ANY (subject.groups)", full, condeval.False},
		{"subject.id <> ALL (subject.roles)", full, condeval.True},
		{"subject.tenant = ANY (subject.roles)", full, condeval.Unknown},
		{"context.agent IN ('crawler', NULL)", full, condeval.True},
		{"context.agent NOT IN ('bot', NULL)", full, condeval.Unknown},
		{"subject.clearance IN ('1', '2')", full, condeval.True},
		{"subject.clearance < 3000000000", full, condeval.True},
		{"NOT subject.contractor AND subject.clearance >= 2", full, condeval.True},
		{"subject.contractor OR subject.hired IS NULL", full, condeval.True},
		{"subject.contractor IS NOT FALSE", full, condeval.False},
		{"(subject.clearance > 5) IS UNKNOWN", env{}, condeval.True},
		{"subject.clearance IS DISTINCT FROM NULL", full, condeval.True},
		{"subject.hired IS NOT DISTINCT FROM NULL", full, condeval.True},
		{"context.time > '2026-01-15T11:59:59.999999Z'", full, condeval.True},
		{"context.time = timestamptz '2026-01-15T13:00:00+01:00'", full, condeval.True},
		{"context.time < '2026-01-15T12:00:00Z'::timestamptz", full, condeval.False},
		{"NULL", full, condeval.Unknown},
		{"NOT NULL", full, condeval.Unknown},
		{"true AND NULL", full, condeval.Unknown},
		{"false AND NULL", full, condeval.False},
		{"'a' = 'a'", full, condeval.True},
		{"NULL::integer IS NULL", full, condeval.True},
	} {
		p, errs := compile(t, tc.cond)
		if len(errs) > 0 {
			t.Errorf("%s: %v", tc.cond, errs)
			continue
		}
		if got := p.Eval(tc.env.values(p)); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.cond, got, tc.want)
		}
	}
}

// Times compare at microseconds, as PostgreSQL stores them.
func TestTimePrecision(t *testing.T) {
	p, errs := compile(t, "context.time = '2026-01-15T12:00:00.000001Z'")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	at := time.Date(2026, 1, 15, 12, 0, 0, 1999, time.UTC)
	if got := p.Eval(env{"context.time": when(at)}.values(p)); got != condeval.True {
		t.Errorf("a time 999ns past the microsecond = %s", got)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		cond string
		kind condeval.ErrorKind
		msg  string
	}{
		{"owner_id = 'x'", condeval.UnknownName, "unknown attribute .owner_id"},
		{"subject.idd = 'x'", condeval.UnknownName, "unknown attribute subject.idd"},
		{"subject.id < 'm'", condeval.Forbidden, "compared only with = and <>"},
		{"subject.contractor < true", condeval.Forbidden, "compared only with = and <>"},
		{"subject.roles = subject.groups", condeval.Forbidden, "text[] values can only be tested"},
		{"subject.id = 5", condeval.Mismatch, "cannot be compared with"},
		{"context.hour = 'seven'", condeval.Mismatch, "is not an integer"},
		{"context.hour = ' 7'", condeval.Mismatch, "is not an integer"},
		{"subject.clearance = '3000000000'", condeval.Mismatch, "is not an integer"},
		{"context.hour = 7.5", condeval.Forbidden, "only whole numbers"},
		{"context.time > '2026-01-15 12:00:00'", condeval.Mismatch, "is not a time"},
		{"context.time > '2026-01-15T12:00:00.0000001Z'", condeval.Mismatch, "at most microseconds"},
		{"subject.contractor = 'true'", condeval.Mismatch, "without quotes"},
		{"context.hour", condeval.Mismatch, "not a boolean condition"},
		{"'yes'", condeval.Mismatch, "not a boolean condition"},
		{"context.hour + 1 > 2", condeval.Forbidden, "operator + is not allowed"},
		{"-context.hour > 2", condeval.Forbidden, "prefix operator"},
		{"lower(subject.id) = 'x'", condeval.Forbidden, "function calls"},
		{"subject.id LIKE 'a%'", condeval.Forbidden, "LIKE is not allowed"},
		{"subject.id = ANY (ARRAY['a'])", condeval.Forbidden, "an ARRAY constructor is not allowed"},
		{"subject.id = ANY ('{a}')", condeval.Forbidden, "ANY and ALL take a text[] attribute"},
		{"subject.id < ANY (subject.roles)", condeval.Forbidden, "used with = and <>"},
		{"context.hour = ANY (subject.roles)", condeval.Mismatch, "cannot be compared with the elements"},
		{"EXISTS (SELECT 1)", condeval.Forbidden, "a subquery is not allowed"},
		{"CASE WHEN true THEN true END", condeval.Forbidden, "CASE is not allowed"},
		{"subject.id::text = 'x'", condeval.Forbidden, "only a string literal or NULL may be cast"},
		{"'7'::numeric = context.hour", condeval.Forbidden, "cast only to text"},
		{"$1 = 1", condeval.Forbidden, "parameters"},
		{"now() > context.time", condeval.Forbidden, "function calls"},
		{"current_date IS NULL", condeval.Forbidden, "CURRENT_*"},
		{"a.b.c = 1", condeval.Forbidden, "write qualifier.attribute"},
	} {
		_, errs := compile(t, tc.cond)
		if len(errs) == 0 {
			t.Errorf("%s: accepted", tc.cond)
			continue
		}
		if errs[0].Kind != tc.kind || !strings.Contains(errs[0].Msg, tc.msg) {
			t.Errorf("%s: %v (kind %d), want kind %d with %q", tc.cond, errs[0], errs[0].Kind, tc.kind, tc.msg)
		}
	}
}

// Every reason is reported, each at its place.
func TestCompileReportsEveryError(t *testing.T) {
	_, errs := compile(t, "subject.x = 1 AND lower(subject.id) = 'a' AND context.hour = 'z'")
	var locs []int32
	for _, e := range errs {
		locs = append(locs, e.Location)
	}
	if fmt.Sprint(locs) != "[7 25 68]" {
		t.Errorf("errors %v at %v", errs, locs)
	}
	var err error = errs[0]
	if !errors.As(err, new(condeval.Error)) || err.Error() == "" {
		t.Errorf("Error does not implement error: %v", err)
	}
}

func TestRefs(t *testing.T) {
	p, errs := compile(t, "context.hour > 3 AND subject.id = 'a' OR context.hour < 1")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []condeval.Ref{{Qualifier: "context", Name: "hour", Type: condeval.Int}, {Qualifier: "subject", Name: "id", Type: condeval.Text}}
	if fmt.Sprint(p.Refs) != fmt.Sprint(want) {
		t.Errorf("refs %v, want %v", p.Refs, want)
	}
}
