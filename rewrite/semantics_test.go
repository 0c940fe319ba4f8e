package rewrite_test

// Differential semantics: the rewriter must emit SQL that means what its
// input meant. For generated expressions over chunks' visible columns, the
// value ragfence returns on each permitted row must equal PostgreSQL's own
// evaluation of the original expression on that row, run as the owner on
// the permitted ids. The generator writes the shapes pg_query's deparser
// gets wrong ((a OR b) IS NOT NULL, (NOT a)::text, (-1)::text, ...) and
// random nestings with and without parentheses; a text PostgreSQL itself
// rejects is skipped.
//
// go test ./rewrite -run Semantics -rewrite.sem=3000 -rewrite.seed=N runs
// more expressions.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/rewrite"
)

var smCount = flag.Int("rewrite.sem", 250, "generated expressions in TestSemantics (each runs in both modes)")

// smFixed are the shapes issue 11 names, over chunks' columns.
var smFixed = []string{
	"(NOT (id = 'x01')) IS NULL",
	"(level > 1 OR num = 0) IS NOT NULL",
	"(level > 1 AND num = 0) IS NULL",
	"(NOT level > 1) IS NULL",
	"(NOT visibility = 'public') IN (false, NULL)",
	"(level > 1) BETWEEN false AND (num = 0)",
	"level BETWEEN 0 AND (num = 0)::int",
	"(level > 1 OR num = 0)::text",
	"(NOT level > 1)::text",
	"(-1)::text",
	"(- level)::text",
	"(level = 1) = (num > 0)",
	"(level = 1) = true",
	"level IS NULL IS NULL",
	"(level IS DISTINCT FROM num) IS TRUE",
	"(level > 1) IS NOT TRUE = (num = 0)",
	"CASE WHEN level > 1 THEN CASE WHEN num = 0 THEN 'a' ELSE 'b' END ELSE 'c' END",
	"content COLLATE \"C\" < 'tenant one z'",
	"(content || 'x') COLLATE \"C\"",
	"(ARRAY[level, num])[1]",
	"(ARRAY[content, owner_id])[2]",
	"(level, num) < (1, 2)",
	"ROW(level, num) IS NULL",
	"(level, content) = (1, 'tenant one alpha')",
	"NOT (level > 1 AND num = 0) = false",
	"(tags && ARRAY['a']) IS NOT NULL",
	"((level > 1) IS NULL)::text",
}

// smGen writes typed expressions over chunks' columns that are not masked.
type smGen struct{ r *rand.Rand }

// p parenthesizes a sub-expression, usually: without parentheses the text
// may mean something else, which is fine (PostgreSQL decides), or not
// parse, which is skipped.
func (g *smGen) p(s string) string { return pgParen(g.r, 0.75, s) }

func (g *smGen) boolean(d int) string {
	if d <= 0 || g.r.IntN(4) == 0 {
		return pgPick(g.r,
			"level > 1", "num = 0", "visibility = 'public'", "content LIKE 'tenant one%'",
			"owner_id IS NULL", "level IS NULL", "true", "false", "NULL::boolean",
			"tags && ARRAY['a']", "id < 'x08'", "num IS NOT DISTINCT FROM level", "level >= num",
		)
	}
	b, i, t := func() string { return g.p(g.boolean(d - 1)) }, func() string { return g.p(g.integer(d - 1)) }, func() string { return g.p(g.text(d - 1)) }
	switch g.r.IntN(22) {
	case 0, 1:
		return b() + " OR " + b()
	case 2, 3:
		return b() + " AND " + b()
	case 4, 5:
		return "NOT " + b()
	case 6:
		return b() + pgPick(g.r, " IS NULL", " IS NOT NULL")
	case 7:
		return b() + pgPick(g.r, " IS TRUE", " IS NOT TRUE", " IS FALSE", " IS NOT FALSE", " IS UNKNOWN", " IS NOT UNKNOWN")
	case 8:
		return b() + pgPick(g.r, " = ", " <> ") + b()
	case 9:
		return b() + pgPick(g.r, " IS DISTINCT FROM ", " IS NOT DISTINCT FROM ") + b()
	case 10:
		return i() + pgPick(g.r, " BETWEEN ", " NOT BETWEEN ") + i() + " AND " + i()
	case 11:
		return b() + " BETWEEN " + b() + " AND " + b()
	case 12:
		return b() + pgPick(g.r, " IN ", " NOT IN ") + "(" + b() + ", " + b() + ")"
	case 13:
		return i() + " IN (1, 2, NULL)"
	case 14:
		return "(" + i() + ", " + t() + ")" + pgPick(g.r, " = ", " <> ", " < ") + "(" + i() + ", " + t() + ")"
	case 15:
		return "ROW(" + i() + ", " + i() + ")" + pgPick(g.r, " IS NULL", " IS NOT NULL", " <= ROW(1, 1)")
	case 16:
		return "CASE WHEN " + b() + " THEN " + b() + " ELSE " + b() + " END"
	case 17:
		return "coalesce(" + b() + ", " + b() + ")"
	case 18:
		return t() + " COLLATE \"C\" " + pgPick(g.r, "<", ">=") + " " + t()
	case 19:
		return "(ARRAY[" + b() + ", " + b() + "])[" + fmt.Sprint(1+g.r.IntN(3)) + "]"
	case 20:
		return i() + pgPick(g.r, " < ", " = ", " >= ", " <> ") + i()
	default:
		return t() + pgPick(g.r, " = ", " LIKE ") + pgPick(g.r, "'tenant one alpha'", "'tenant%'", "'x0%'")
	}
}

