// Package rowjson renders PostgreSQL rows as JSON objects by one rule (Rule),
// for every front door that shows a statement's rows: `ragfence query`
// prints them one per line, an MCP tool answers an array of them.
//
// The rule starts from PostgreSQL's own text output, so a connection must
// ask for it (TextOutput, TextOutputPool), and it needs to know the
// database's array, domain and vector types (LoadSession).
package rowjson

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Rule is how a value maps to JSON; `ragfence query --help` and the README
// say the same.
const Rule = `Each row is one JSON object, its keys the column names in column order (a
repeated name repeats). PostgreSQL renders every value (its text output, with
DateStyle ISO, IntervalStyle postgres, extra_float_digits 1, bytea_output hex,
in the session's TimeZone); a value becomes JSON only where that is exact:
  NULL                               null
  smallint, integer, bigint, oid     a number
  numeric, real, double precision    a number, in PostgreSQL's digits (all of numeric's,
                                     the shortest exact ones of a float); NaN, Infinity
                                     and -Infinity as the strings "NaN", "Infinity",
                                     "-Infinity"
  boolean                            true or false
  json, jsonb                        the JSON itself, on one line (a JSON null and SQL
                                     NULL both print null)
  vector, halfvec (pgvector)         an array of numbers
  an array of any type               an array (nested for each dimension), its elements
                                     by these rules; one whose lower bound is not 1 is
                                     a string, e.g. "[0:1]={1,2}"
  a domain                           as its base type
  anything else                      a string holding the text PostgreSQL prints, e.g.
                                     interval "1 day 02:00:00", time "12:34:56", bytea
                                     "\\x00ff", timestamp "infinity", a record "(1,x)",
                                     a range "[1,5)", sparsevec "{1:1.5}/3"`

// textOutputParams are the session settings Rule is stated in; they
// replace any the connection string sets.
var textOutputParams = map[string]string{
	"DateStyle":          "ISO, MDY",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "1",
	"bytea_output":       "hex",
}

// TextOutput configures a connection whose results come back in
// PostgreSQL's text format, in the settings Rule is stated in.
// QueryExecModeExec asks for every column as text (the other modes ask for
// binary wherever pgx has a codec) and sends arguments as text of a type
// the server infers.
func TextOutput(cfg *pgx.ConnConfig) {
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for name, v := range textOutputParams {
		for k := range cfg.RuntimeParams {
			if strings.EqualFold(k, name) {
				delete(cfg.RuntimeParams, k)
			}
		}
		cfg.RuntimeParams[name] = v
	}
}

// TextOutputPool is TextOutput for every connection of a pool.
func TextOutputPool(cfg *pgxpool.Config) { TextOutput(cfg.ConnConfig) }

// Querier is what LoadSession reads from: *pgx.Conn, pgx.Tx, *pgxpool.Conn
// and *pgxpool.Pool all are (a pool's connections must share one
// search_path for the answer to hold for the next statement).
type Querier interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Types is what Rule needs to know of a database's types beyond the
// built-in scalars: which are arrays (of what, with what delimiter),
// domains (over what) and pgvector's dense vectors. The zero value knows
// none (arrays then print as strings); LoadSession reads them.
type Types struct {
	arrays  map[uint32]arrayType
	domains map[uint32]uint32
	vectors map[uint32]bool
}

type arrayType struct {
	elem  uint32
	delim byte
}

// typesSQL lists every array type (the array of e is e.typarray, which
// excludes int2vector and oidvector: they print as "1 2"), every domain and
// pgvector's vector and halfvec.
const typesSQL = `SELECT e.typarray::int8, 'a', e.oid::int8, e.typdelim::text FROM pg_catalog.pg_type e WHERE e.typarray <> 0
UNION ALL SELECT t.oid::int8, 'd', t.typbasetype::int8, '' FROM pg_catalog.pg_type t WHERE t.typtype = 'd'
UNION ALL SELECT t.oid::int8, 'v', 0, '' FROM pg_catalog.pg_type t
	JOIN pg_catalog.pg_extension x ON x.extnamespace = t.typnamespace
	WHERE x.extname = 'vector' AND t.typname IN ('vector', 'halfvec')`

// LoadSession reads, in one round trip, the search_path a rewriter must
// resolve names with on q and the database's types.
func LoadSession(ctx context.Context, q Querier) ([]string, *Types, error) {
	types := &Types{arrays: map[uint32]arrayType{}, domains: map[uint32]uint32{}, vectors: map[uint32]bool{}}
	var path []string
	b := &pgx.Batch{}
	b.Queue("SELECT pg_catalog.current_schemas(false)::text[]").QueryRow(func(r pgx.Row) error { return r.Scan(&path) })
	b.Queue(typesSQL).Query(func(rows pgx.Rows) error {
		var oid, ref int64
		var kind, delim string
		_, err := pgx.ForEachRow(rows, []any{&oid, &kind, &ref, &delim}, func() error {
			types.add(uint32(oid), kind, uint32(ref), delim)
			return nil
		})
		return err
	})
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	return path, types, nil
}

func (t *Types) add(oid uint32, kind string, ref uint32, delim string) {
	switch kind {
	case "a":
		t.arrays[oid] = arrayType{elem: ref, delim: (delim + ",")[0]}
	case "d":
		t.domains[oid] = ref
	case "v":
		t.vectors[oid] = true
	}
}

// CheckText refuses columns that came back in binary format: Rule starts
// from PostgreSQL's text, which only a TextOutput connection asks for.
func CheckText(fields []pgconn.FieldDescription) error {
	for _, f := range fields {
		if f.Format != pgtype.TextFormatCode {
			return fmt.Errorf("column %s came back in binary format; the JSON rules need PostgreSQL's text", f.Name)
		}
	}
	return nil
}

// WriteRows writes each of rows as one JSON object on a line of its own,
// and closes rows.
func (t *Types) WriteRows(out io.Writer, rows pgx.Rows) error {
	defer rows.Close()
	w := bufio.NewWriter(out)
	defer w.Flush()
	fields := rows.FieldDescriptions()
	if err := CheckText(fields); err != nil {
		return err
	}
	var line []byte
	for rows.Next() {
		line = append(t.AppendRow(line[:0], fields, rows.RawValues()), '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AppendRow appends one row, its values in PostgreSQL's text format (nil
// for NULL) as pgx.Rows.RawValues gives them, as a JSON object by Rule.
// The caller checks the fields with CheckText first.
func (t *Types) AppendRow(b []byte, fields []pgconn.FieldDescription, vals [][]byte) []byte {
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.Name)
		b = append(b, ':')
		if vals[i] == nil {
			b = append(b, "null"...)
		} else {
			b = t.appendValue(b, f.DataTypeOID, vals[i])
		}
	}
	return append(b, '}')
}
