// Package pgcatalog reads what ragfence needs to know of a live database's
// tables from its catalog: which columns a table has, in order, and which of
// them compare with a value without looking operators up as the comparison
// runs. It is the one place that reads pg_attribute for them.
package pgcatalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// Querier is what the catalog is read through: *pgx.Conn, *pgxpool.Pool and
// pgx.Tx all are. Names resolve along the connection's search_path.
type Querier interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// arrayElements are the element types whose arrays compare by an equality
// and ordering PostgreSQL finds for them (a default btree operator class):
// an array of json, xml or point fails when compared, on the rows it meets.
var arrayElements = []string{
	"bool", "int2", "int4", "int8", "numeric", "float4", "float8", "text", "varchar", "bpchar", "name", "char",
	"uuid", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "bytea", "oid", "inet", "cidr",
	"jsonb", "money", "macaddr", "macaddr8", "bit", "varbit", "vector", "halfvec",
}

// columnsSQL lists the columns of each table in $1, in order, and whether
// each is comparable (rewrite.Column): a scalar base type (domains resolved
// once) or an array of an enum or of arrayElements; not a composite type, a
// domain over a domain, a range or multirange (a range of a composite
// compares its fields, looking their comparison up as it runs), or an array
// of anything else.
const columnsSQL = `
SELECT r.ord::int, a.attname::text,
       CASE
         WHEN bt.typtype IN ('c', 'd', 'p', 'r', 'm') THEN false
         WHEN bt.typcategory = 'A' THEN coalesce(et.typtype = 'e' OR et.typname = ANY ($2::text[]), false)
         ELSE true
       END
FROM unnest($1::text[]) WITH ORDINALITY AS r(tbl, ord)
JOIN pg_attribute a ON a.attrelid = to_regclass(r.tbl) AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et0 ON et0.oid = bt.typelem AND bt.typcategory = 'A'
LEFT JOIN pg_type et ON et.oid = CASE WHEN et0.typtype = 'd' THEN et0.typbasetype ELSE et0.oid END
ORDER BY r.ord, a.attnum`

// Tables returns the columns of tables (as written in a policy, qualified
// or not), in one round trip; a table that does not exist has none.
func Tables(ctx context.Context, q Querier, tables []string) ([][]rewrite.Column, error) {
	out := make([][]rewrite.Column, len(tables))
	b := &pgx.Batch{}
	b.Queue(columnsSQL, tables, arrayElements).Query(func(rows pgx.Rows) error {
		var (
			ord  int
			name string
			cmp  bool
		)
		_, err := pgx.ForEachRow(rows, []any{&ord, &name, &cmp}, func() error {
			out[ord-1] = append(out[ord-1], rewrite.Column{Name: name, Comparable: cmp})
			return nil
		})
		return err
	})
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("pgcatalog: read the columns of %v: %w", tables, err)
	}
	return out, nil
}

// Resources returns the columns of every protected table of set, by
// resource name, for rewrite.WithColumns.
func Resources(ctx context.Context, q Querier, set *policy.Set) (map[string][]rewrite.Column, error) {
	tables := make([]string, len(set.Names))
	for i, name := range set.Names {
		tables[i] = set.Resources[name].Table
	}
	cols, err := Tables(ctx, q, tables)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]rewrite.Column, len(tables))
	for i, name := range set.Names {
		if cols[i] != nil {
			out[name] = cols[i]
		}
	}
	return out, nil
}

// Catalog is a policy.Catalog over a live database, for policy.CheckCatalog.
type Catalog struct{ Q Querier }

var _ policy.Catalog = Catalog{}

// Columns returns the table's columns, or ok=false when it does not exist
// (a table without columns does not either, for a policy).
func (c Catalog) Columns(ctx context.Context, table string) ([]string, bool, error) {
	cols, err := Tables(ctx, c.Q, []string{table})
	if err != nil || cols[0] == nil {
		return nil, false, err
	}
	names := make([]string, len(cols[0]))
	for i, col := range cols[0] {
		names[i] = col.Name
	}
	return names, true, nil
}