func (g *smGen) integer(d int) string {
	if d <= 0 || g.r.IntN(3) == 0 {
		return pgPick(g.r, "level", "num", "length(content)", "1", "-1", "(-1)", "0", "NULL::int", "2")
	}
	b, i, t := func() string { return g.p(g.boolean(d - 1)) }, func() string { return g.p(g.integer(d - 1)) }, func() string { return g.p(g.text(d - 1)) }
	switch g.r.IntN(9) {
	case 0:
		return i() + pgPick(g.r, " + ", " - ", " * ") + i()
	case 1:
		return "- " + i()
	case 2:
		return "CASE WHEN " + b() + " THEN " + i() + " ELSE " + i() + " END"
	case 3:
		return "(ARRAY[" + i() + ", " + i() + ", " + i() + "])[" + i() + "]"
	case 4:
		return "coalesce(" + i() + ", " + i() + ")"
	case 5:
		return pgPick(g.r, "abs(", "greatest(0, ", "least(5, ") + i() + ")"
	case 6:
		return b() + "::int"
	case 7:
		return "char_length(" + t() + ")"
	default:
		return "CASE " + i() + " WHEN 1 THEN " + i() + " WHEN 0 THEN 10 END"
	}
}

func (g *smGen) text(d int) string {
	if d <= 0 || g.r.IntN(3) == 0 {
		return pgPick(g.r, "content", "visibility", "owner_id", "'abc'", "id", "tenant_id", "code", "NULL::text")
	}
	b, i, t := func() string { return g.p(g.boolean(d - 1)) }, func() string { return g.p(g.integer(d - 1)) }, func() string { return g.p(g.text(d - 1)) }
	switch g.r.IntN(9) {
	case 0:
		return b() + "::text"
	case 1:
		return "(NOT " + b() + ")::text"
	case 2:
		return i() + "::text"
	case 3:
		return pgPick(g.r, "lower(", "upper(") + t() + ")"
	case 4:
		return t() + " || " + t()
	case 5:
		return "coalesce(" + t() + ", " + t() + ")"
	case 6:
		return "CASE WHEN " + b() + " THEN " + t() + " ELSE " + t() + " END"
	case 7:
		return t() + " COLLATE \"C\""
	default:
		return "(ARRAY[" + t() + ", " + t() + "])[" + i() + "]"
	}
}

func (g *smGen) expr() string {
	d := 1 + g.r.IntN(3)
	switch g.r.IntN(5) {
	case 0:
		return g.integer(d)
	case 1:
		return g.text(d)
	default:
		return g.boolean(d)
	}
}

// smEnv is the semantics fixture: world A in one schema, its rewriter, and
// the subjects and their permitted ids (from the oracle).
type smEnv struct {
	pool     *pgxpool.Pool
	schema   string
	rw       *rewrite.Rewriter
	pol      *filter.Policy
	subjects []*pgSubject
	ids      [][]string
}

