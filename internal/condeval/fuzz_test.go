package condeval_test

import (
	"testing"
	"time"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// FuzzCompile: whatever parses, Compile refuses or compiles, and what it
// compiles evaluates without panicking, on missing and on present values.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"context.hour NOT BETWEEN 7 AND 19", "'admin' = ANY (subject.roles)", "subject.id IN ('a', NULL)",
		"(subject.contractor IS NOT TRUE) IS DISTINCT FROM (context.hour > '3')", "NULL IS NULL",
		"context.time > timestamptz '2026-01-01T00:00:00Z'", "'x' IS NOT NULL", "NOT (NULL = ANY (subject.groups))",
		"subject.clearance BETWEEN SYMMETRIC 3000000000 AND '-5'", "lower(subject.id) = 'x'", "1 + 1 = 2",
	} {
		f.Add(s)
	}
	full := env{
		"subject.id": text("a"), "subject.roles": texts("a", ""), "subject.groups": texts(), "subject.clearance": integer(3),
		"subject.contractor": boolean(true), "context.hour": integer(7), "context.time": when(time.Unix(0, 0)),
		"subject.hired": when(time.Now()), "context.agent": text(""), "subject.tenant": text("t"), "context.weekday": integer(0),
	}
	f.Fuzz(func(t *testing.T, s string) {
		tree, err := pg.Parse("SELECT " + s)
		if err != nil || len(tree.Stmts) != 1 {
			return
		}
		sel := tree.Stmts[0].Stmt.GetSelectStmt()
		if sel == nil || len(sel.TargetList) != 1 || sel.TargetList[0].GetResTarget().GetVal() == nil {
			return
		}
		p, errs := compileNode(sel.TargetList[0].GetResTarget().GetVal())
		if len(errs) > 0 {
			return
		}
		p.Eval(env{}.values(p))
		p.Eval(full.values(p))
	})
}
