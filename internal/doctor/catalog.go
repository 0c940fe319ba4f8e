package doctor

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier is what Check needs of a database: *pgx.Conn, *pgxpool.Pool and
// pgx.Tx all have it. Check only reads the system catalogs.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// table is what the catalogs say about one table, found by name as the
// connection's search path resolves it.
type table struct {
	// Name is the table as SQL should name it: schema-qualified only when
	// the search path would not find it, quoted when needed (regclass).
	Name      string
	Kind      string  // pg_class.relkind: r table, p partitioned table, ...
	Reltuples float64 // -1 when never vacuumed, analyzed or indexed
	// Analyzed is true when ANALYZE (manual or autovacuum) ran, or the
	// table has column statistics (which survive a statistics reset).
	Analyzed bool
	Columns  map[string]column
	Order    []string // column names in table order
	Indexes  []index
}

type column struct {
	Quoted   string // quote_ident(name)
	Type     string // format_type, e.g. vector(384), text[]
	TypeName string // pg_type.typname of the column's type, e.g. vector, _text
	Category string // pg_type.typcategory: A array, S string, N numeric, U user, ...
}

type index struct {
	Name      string
	Method    string   // pg_am.amname: btree, gin, hnsw, ivfflat, ...
	Valid     bool     // false after a failed CREATE INDEX CONCURRENTLY
	Partial   bool     // has a WHERE predicate
	Columns   []string // key columns; "" for an expression
	OpClasses []string // operator class of each key column
}

// readTable returns the table named name, or nil when it does not exist.
func readTable(ctx context.Context, db Querier, name string) (*table, error) {
	rows, err := db.Query(ctx, `
		SELECT c.oid::regclass::text, c.relkind::text, c.reltuples::float8,
		       s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL
		       OR EXISTS (SELECT 1 FROM pg_stats p WHERE p.schemaname = n.nspname AND p.tablename = c.relname)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
		WHERE c.oid = to_regclass($1)`, name)
	if err != nil {
		return nil, err
	}
	t, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (*table, error) {
		t := &table{Columns: map[string]column{}}
		return t, row.Scan(&t.Name, &t.Kind, &t.Reltuples, &t.Analyzed)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := readColumns(ctx, db, name, t); err != nil {
		return nil, err
	}
	if t.Indexes, err = readIndexes(ctx, db, name); err != nil {
		return nil, err
	}
	return t, nil
}

func readColumns(ctx context.Context, db Querier, name string, t *table) error {
	rows, err := db.Query(ctx, `
		SELECT a.attname::text, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod),
		       ty.typname::text, ty.typcategory::text
		FROM pg_attribute a
		JOIN pg_type ty ON ty.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, name)
	if err != nil {
		return err
	}
	var n string
	var c column
	_, err = pgx.ForEachRow(rows, []any{&n, &c.Quoted, &c.Type, &c.TypeName, &c.Category}, func() error {
		t.Columns[n] = c
		t.Order = append(t.Order, n)
		return nil
	})
	return err
}

func readIndexes(ctx context.Context, db Querier, name string) ([]index, error) {
	rows, err := db.Query(ctx, `
		SELECT i.indexrelid::regclass::text, am.amname::text, i.indisvalid, i.indpred IS NOT NULL,
		       ARRAY(SELECT coalesce(a.attname::text, '')
		             FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord),
		       ARRAY(SELECT coalesce(o.opcname::text, '')
		             FROM unnest(i.indclass::oid[]) WITH ORDINALITY k(opc, ord)
		             LEFT JOIN pg_opclass o ON o.oid = k.opc ORDER BY k.ord)
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_am am ON am.oid = ic.relam
		WHERE i.indrelid = to_regclass($1)
		ORDER BY 1`, name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (index, error) {
		var ix index
		return ix, row.Scan(&ix.Name, &ix.Method, &ix.Valid, &ix.Partial, &ix.Columns, &ix.OpClasses)
	})
}

// pgvector is the installed and the available version of the extension;
// Installed is "" when it is not installed in this database.
type pgvector struct {
	Installed, Available string
}

func readPgvector(ctx context.Context, db Querier) (pgvector, error) {
	rows, err := db.Query(ctx, `
		SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'vector'), ''),
		       coalesce((SELECT default_version FROM pg_available_extensions WHERE name = 'vector'), '')`)
	if err != nil {
		return pgvector{}, err
	}
	return pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (pgvector, error) {
		var v pgvector
		return v, row.Scan(&v.Installed, &v.Available)
	})
}

// catalog adapts the tables a Check has read to policy.Catalog, so
// policy.CheckCatalog judges the columns the same way `policy check --db`
// does.
type catalog struct {
	db     Querier
	tables map[string]*table // by name as the policy writes it; nil: absent
}

func newCatalog(db Querier) *catalog {
	return &catalog{db: db, tables: map[string]*table{}}
}

// table reads a table once per Check.
func (c *catalog) table(ctx context.Context, name string) (*table, error) {
	if t, ok := c.tables[name]; ok {
		return t, nil
	}
	t, err := readTable(ctx, c.db, name)
	if err != nil {
		return nil, fmt.Errorf("doctor: read table %s: %w", name, err)
	}
	c.tables[name] = t
	return t, nil
}

// Columns implements policy.Catalog.
func (c *catalog) Columns(ctx context.Context, name string) ([]string, bool, error) {
	t, err := c.table(ctx, name)
	if err != nil || t == nil {
		return nil, false, err
	}
	return t.Order, true, nil
}