func smSetup(t *testing.T) *smEnv {
	t.Helper()
	pool, schema := testdb.Schema(t)
	w := pgBase()
	pgLoad(t, pool, schema, w)
	set, pol := pgNewPolicy(t, "semantics.yaml", pgPolicy)
	env := &smEnv{pool: pool, schema: schema, rw: rewrite.New(set, []string{schema, "public"}), pol: pol}
	for _, s := range pgSubjects() {
		if ids := w.visibleIDs(s); len(ids) >= 2 {
			env.subjects = append(env.subjects, s)
			env.ids = append(env.ids, ids)
		}
	}
	return env
}

// smOutcome classifies one (expression, subject, mode) comparison.
type smOutcome int

const (
	smSame smOutcome = iota
	smInvalid
	smRefused
	smDiffer
)

// check compares ragfence's value of expr on each permitted row with
// PostgreSQL's, in the select list and (for booleans) in WHERE.
func (env *smEnv) check(ctx context.Context, si int, mode rewrite.Mode, expr string) (smOutcome, string) {
	s, ids := env.subjects[si], env.ids[si]
	o := pgRunOpts{schema: env.schema, timeout: 3 * time.Second}
	want := pgExec(ctx, env.pool, "SELECT id, "+expr+" FROM chunks WHERE id = ANY($1)", []any{ids}, o)
	if want.err {
		return smInvalid, want.text
	}
	sql := "SELECT id, " + expr + " FROM chunks"
	got := pgRewriteRun(ctx, env.pool, env.rw, env.pol, s, mode, sql, o)
	if got.refused {
		return smRefused, got.text
	}
	if got.text != want.text {
		return smDiffer, fmt.Sprintf("%s, subject %s: %s\n  PostgreSQL on the permitted rows: %s\n  through ragfence: %s\n  rewritten: %s",
			pgModeName(mode), s, sql, niIndent(want.text), niIndent(got.text), got.sql)
	}
	// As a filter: a boolean's rows are those where PostgreSQL says TRUE.
	wantW := pgExec(ctx, env.pool, "SELECT id FROM chunks WHERE id = ANY($1) AND ("+expr+")", []any{ids}, o)
	if wantW.err {
		return smSame, "" // not a boolean
	}
	sqlW := "SELECT id FROM chunks WHERE " + expr
	gotW := pgRewriteRun(ctx, env.pool, env.rw, env.pol, s, mode, sqlW, o)
	if !gotW.refused && gotW.text != wantW.text {
		return smDiffer, fmt.Sprintf("%s, subject %s: %s\n  PostgreSQL on the permitted rows: %s\n  through ragfence: %s\n  rewritten: %s",
			pgModeName(mode), s, sqlW, niIndent(wantW.text), niIndent(gotW.text), gotW.sql)
	}
	return smSame, ""
}

func TestSemantics(t *testing.T) {
	t.Parallel()
	start := time.Now()
	env := smSetup(t)
	ctx := t.Context()
	if len(env.subjects) < 3 {
		t.Fatalf("fixture: only %d subjects see 2 rows or more", len(env.subjects))
	}
	modes := []rewrite.Mode{rewrite.Strict, rewrite.Trusted}

	// The shapes, by name, for every subject in trusted mode (and in
	// strict mode where strict accepts them).
	for _, expr := range smFixed {
	subjects:
		for si := range env.subjects {
			for _, mode := range modes {
				out, msg := env.check(ctx, si, mode, expr)
				switch {
				case out == smInvalid:
					t.Errorf("fixed expression %s: PostgreSQL rejects it: %s", expr, msg)
				case out == smDiffer:
					t.Errorf("fixed expression %s: ragfence changes its meaning\n  %s", expr, msg)
				case out == smRefused && mode == rewrite.Trusted:
					t.Errorf("fixed expression %s: trusted mode refuses valid SQL instead of emitting it faithfully: %s", expr, msg)
				default:
					continue
				}
				break subjects // one report per expression
			}
		}
	}

	seed := pgSeedOf(t)
	g := &smGen{r: rand.New(rand.NewPCG(seed, 12))}
	var counts [2][4]int
	failures := 0
	report := func(format string, args ...any) {
		if failures++; failures <= 10 {
			t.Errorf(format, args...)
		}
	}
	seen := map[string]bool{}
	for range *smCount {
		expr := g.expr()
		for seen[expr] {
			expr = g.expr()
		}
		seen[expr] = true
		si := g.r.IntN(len(env.subjects))
		for _, mode := range modes {
			out, msg := env.check(ctx, si, mode, expr)
			counts[mode][out]++
			switch {
			case out == smDiffer:
				report("ragfence changes the meaning of %s\n  %s", expr, msg)
			case out == smRefused && mode == rewrite.Trusted:
				report("trusted mode refuses valid SQL instead of emitting it faithfully: SELECT id, %s FROM chunks\n  %s", expr, msg)
			}
			if out == smInvalid {
				break // PostgreSQL rejects it in both modes alike
			}
		}
	}
	if failures > 10 {
		t.Errorf("... %d failures in all", failures)
	}
	for _, mode := range modes {
		c := counts[mode]
		t.Logf("%s: %d same, %d rejected by PostgreSQL, %d refused, %d changed meaning", pgModeName(mode), c[smSame], c[smInvalid], c[smRefused], c[smDiffer])
	}
	t.Logf("%d expressions, %d subjects; %v", *smCount, len(env.subjects), time.Since(start).Round(time.Millisecond))

	// The run must not pass vacuously: most expressions are valid SQL, and
	// strict mode accepts a healthy share of them.
	st, tr := counts[rewrite.Strict], counts[rewrite.Trusted]
	valid := *smCount - st[smInvalid]
	if *smCount >= 50 {
		if valid < *smCount/2 {
			t.Errorf("only %d of %d generated expressions are valid SQL", valid, *smCount)
		}
		if st[smSame]+st[smDiffer] < valid/4 {
			t.Errorf("strict mode ran only %d of %d valid expressions", st[smSame]+st[smDiffer], valid)
		}
		if tr[smSame]+tr[smDiffer]+tr[smRefused] < valid {
			t.Errorf("trusted mode checked only %d of %d valid expressions", tr[smSame]+tr[smDiffer]+tr[smRefused], valid)
		}
	}
}

