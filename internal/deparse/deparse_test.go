package deparse

import (
	"errors"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
)

// The shapes pg_query's deparser writes with another meaning, and what
// Statement must write instead.
func TestStatementKeepsMeaning(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT (a OR b) IS NOT NULL", "SELECT (a OR b) IS NOT NULL"},
		{"SELECT (a AND b) IS NULL", "SELECT (a AND b) IS NULL"},
		{"SELECT (NOT a) IS NULL", "SELECT (NOT a) IS NULL"},
		{"SELECT (NOT a) IN (true, false)", "SELECT (NOT a) IN (true, false)"},
		{"SELECT x BETWEEN a AND (b = c)", "SELECT x BETWEEN a AND (b = c)"},
		{"SELECT (a OR b)::text", "SELECT (a OR b)::text"},
		{"SELECT (NOT a)::text", "SELECT (NOT a)::text"},
		{"SELECT (-1)::text", "SELECT (-1)::text"},
		{"SELECT (NOT (id = 'c01')) IS NULL FROM t", "SELECT (NOT id = 'c01') IS NULL FROM t"},
		{"SELECT (1).a", "SELECT (1).a"},
		{"SELECT (t.c).f FROM t", "SELECT (t.c).f FROM t"},
		{"SELECT (array_agg(x))[1] FROM t", "SELECT (array_agg(x))[1] FROM t"},
		{"SELECT (a = b) = c", "SELECT (a = b) = c"},
		{"SELECT a IS NULL IS NULL", "SELECT a IS NULL IS NULL"},
		{"SELECT (a IS DISTINCT FROM b) IS TRUE", "SELECT (a IS DISTINCT FROM b) IS TRUE"},
		{"SELECT (a || b) COLLATE \"C\"", "SELECT (a || b) COLLATE \"C\""},
		{"SELECT (a OR b) IN (SELECT true)", "SELECT (a OR b) IN (SELECT true)"},
		// Text the deparser writes right stays as it is.
		{"SELECT a FROM t WHERE a = 1 AND (b = 2 OR c = 3)", "SELECT a FROM t WHERE a = 1 AND (b = 2 OR c = 3)"},
		{"SELECT id FROM chunks ORDER BY embedding <=> $1 LIMIT 5", "SELECT id FROM chunks ORDER BY embedding <=> $1 LIMIT 5"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			tree, err := pg.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			before := proto.Clone(tree)
			got, err := Statement(tree)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !proto.Equal(before, tree) {
				t.Error("Statement modified its argument")
			}
			assertSameTree(t, tc.in, got)
		})
	}
}

// The plain deparser does get these wrong: if it stops doing so, the test
// above no longer shows that Statement repairs anything.
func TestDeparserStillDropsParentheses(t *testing.T) {
	tree, err := pg.Parse("SELECT (a OR b) IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pg.Deparse(tree)
	if err != nil {
		t.Fatal(err)
	}
	if sameTree(out, normalized(tree)) {
		t.Skipf("pg_query now deparses %q faithfully", out)
	}
}

func TestExpr(t *testing.T) {
	tree, err := pg.Parse("SELECT (visibility = 'public' OR visibility = 'group') IS NOT NULL AND owner_id = $1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Expr(tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val)
	if err != nil {
		t.Fatal(err)
	}
	want := "(visibility = 'public' OR visibility = 'group') IS NOT NULL AND owner_id = $1"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// A statement that already uses a placeholder's name cannot be confused
// with one: either the text is faithful or the call fails.
func TestPlaceholderNameInInput(t *testing.T) {
	in := "SELECT (a OR ragfence_paren_0) IS NOT NULL, 'ragfence_paren_0'"
	tree, err := pg.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Statement(tree)
	if err != nil {
		if !errors.Is(err, ErrUnfaithful) {
			t.Fatalf("want ErrUnfaithful, got %v", err)
		}
		return
	}
	assertSameTree(t, in, got)
}

func assertSameTree(t *testing.T, in, out string) {
	t.Helper()
	a, err := pg.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pg.Parse(out)
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, out)
	}
	if !proto.Equal(normalized(a), normalized(b)) {
		t.Errorf("output reads as another tree:\nin  %s\nout %s", in, out)
	}
}
