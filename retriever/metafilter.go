package retriever

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	sq "github.com/Masterminds/squirrel"

	"github.com/ragfence/ragfence/policy"
)

// Filter is a request's metadata conditions: field -> value (equality) or
// field -> {"$op": value}. Fields are the resource's filterable columns,
// or keys of its metadata column declared filterable as metadata.<key>.
type Filter map[string]json.RawMessage

// operators maps a filter operator to SQL.
var operators = map[string]string{
	"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", "$in": "IN", "$nin": "NOT IN",
}

// operatorNames lists the operators for error messages.
func operatorNames() string {
	names := make([]string, 0, len(operators))
	for n := range operators {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// sqlizer compiles the filter for res, with every value bound. The SQL text
// depends only on the fields and operators used, never on values. column
// gives the expression a column reads as for the caller (the fragment's
// Column): a filter compares what the caller may see, so it cannot probe a
// masked column's hidden values.
func (f Filter) sqlizer(res *policy.Resource, column func(string) sq.Sqlizer) (sq.Sqlizer, error) {
	fields := make([]string, 0, len(f))
	for k := range f {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	var out sq.And
	for _, field := range fields {
		target, err := filterTarget(res, column, field)
		if err != nil {
			return nil, err
		}
		conds, err := fieldConditions(field, target, f[field])
		if err != nil {
			return nil, err
		}
		out = append(out, conds...)
	}
	return out, nil
}

// target is what a filter field compares: SQL text with its bound args.
type target struct {
	sql    string
	args   []any
	isJSON bool // a metadata key (jsonb), not a column
}

// with returns the target's args followed by vals, for SQL that mentions
// the target once before vals.
func (t target) with(vals ...any) []any { return slices.Concat(t.args, vals) }

// filterTarget resolves a filter field to a column or a metadata key, as
// column renders it (NULL where a mask hides it).
func filterTarget(res *policy.Resource, column func(string) sq.Sqlizer, field string) (target, error) {
	expr := func(col, suffix string, isJSON bool) (target, error) {
		sql, args, err := column(col).ToSql()
		if err != nil {
			return target{}, err
		}
		if suffix != "" {
			sql = "(" + sql + ")" + suffix
		}
		return target{sql: sql, args: args, isJSON: isJSON}, nil
	}
	if slices.Contains(res.Filterable, field) && !strings.Contains(field, ".") {
		return expr(field, "", false)
	}
	key := strings.TrimPrefix(field, res.Metadata+".")
	if slices.Contains(res.Filterable, res.Metadata+"."+key) {
		return expr(res.Metadata, " -> "+quoteLiteral(key), true)
	}
	return target{}, &Error{Code: CodeInvalidFilter,
		Msg: fmt.Sprintf("cannot filter on %q: the policy declares these filterable: %s", field, strings.Join(res.Filterable, ", "))}
}

// fieldConditions turns one field's value into conditions. Column values are
// bound as text, as parameters whose type PostgreSQL infers from the
// column's (so it parses them as the column's type when the statement is
// bound); metadata values are compared as jsonb of the same JSON type (jsonb
// orders values of different types by type, which would make "2024" > 1
// silently true).
//
// No condition may raise an error that depends on a row's data: the
// planner may evaluate it before the tenant's and the policy's conditions,
// on rows the subject may not see, and the error would tell whether such a
// row exists. So nothing here casts a column or a jsonb value (a cast of
// metadata->>'year' to integer raises on another tenant's "2024a"); values
// are converted only as parameters, and jsonb is compared as jsonb, whose
// operators (->, =, <, jsonb_typeof) never raise, whatever the document.
func fieldConditions(field string, target target, raw json.RawMessage) ([]sq.Sqlizer, error) {
	ops := map[string]json.RawMessage{"$eq": raw}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		ops = map[string]json.RawMessage{}
		if err := json.Unmarshal(raw, &ops); err != nil || len(ops) == 0 {
			return nil, filterErr(field, "want a value or an object of operators (%s)", operatorNames())
		}
	}
	names := make([]string, 0, len(ops))
	for op := range ops {
		names = append(names, op)
	}
	sort.Strings(names)
	var out []sq.Sqlizer
	for _, op := range names {
		sqlOp, ok := operators[op]
		if !ok {
			return nil, filterErr(field, "unknown operator %q; use one of %s", op, operatorNames())
		}
		c, err := condition(field, target, sqlOp, ops[op])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func condition(field string, t target, op string, raw json.RawMessage) (sq.Sqlizer, error) {
	if op == "IN" || op == "NOT IN" {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
			return nil, filterErr(field, "%s wants a non-empty list", map[string]string{"IN": "$in", "NOT IN": "$nin"}[op])
		}
		vals := make([]string, len(list))
		for i, v := range list {
			s, err := scalar(field, v, t.isJSON)
			if err != nil {
				return nil, err
			}
			vals[i] = s
		}
		any := "= ANY"
		if op == "NOT IN" {
			any = "<> ALL"
		}
		if t.isJSON {
			return sq.Expr(fmt.Sprintf("%s %s(?::jsonb[])", t.sql, any), t.with(vals)...), nil
		}
		// One array literal, with no cast: PostgreSQL infers the
		// parameter's type from the column's (integer[] for an integer
		// column) and pgx sends a string as text, which the server parses
		// as that type when the statement is bound, before any row is
		// read. A value that is not one of the column's type is a data
		// exception then, answered as invalid_filter; it cannot depend on
		// any row.
		return sq.Expr(fmt.Sprintf("%s %s(?)", t.sql, any), t.with(arrayLiteral(vals))...), nil
	}
	v, err := scalar(field, raw, t.isJSON)
	if err != nil {
		return nil, err
	}
	if !t.isJSON {
		return sq.Expr(fmt.Sprintf("%s %s ?", t.sql, op), t.with(v)...), nil
	}
	if op == "=" || op == "<>" {
		return sq.Expr(fmt.Sprintf("%s %s ?::jsonb", t.sql, op), t.with(v)...), nil
	}
	return sq.Expr(fmt.Sprintf("(jsonb_typeof(%s) = jsonb_typeof(?::jsonb) AND %s %s ?::jsonb)", t.sql, t.sql, op),
		slices.Concat(t.with(v), t.with(v))...), nil
}

// scalar returns a JSON scalar as bind text: the JSON itself for jsonb,
// the plain text for a column.
func scalar(field string, raw json.RawMessage, isJSON bool) (string, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", filterErr(field, "invalid value")
	}
	switch x := v.(type) {
	case string:
		if isJSON {
			return string(raw), nil
		}
		return x, nil
	case json.Number, bool:
		if isJSON {
			return string(bytes.TrimSpace(raw)), nil
		}
		return fmt.Sprint(x), nil
	}
	return "", filterErr(field, "values must be strings, numbers or booleans")
}

func filterErr(field, format string, args ...any) error {
	return &Error{Code: CodeInvalidFilter, Msg: fmt.Sprintf("filter %q: ", field) + fmt.Sprintf(format, args...)}
}

// quoteLiteral quotes a metadata key from the policy for SQL text that goes
// through squirrel, which reads ? as a placeholder unless doubled.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, "'", "''"), "?", "??") + "'"
}

// arrayLiteral is vals as a PostgreSQL array literal of quoted elements,
// which the server parses into an array of any element type.
func arrayLiteral(vals []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, c := range []byte(v) {
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
