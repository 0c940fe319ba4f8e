package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// queryOutputRule is how `ragfence query` maps a value to JSON; the help and
// the README say the same.
const queryOutputRule = `Each row is one JSON object, its keys the column names in column order (a
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

// textOutputParams are the session settings the rule is stated in; they
// replace any the connection string sets.
var textOutputParams = map[string]string{
	"DateStyle":          "ISO, MDY",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "1",
	"bytea_output":       "hex",
}

// textOutput configures a connection whose results come back in PostgreSQL's
// text format: QueryExecModeExec asks for every column as text (the other
// modes ask for binary wherever pgx has a codec) and sends arguments as text
// of a type the server infers, as the command documents.
func textOutput(cfg *pgx.ConnConfig) {
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	for name, v := range textOutputParams {
		for k := range cfg.RuntimeParams {
			if strings.EqualFold(k, name) {
				delete(cfg.RuntimeParams, k)
			}
		}
		cfg.RuntimeParams[name] = v
	}
}

// pgTypes is what the rule needs to know of the database's types, beyond
// the built-in scalars: which are arrays (of what, with what delimiter),
// domains (over what) and pgvector's dense vectors.
type pgTypes struct {
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

// loadSession reads, in one round trip, the search_path the rewriter
// resolves names with and the database's types.
func loadSession(ctx context.Context, conn *pgx.Conn) ([]string, *pgTypes, error) {
	types := &pgTypes{arrays: map[uint32]arrayType{}, domains: map[uint32]uint32{}, vectors: map[uint32]bool{}}
	var path []string
	b := &pgx.Batch{}
	b.Queue("SELECT pg_catalog.current_schemas(false)::text[]").QueryRow(func(r pgx.Row) error { return r.Scan(&path) })
	b.Queue(typesSQL).Query(func(rows pgx.Rows) error {
		var oid, ref int64
		var kind, delim string
		_, err := pgx.ForEachRow(rows, []any{&oid, &kind, &ref, &delim}, func() error {
			switch kind {
			case "a":
				types.arrays[uint32(oid)] = arrayType{elem: uint32(ref), delim: (delim + ",")[0]}
			case "d":
				types.domains[uint32(oid)] = uint32(ref)
			case "v":
				types.vectors[uint32(oid)] = true
			}
			return nil
		})
		return err
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	return path, types, nil
}

// printRows writes each row as one JSON object on a line of its own.
func printRows(out io.Writer, rows pgx.Rows, types *pgTypes) error {
	defer rows.Close()
	w := bufio.NewWriter(out)
	defer w.Flush()
	fields := rows.FieldDescriptions()
	for _, f := range fields {
		if f.Format != pgtype.TextFormatCode {
			return fmt.Errorf("column %s came back in binary format; the JSON rules need PostgreSQL's text", f.Name)
		}
	}
	var line []byte
	for rows.Next() {
		vals := rows.RawValues()
		line = append(line[:0], '{')
		for i, f := range fields {
			if i > 0 {
				line = append(line, ',')
			}
			line = appendJSONString(line, f.Name)
			line = append(line, ':')
			if vals[i] == nil {
				line = append(line, "null"...)
			} else {
				line = types.appendValue(line, f.DataTypeOID, vals[i])
			}
		}
		line = append(line, '}', '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return rows.Err()
}

// appendValue appends text, a non-NULL value of type oid in PostgreSQL's
// text format, as JSON by queryOutputRule.
func (t *pgTypes) appendValue(b []byte, oid uint32, text []byte) []byte {
	for range 32 { // domains over domains, bounded
		base, ok := t.domains[oid]
		if !ok {
			break
		}
		oid = base
	}
	switch {
	case oid == pgtype.Int2OID || oid == pgtype.Int4OID || oid == pgtype.Int8OID || oid == pgtype.OIDOID:
		if isJSONNumber(text) {
			return append(b, text...)
		}
	case oid == pgtype.NumericOID || oid == pgtype.Float4OID || oid == pgtype.Float8OID:
		// NaN, Infinity and -Infinity fail the test and become strings.
		if isJSONNumber(text) {
			return append(b, text...)
		}
	case oid == pgtype.BoolOID:
		switch string(text) {
		case "t":
			return append(b, "true"...)
		case "f":
			return append(b, "false"...)
		}
	case oid == pgtype.JSONOID || oid == pgtype.JSONBOID || t.vectors[oid]:
		// Compact keeps every key, duplicates included, and every number's
		// digits; it puts a json value that spans lines on one.
		var buf bytes.Buffer
		if json.Compact(&buf, text) == nil {
			return append(b, buf.Bytes()...)
		}
	default:
		if a, ok := t.arrays[oid]; ok {
			if v, ok := parseArray(text, a.delim); ok {
				return t.appendArray(b, a.elem, v)
			}
		}
	}
	return appendJSONString(b, string(text))
}

func (t *pgTypes) appendArray(b []byte, elem uint32, v arrayValue) []byte {
	switch {
	case v.list != nil:
		b = append(b, '[')
		for i, e := range *v.list {
			if i > 0 {
				b = append(b, ',')
			}
			b = t.appendArray(b, elem, e)
		}
		return append(b, ']')
	case v.null:
		return append(b, "null"...)
	default:
		return t.appendValue(b, elem, v.text)
	}
}

// arrayValue is a parsed array or sub-array (list), or one element: NULL or
// its text.
type arrayValue struct {
	list *[]arrayValue
	null bool
	text []byte
}

// parseArray parses array_out's text: {elem,elem,...} where an element is a
// sub-array, "quoted" (with \ escaping the next byte), NULL, or any other
// run of bytes up to the delimiter or the closing brace. It refuses the
// [lower:upper]= prefix of arrays whose lower bound is not 1, and anything
// else it does not expect.
func parseArray(s []byte, delim byte) (arrayValue, bool) {
	p := arrayParser{s: s, delim: delim}
	if len(s) == 0 || s[0] != '{' {
		return arrayValue{}, false
	}
	v, ok := p.value()
	return v, ok && p.i == len(s)
}

type arrayParser struct {
	s     []byte
	i     int
	delim byte
}

func (p *arrayParser) value() (arrayValue, bool) {
	if p.i >= len(p.s) {
		return arrayValue{}, false
	}
	switch p.s[p.i] {
	case '{':
		p.i++
		list := []arrayValue{}
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return arrayValue{list: &list}, true
		}
		for {
			v, ok := p.value()
			if !ok || p.i >= len(p.s) {
				return arrayValue{}, false
			}
			list = append(list, v)
			c := p.s[p.i]
			p.i++
			if c == '}' {
				return arrayValue{list: &list}, true
			}
			if c != p.delim {
				return arrayValue{}, false
			}
		}
	case '"':
		p.i++
		text := []byte{}
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			switch c {
			case '"':
				return arrayValue{text: text}, true
			case '\\':
				if p.i >= len(p.s) {
					return arrayValue{}, false
				}
				c = p.s[p.i]
				p.i++
			}
			text = append(text, c)
		}
		return arrayValue{}, false
	default:
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != p.delim && p.s[p.i] != '}' {
			if c := p.s[p.i]; c == '{' || c == '"' || c == '\\' {
				return arrayValue{}, false // array_out quotes these
			}
			p.i++
		}
		text := p.s[start:p.i]
		if len(text) == 0 {
			return arrayValue{}, false
		}
		if strings.EqualFold(string(text), "NULL") {
			return arrayValue{null: true}, true
		}
		return arrayValue{text: text}, true
	}
}

// isJSONNumber reports whether s is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	if n := digits(); n == 0 || (n > 1 && s[start] == '0') {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// appendJSONString appends s as a JSON string. Unlike encoding/json it
// leaves <, > and & alone; like it, it writes bytes that are not UTF-8
// (from a SQL_ASCII database) as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
