// Package filter compiles a policy, for one subject, into a SQL WHERE
// fragment with every value bound as an argument, and wraps pgx so Go code
// gets filtered queries in a few lines.
package filter
