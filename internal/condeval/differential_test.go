package condeval_test

// The evaluator against PostgreSQL: each condition is evaluated by both
// on the same values, PostgreSQL reading subject.x and context.x from
// subqueries named subject and context whose columns are the values bound
// as parameters. Any difference, and any condition Compile accepts that
// PostgreSQL refuses, fails the test.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/condeval"
	"github.com/ragfence/ragfence/internal/testdb"
)

// columns are the attributes in the order the query binds them.
var columns = []struct {
	qualifier, name, sqlType string
}{
	{"subject", "id", "text"}, {"subject", "tenant", "text"}, {"subject", "roles", "text[]"},
	{"subject", "groups", "text[]"}, {"subject", "clearance", "integer"}, {"subject", "contractor", "boolean"},
	{"subject", "hired", "timestamptz"}, {"context", "hour", "integer"}, {"context", "weekday", "integer"},
	{"context", "time", "timestamptz"}, {"context", "agent", "text"},
}

// evalQuery is "SELECT (<cond>) FROM (SELECT $1::text AS id, ...) AS subject, (...) AS context".
func evalQuery(cond string) string {
	parts := map[string][]string{}
	for i, c := range columns {
		parts[c.qualifier] = append(parts[c.qualifier], fmt.Sprintf("$%d::%s AS %s", i+1, c.sqlType, c.name))
	}
	return fmt.Sprintf("SELECT (%s)::boolean FROM (SELECT %s) AS subject, (SELECT %s) AS context",
		cond, strings.Join(parts["subject"], ", "), strings.Join(parts["context"], ", "))
}

// args binds e's values; a missing one is NULL.
func (e env) args() []any {
	out := make([]any, len(columns))
	for i, c := range columns {
		v, ok := e[c.qualifier+"."+c.name]
		if !ok || !v.Valid {
			continue
		}
		switch attrs[c.qualifier+"."+c.name] {
		case condeval.Text:
			out[i] = v.Text
		case condeval.TextArray:
			out[i] = append([]string{}, v.Texts...) // nil would bind NULL
		case condeval.Int:
			out[i] = v.Int
		case condeval.Bool:
			out[i] = v.Bool
		case condeval.Timestamptz:
			out[i] = v.Time
		}
	}
	return out
}

func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

type diffCase struct {
	cond string
	env  env
}

// differ evaluates every case in Go and in PostgreSQL (one batch), and
// counts PostgreSQL's outcomes.
func differ(t *testing.T, conn *pgx.Conn, cases []diffCase) map[condeval.Tri]int {
	t.Helper()
	progs := make([]*condeval.Program, len(cases))
	batch := &pgx.Batch{}
	for i, c := range cases {
		p, errs := compile(t, c.cond)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", c.cond, errs)
		}
		progs[i] = p
		batch.Queue(evalQuery(c.cond), c.env.args()...)
	}
	results := conn.SendBatch(context.Background(), batch)
	defer results.Close()
	mismatches, outcomes := 0, map[condeval.Tri]int{}
	for i, c := range cases {
		var got *bool
		if err := results.QueryRow().Scan(&got); err != nil {
			t.Fatalf("PostgreSQL refuses %s, which Compile accepts: %v", c.cond, err)
		}
		want := condeval.Unknown
		if got != nil {
			want = map[bool]condeval.Tri{true: condeval.True, false: condeval.False}[*got]
		}
		outcomes[want]++
		if g := progs[i].Eval(c.env.values(progs[i])); g != want {
			mismatches++
			t.Errorf("%s with %v: Go %s, PostgreSQL %s", c.cond, c.env, g, want)
			if mismatches > 20 {
				t.FailNow()
			}
		}
	}
	return outcomes
}

