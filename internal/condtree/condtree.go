// Package condtree hands ragfence's own packages the parse tree of a
// policy.Condition, which package policy keeps unexported so that
// pg_query's types are no part of its public API.
package condtree

import pg "github.com/pganalyze/pg_query_go/v5"

// Of returns the parse tree of a *policy.Condition (nil for nil), set by
// package policy when it is initialised. Callers must not modify the tree:
// clone it first.
var Of func(cond any) *pg.Node
