// Package dollar numbers the ? placeholders of squirrel-built SQL as
// PostgreSQL's $n, for SQL placed into a statement that already binds
// arguments of its own (squirrel's Dollar format restarts at $1 on every
// ToSql).
package dollar

import (
	"strconv"
	"strings"
)

// Number turns each ? of sql into $first, $first+1, ..., and each ??
// (squirrel's escape for a literal ?, such as jsonb's ? operator) back into
// a ?.
func Number(sql string, first int) string {
	var b strings.Builder
	b.Grow(len(sql) + 8)
	n := first
	for i := 0; i < len(sql); i++ {
		switch {
		case sql[i] != '?':
			b.WriteByte(sql[i])
		case i+1 < len(sql) && sql[i+1] == '?':
			b.WriteByte('?')
			i++
		default:
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			n++
		}
	}
	return b.String()
}
