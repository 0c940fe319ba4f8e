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
//
// # Wrap
//
// Wrap puts the policy in front of a *pgxpool.Pool, *pgx.Conn or pgx.Tx:
// every statement is rewritten for the subject in the context (see package
// rewrite), and runs with
//
//	jit = off                           JIT compiles the policy's cost, not the work: 150 UNION ALL
//	                                    branches over a protected table took 10 s with it, 0.16 s without
//	statement_timeout                   DefaultStatementTimeout, or WithStatementTimeout(d);
//	                                    d <= 0 keeps the connection's own
//	hnsw.iterative_scan = strict_order  a selective policy cannot make an HNSW scan return fewer
//	                                    rows than the subject may see, nor out of the index's order
//
// Each statement goes out as one pgx batch of three, in one round trip:
// set_config(..., true) for the settings (saving the values they replace),
// the statement, and a statement that restores the saved values. (In pgx's
// default mode a statement new to the connection is first prepared, in one
// more round trip, as pgx's own Query does.) Outside a
// transaction (a pool or a connection) the three run in one implicit
// transaction and the settings end with it. Inside the caller's transaction
// (a pgx.Tx, or a connection after BEGIN) they apply to Wrap's statement
// only: afterwards the transaction has the values it had, its own SET LOCALs
// included, so the caller's later statements run as they would have. A
// statement that fails, a timeout included, aborts the caller's transaction
// as any failed statement does; the rollback ends the settings. A
// statement cancelled by the timeout fails with PostgreSQL's query_canceled
// error (*pgconn.PgError, SQLSTATE 57014).
//
// The iterative scan is skipped only where pgvector is loaded but older
// than 0.8, whose reserved "hnsw" prefix makes the name an error. Where
// pgvector's library is not loaded yet in the session, or not installed,
// the value is a placeholder setting: pgvector >= 0.8 adopts it when the
// statement loads the library, and without pgvector it does nothing. The
// only traces Wrap leaves in a session are placeholder settings: that one,
// empty outside Wrap's statements, and ragfence.saved_*, which hold the
// saved values. The settings and the restore are constant SQL with the
// timeout bound as a value, so pgx prepares them once per connection.
//
// Query's rows hold the connection until they are closed or read to the
// end, as pgx's do; QueryRow's until Scan.
package filter