func TestDifferentialTable(t *testing.T) {
	conn := connect(t)
	noon := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	envs := []env{
		{},
		{"subject.id": text("alice"), "subject.roles": texts("staff", "admin"), "subject.groups": texts(),
			"subject.clearance": integer(2), "subject.contractor": boolean(true), "context.hour": integer(23),
			"context.weekday": integer(0), "context.time": when(noon), "subject.hired": when(noon.Add(-time.Microsecond)),
			"context.agent": text("crawler"), "subject.tenant": text("")},
		{"subject.id": text("a'b"), "subject.roles": texts(""), "subject.groups": texts("admin"),
			"subject.clearance": integer(-2147483648), "subject.contractor": boolean(false), "context.hour": integer(7),
			"context.time": when(noon.Add(1500 * time.Nanosecond)), "context.agent": text("é")},
	}
	conds := []string{
		"context.hour NOT BETWEEN 7 AND 19", "context.hour BETWEEN 7 AND 19", "context.hour BETWEEN SYMMETRIC 19 AND 7",
		"context.hour NOT BETWEEN SYMMETRIC 19 AND 7", "context.hour BETWEEN NULL AND 19", "context.hour NOT BETWEEN 7 AND NULL",
		"'admin' = ANY (subject.roles)", "'admin' <> ALL (subject.roles)", "subject.id = ANY (subject.groups)",
		"NULL = ANY (subject.groups)", "NULL <> ALL (subject.roles)", "'' = ANY (subject.roles)", "subject.tenant <> ALL (subject.groups)",
		"context.agent IN ('crawler', 'bot')", "context.agent NOT IN ('crawler', NULL)", "context.agent IN (NULL, 'é')",
		"subject.clearance IN ('2', 3, -2147483648)", "subject.clearance NOT IN (1, 3000000000)", "subject.clearance < '+3'",
		"subject.clearance >= -2147483648", "subject.clearance = '007'", "context.weekday = 0 OR context.weekday = 6",
		"subject.contractor", "NOT subject.contractor", "subject.contractor = true", "subject.contractor <> false",
		"subject.contractor IS TRUE", "subject.contractor IS NOT TRUE", "subject.contractor IS FALSE", "subject.contractor IS NOT FALSE",
		"subject.contractor IS UNKNOWN", "subject.contractor IS NOT UNKNOWN", "(context.hour > 20) IS NULL",
		"(context.hour > 20) = subject.contractor", "subject.roles IS NULL", "subject.groups IS NOT NULL",
		"subject.id IS DISTINCT FROM 'alice'", "subject.id IS NOT DISTINCT FROM NULL", "subject.hired IS DISTINCT FROM context.time",
		"context.time > '2026-01-15T11:59:59.999999Z'", "context.time = timestamptz '2026-01-15T13:00:00+01:00'",
		"context.time >= '2026-01-15T12:00:00.000001Z'::timestamptz", "subject.hired < context.time",
		"context.time BETWEEN '2026-01-01T00:00:00Z' AND '2026-12-31T23:59:59Z'",
		"NULL", "NOT NULL", "true", "false AND NULL", "true OR NULL", "NULL IS NULL", "NULL = NULL", "NULL::integer IS NULL",
		"'a' = 'a'", "'a' <> 'b'", "'7'::integer = context.hour", "'x'::text = subject.id", "'5'::bigint > 3000000000",
		"'5' = 3000000000", "3000000000 > subject.clearance",
		"subject.id = 'alice' AND (context.hour < 7 OR context.hour > 19) AND NOT ('staff' = ANY (subject.roles))",
		"subject.tenant = '' OR subject.tenant IS NULL",
	}
	var cases []diffCase
	for _, c := range conds {
		for _, e := range envs {
			cases = append(cases, diffCase{c, e})
		}
	}
	differ(t, conn, cases)
}

// TestDifferentialRandom generates conditions from the accepted grammar
// and values that often collide, so equalities hold as often as not.
// RAGFENCE_CONDEVAL_SEED replays a seed; RAGFENCE_CONDEVAL_CASES sets how many.
func TestDifferentialRandom(t *testing.T) {
	conn := connect(t)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("RAGFENCE_CONDEVAL_SEED"), 10, 64); err == nil {
		seed = s
	}
	n := 4000
	if s, err := strconv.Atoi(os.Getenv("RAGFENCE_CONDEVAL_CASES")); err == nil {
		n = s
	}
	t.Logf("seed %d (RAGFENCE_CONDEVAL_SEED=%d replays it)", seed, seed)
	g := &gen{r: rand.New(rand.NewPCG(seed, 0))}
	var cases []diffCase
	for range n {
		cases = append(cases, diffCase{g.boolean(3), g.env()})
	}
	outcomes := differ(t, conn, cases)
	t.Logf("outcomes: %v", outcomes)
	for _, o := range []condeval.Tri{condeval.True, condeval.False, condeval.Unknown} {
		if outcomes[o] < n/10 {
			t.Errorf("only %d of %d cases are %s: the generator no longer exercises every outcome", outcomes[o], n, o)
		}
	}
}

type gen struct{ r *rand.Rand }

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

var (
	textPool  = []string{"alice", "bob", "", "a'b", "é", "admin", "staff"}
	timeBase  = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	timeSteps = []time.Duration{0, time.Microsecond, -time.Microsecond, 1500 * time.Nanosecond, time.Hour, -24 * time.Hour}
)

func (g *gen) env() env {
	e := env{}
	for _, c := range columns {
		if g.r.IntN(5) == 0 {
			continue // missing: NULL
		}
		key := c.qualifier + "." + c.name
		switch attrs[key] {
		case condeval.Text:
			e[key] = text(textPool[g.r.IntN(len(textPool))])
		case condeval.TextArray:
			var s []string
			for range g.r.IntN(3) {
				s = append(s, textPool[g.r.IntN(len(textPool))])
			}
			e[key] = texts(s...)
		case condeval.Int:
			e[key] = integer(int64(g.r.IntN(30) - 3))
		case condeval.Bool:
			e[key] = boolean(g.r.IntN(2) == 0)
		case condeval.Timestamptz:
			e[key] = when(timeBase.Add(timeSteps[g.r.IntN(len(timeSteps))]))
		}
	}
	return e
}

