// Package filter compiles a policy, for one request, into a SQL WHERE
// fragment with every value bound as an argument.
//
// Compile once, bind per request: Compile turns every rule of a
// policy.Set into a template at load; Policy.Fragment picks the templates a
// request's shape needs (its agent, and which attributes it lacks), caches
// that choice, and binds the subject's and context's values. A cached
// fragment costs about a microsecond (BenchmarkFragmentCached).
//
// A Fragment implements squirrel.Sqlizer (? placeholders, for
// squirrel.Dollar) and renders $n placeholders with SQL(first). Its text
// depends only on the policy and the request's shape, never on values, so
// statements built from it can be cached and prepared.
//
// A fragment reads
//
//	tenant = $subject.tenant AND (allow rules) AND NOT (deny rules) [AND grant]
//
// It is meant for a WHERE clause, where NULL excludes a row: a condition that
// evaluates to NULL grants nothing and, in a deny rule, denies. When no row
// can be visible (no allow rule applies, or a deny rule lacks an attribute)
// the fragment is FALSE and Outcome is AlwaysDenied. Requests the filter
// cannot serve safely fail with an *Error whose Code callers can branch on;
// an agent without a grant is ErrAgentNotGranted, never an empty result.
//
// Masked columns are selected through Fragment.Column, which reads NULL
// unless the mask's condition holds for the row.
package filter