// pfRules are policy conditions whose meaning the deparser can change:
// each must grant exactly the rows PostgreSQL says it grants.
var pfRules = []string{
	"(visibility = 'public' OR visibility = 'group') IS NOT NULL AND owner_id = subject.id",
	"(visibility = 'public' AND level > 1) IS NULL OR owner_id = subject.id",
	"(NOT visibility = 'public') IS NOT TRUE AND owner_id = subject.id",
	"(visibility IN ('public', 'group')) IS NOT FALSE AND owner_id = subject.id",
	"(owner_id = subject.id) = (visibility = 'public')",
	"(level > 0) BETWEEN false AND (owner_id = subject.id)",
	"(NOT owner_id = subject.id) IN (false)",
	"owner_id = subject.id AND (level IS NULL) IS NULL IS NOT NULL",
}

// TestPolicyConditionFaithful checks that a policy rule grants exactly the
// rows PostgreSQL's evaluation of the rule grants: the rule as written,
// evaluated directly with the subject's values bound.
func TestPolicyConditionFaithful(t *testing.T) {
	t.Parallel()
	pool, schema := testdb.Schema(t)
	pgLoad(t, pool, schema, pgBase())
	ctx := t.Context()
	o := pgRunOpts{schema: schema, timeout: 3 * time.Second}
	subjects := pgSubjects()
	for i, rule := range pfRules {
		yaml := fmt.Sprintf(`
version: 1
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    allow:
      - name: rule
        when: %q
`, rule)
		set, pol := pgNewPolicy(t, fmt.Sprintf("rule%d.yaml", i), yaml)
		rw := rewrite.New(set, []string{schema, "public"})
		direct := "SELECT id FROM chunks WHERE tenant_id = $1 AND (" + strings.ReplaceAll(rule, "subject.id", "$2::text") + ")"
		nonEmpty := 0
		for _, s := range subjects {
			want := pgExec(ctx, pool, direct, []any{s.subject.Tenant, s.subject.ID}, o)
			if want.err {
				t.Fatalf("rule %s: direct evaluation fails: %s", rule, want.text)
			}
			plain := *s.subject
			plain.Attributes = nil
			got := pgRewriteRun(ctx, pool, rw, pol, &pgSubject{label: s.label, subject: &plain}, rewrite.Trusted, "SELECT id FROM chunks", o)
			if got.text != want.text {
				t.Errorf("rule %q grants other rows than it says, subject %s\n  PostgreSQL: %s\n  ragfence: %s\n  rewritten: %s",
					rule, s, niIndent(want.text), niIndent(got.text), got.sql)
			}
			if want.rows > 0 {
				nonEmpty++
			}
		}
		if nonEmpty == 0 {
			t.Errorf("rule %q grants nothing to any subject: the comparison is vacuous", rule)
		}
	}
}