func (g *gen) boolean(depth int) string {
	if depth == 0 {
		return g.leafBool()
	}
	switch g.r.IntN(10) {
	case 0:
		return fmt.Sprintf("(%s AND %s)", g.boolean(depth-1), g.boolean(depth-1))
	case 1:
		return fmt.Sprintf("(%s OR %s)", g.boolean(depth-1), g.boolean(depth-1))
	case 2:
		return fmt.Sprintf("(NOT %s)", g.boolean(depth-1))
	case 3:
		return fmt.Sprintf("((%s) %s)", g.boolean(depth-1), g.pick("IS TRUE", "IS NOT TRUE", "IS FALSE", "IS NOT FALSE", "IS UNKNOWN", "IS NOT UNKNOWN", "IS NULL", "IS NOT NULL"))
	case 4:
		return fmt.Sprintf("((%s) %s (%s))", g.boolean(depth-1), g.pick("=", "<>", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"), g.boolean(depth-1))
	}
	return g.leafBool()
}

func (g *gen) leafBool() string {
	switch g.r.IntN(9) {
	case 0:
		return g.compare("int")
	case 1:
		return g.compare("text")
	case 2:
		return g.compare("time")
	case 3:
		return g.between()
	case 4:
		return g.in()
	case 5:
		return fmt.Sprintf("%s %s (%s)", g.scalar("text"), g.pick("= ANY", "<> ALL", "<> ANY", "= ALL"), g.pick("subject.roles", "subject.groups"))
	case 6:
		return fmt.Sprintf("%s %s", g.scalar(g.pick("int", "text", "time", "bool", "array")), g.pick("IS NULL", "IS NOT NULL"))
	case 7:
		return g.pick("subject.contractor", "true", "false", "NULL", "NOT subject.contractor")
	}
	return fmt.Sprintf("%s %s %s", g.scalar("bool"), g.pick("=", "<>", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"), g.scalar("bool"))
}

func (g *gen) compare(kind string) string {
	ops := []string{"=", "<>", "<", "<=", ">", ">=", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"}
	if kind == "text" {
		ops = []string{"=", "<>", "!=", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"}
	}
	return fmt.Sprintf("%s %s %s", g.typed(kind), ops[g.r.IntN(len(ops))], g.scalar(kind))
}

func (g *gen) between() string {
	kind := g.pick("int", "time")
	form := g.pick("BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC", "NOT BETWEEN SYMMETRIC")
	return fmt.Sprintf("%s %s %s AND %s", g.typed(kind), form, g.scalar(kind), g.scalar(kind))
}

func (g *gen) in() string {
	kind := g.pick("int", "text", "time")
	items := make([]string, 1+g.r.IntN(3))
	for i := range items {
		items[i] = g.scalar(kind)
	}
	return fmt.Sprintf("%s %s (%s)", g.typed(kind), g.pick("IN", "NOT IN"), strings.Join(items, ", "))
}

// typed is an operand whose type PostgreSQL knows without context: with
// two untyped literals it would compare text, which Compile only tests
// for equality.
func (g *gen) typed(kind string) string {
	switch kind {
	case "int":
		return g.pick("context.hour", "context.weekday", "subject.clearance", "7", "3000000000", "'5'::integer", "NULL::integer")
	case "text":
		return g.pick("subject.id", "subject.tenant", "context.agent", "'alice'::text", "NULL::text")
	}
	return g.pick("context.time", "subject.hired", "timestamptz '2026-01-15T12:00:00Z'", "'2026-01-15T12:00:00.000001Z'::timestamptz")
}

// scalar is an attribute, a literal or NULL of the kind.
func (g *gen) scalar(kind string) string {
	if g.r.IntN(12) == 0 {
		return "NULL"
	}
	switch kind {
	case "int":
		return g.pick("context.hour", "context.weekday", "subject.clearance", strconv.Itoa(g.r.IntN(30)-3),
			"'"+strconv.Itoa(g.r.IntN(30))+"'", "'+7'", "'-0'", "3000000000", "-2147483648", "'5'::integer", "'12'::bigint", "NULL::integer")
	case "text":
		lit := "'" + strings.ReplaceAll(textPool[g.r.IntN(len(textPool))], "'", "''") + "'"
		return g.pick("subject.id", "subject.tenant", "context.agent", lit, lit, lit+"::text", "NULL::text")
	case "time":
		return g.pick("context.time", "subject.hired", "'2026-01-15T12:00:00Z'", "'2026-01-15T12:00:00.000001Z'",
			"'2026-01-15T13:00:00+01:00'", "timestamptz '2026-01-15T11:59:59.999999Z'", "'2026-01-14T12:00:00Z'::timestamptz")
	case "bool":
		return g.pick("subject.contractor", "true", "false", "(context.hour > 12)", "('admin' = ANY (subject.roles))")
	}
	return g.pick("subject.roles", "subject.groups")
}
