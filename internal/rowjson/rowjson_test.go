package rowjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/internal/testdb"
)

// typeCases are one column of each type a SELECT can return, with the JSON
// Rule gives it.
var typeCases = []struct{ sql, want string }{
	{`NULL::int`, `null`},
	{`1::int2`, `1`},
	{`(-32768)::int2`, `-32768`},
	{`2147483647`, `2147483647`},
	{`9223372036854775807::int8`, `9223372036854775807`}, // more digits than a float64 holds
	{`4294967295::oid`, `4294967295`},
	{`123456789012345678901234567890.123456789::numeric`, `123456789012345678901234567890.123456789`},
	{`1.50::numeric`, `1.50`},
	{`'-0.000'::numeric`, `0.000`},
	{`'NaN'::numeric`, `"NaN"`},
	{`'Infinity'::numeric`, `"Infinity"`},
	{`'-Infinity'::numeric`, `"-Infinity"`},
	{`1.1::float4`, `1.1`},
	{`'NaN'::float4`, `"NaN"`},
	{`'-Infinity'::float4`, `"-Infinity"`},
	{`0.1::float8`, `0.1`},
	{`1e300::float8`, `1e+300`},
	{`5e-324::float8`, `5e-324`},
	{`'-0'::float8`, `-0`},
	{`'Infinity'::float8`, `"Infinity"`},
	{`'NaN'::float8`, `"NaN"`},
	{`true`, `true`},
	{`false`, `false`},
	{`E'tab\there "q" \\ <b>&\n\u00e9\u2028'::text`, `"tab\there \"q\" \\ <b>&\né` + "\u2028" + `"`},
	{`E'\x01'::text`, `"\u0001"`},
	{`'ab'::varchar(5)`, `"ab"`},
	{`'ab'::char(4)`, `"ab  "`},
	{`'pg'::name`, `"pg"`},
	{`'a'::"char"`, `"a"`},
	{`'\x00ff'::bytea`, `"\\x00ff"`},
	{`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid`, `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
	{`'2024-02-29'::date`, `"2024-02-29"`},
	{`'infinity'::date`, `"infinity"`},
	{`'2024-01-02 03:04:05.678'::timestamp`, `"2024-01-02 03:04:05.678"`},
	{`'-infinity'::timestamp`, `"-infinity"`},
	{`'2024-01-02 03:04:05+02'::timestamptz`, `"2024-01-02 01:04:05+00"`},
	{`'infinity'::timestamptz`, `"infinity"`},
	{`'12:34:56.789'::time`, `"12:34:56.789"`},
	{`'12:34:56+05:30'::timetz`, `"12:34:56+05:30"`},
	{`'1 year 2 mons 3 days 04:05:06.5'::interval`, `"1 year 2 mons 3 days 04:05:06.5"`},
	{`'-1 day -02:00'::interval`, `"-1 days -02:00:00"`},
	{`E'{"b": 1,\n "a": [1, 2.50, 1e400], "a": null, "s": "x\\u0000"}'::json`, `{"b":1,"a":[1,2.50,1e400],"a":null,"s":"x\u0000"}`},
	{`'{"b": 1, "a": [1, 2.50]}'::jsonb`, `{"a":[1,2.50],"b":1}`},
	{`'null'::jsonb`, `null`},
	{`'"s"'::json`, `"s"`},
	{`'$.a[*]'::jsonpath`, `"$.\"a\"[*]"`},
	{`ARRAY[1, NULL, 3]`, `[1,null,3]`},
	{`ARRAY[[1, 2], [3, NULL]]`, `[[1,2],[3,null]]`},
	{`ARRAY[[[1], [2]], [[3], [4]]]::int8[]`, `[[[1],[2]],[[3],[4]]]`},
	{`'{}'::int[]`, `[]`},
	{`'[0:1]={1,2}'::int[]`, `"[0:1]={1,2}"`},
	{`ARRAY['a,b', NULL, 'NULL', 'null', '', E'q"\\', '{x}', ' sp ']`, `["a,b",null,"NULL","null","","q\"\\","{x}"," sp "]`},
	{`ARRAY['NaN'::float8, 1.5, '-Infinity']`, `["NaN",1.5,"-Infinity"]`},
	{`ARRAY[1.50, 'NaN']::numeric[]`, `[1.50,"NaN"]`},
	{`ARRAY[true, false, NULL]`, `[true,false,null]`},
	{`ARRAY['{"a": 1}'::jsonb, 'null', NULL, '[2]']`, `[{"a":1},null,null,[2]]`},
	{`ARRAY['{"a": 1}'::json]`, `[{"a":1}]`},
	{`ARRAY['\x01'::bytea]`, `["\\x01"]`},
	{`ARRAY['1 day'::interval, '-02:00']`, `["1 day","-02:00:00"]`},
	{`ARRAY['2024-01-02 03:04:05'::timestamp]`, `["2024-01-02 03:04:05"]`},
	{`ARRAY['(1,1),(0,0)'::box, '(2,2),(1,1)']`, `["(1,1),(0,0)","(2,2),(1,1)"]`},
	{`ROW(1, 'a b', NULL::numeric)::pair`, `"(1,\"a b\",)"`},
	{`ROW(1, 'x')`, `"(1,x)"`},
	{`ARRAY[ROW(1, 'x', 2.5)::pair, NULL]`, `["(1,x,2.5)",null]`},
	{`'[1,5)'::int4range`, `"[1,5)"`},
	{`'empty'::numrange`, `"empty"`},
	{`'[2024-01-01,infinity)'::daterange`, `"[2024-01-01,infinity)"`},
	{`'{[1,3), [5,7)}'::int4multirange`, `"{[1,3),[5,7)}"`},
	{`ARRAY['[1,2]'::int4range]`, `["[1,3)"]`},
	{`'192.168.0.1/24'::inet`, `"192.168.0.1/24"`},
	{`'10.0.0.0/8'::cidr`, `"10.0.0.0/8"`},
	{`'::1'::inet`, `"::1"`},
	{`'08:00:2b:01:02:03'::macaddr`, `"08:00:2b:01:02:03"`},
	{`'08:00:2b:01:02:03:04:05'::macaddr8`, `"08:00:2b:01:02:03:04:05"`},
	{`'1.5'::money`, `"$1.50"`},
	{`B'101'`, `"101"`},
	{`'1010'::varbit`, `"1010"`},
	{`'a fat cat'::tsvector`, `"'a' 'cat' 'fat'"`},
	{`'fat & cat'::tsquery`, `"'fat' & 'cat'"`},
	{`'(1,2)'::point`, `"(1,2)"`},
	{`'{1,-1,0}'::line`, `"{1,-1,0}"`},
	{`'[(0,0),(1,1)]'::lseg`, `"[(0,0),(1,1)]"`},
	{`'(1,1),(0,0)'::box`, `"(1,1),(0,0)"`},
	{`'[(0,0),(1,1),(2,0)]'::path`, `"[(0,0),(1,1),(2,0)]"`},
	{`'((0,0),(1,1),(2,0))'::polygon`, `"((0,0),(1,1),(2,0))"`},
	{`'<(0,0),2>'::circle`, `"<(0,0),2>"`},
	{`'happy'::mood`, `"happy"`},
	{`ARRAY['happy', 'sad']::mood[]`, `["happy","sad"]`},
	{`5::posint`, `5`},
	{`'x'::label`, `"x"`},
	{`ARRAY[1, 2]::posint[]`, `[1,2]`},
	{`'{1,2}'::posints`, `[1,2]`},
	{`ARRAY[1.5]::prices`, `[1.5]`},
	{`'<a>x &amp; y</a>'::xml`, `"<a>x &amp; y</a>"`},
	{`'pg_class'::regclass`, `"pg_class"`},
	{`'integer'::regtype`, `"integer"`},
	{`'16/B374D848'::pg_lsn`, `"16/B374D848"`},
	{`'7'::xid`, `"7"`},
	{`'1 2'::int2vector`, `"1 2"`},
	{`'[1,2.5,-3e-7]'::vector`, `[1,2.5,-3e-07]`},
	{`'[1,2]'::halfvec`, `[1,2]`},
	{`'{1:1.5,3:2}/5'::sparsevec`, `"{1:1.5,3:2}/5"`},
	{`ARRAY['[1,2]'::vector, NULL]`, `[[1,2],null]`},
	{`'(1,x)'::unregistered`, `"(1,x)"`}, // a type the rule knows nothing of
}

// hostileDSN is the test schema's URL with every session setting Rule
// fixes set otherwise (TextOutput must replace them), and lc_monetary and
// TimeZone fixed for money and timestamptz.
func hostileDSN(t *testing.T, schema string) string {
	return testdb.URL(t) + "&search_path=" + schema + ",public&timezone=UTC&lc_monetary=C&DateStyle=German&IntervalStyle=sql_standard&extra_float_digits=0"
}

// TestTypes renders every case, through a read-only transaction on a
// pooled connection, as a front door that serves many callers does.
func TestTypes(t *testing.T) {
	ctx := context.Background()
	admin, schema := testdb.Schema(t)
	_, err := admin.Exec(ctx, `CREATE TYPE mood AS ENUM ('happy', 'sad');
		CREATE TYPE pair AS (i int, t text, n numeric);
		CREATE TYPE unregistered AS (i int, t text);
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE DOMAIN label AS text;
		CREATE DOMAIN posints AS posint[];
		CREATE DOMAIN price AS numeric;
		CREATE DOMAIN prices AS price[]`)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(hostileDSN(t, schema))
	if err != nil {
		t.Fatal(err)
	}
	TextOutputPool(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	_, types, err := LoadSession(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	cols := make([]string, len(typeCases))
	want := make([]string, len(typeCases))
	for i, tc := range typeCases {
		cols[i] = fmt.Sprintf("%s AS c%d", tc.sql, i)
		want[i] = fmt.Sprintf(`"c%d":%s`, i, tc.want)
	}
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(cols, ", "))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := types.WriteRows(&out, rows); err != nil {
		t.Fatal(err)
	}
	line := out.String()
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 || !json.Valid([]byte(line)) {
		t.Errorf("want one line of valid JSON, got %q", line)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	for i, tc := range typeCases {
		if g := string(got[fmt.Sprintf("c%d", i)]); g != tc.want {
			t.Errorf("SELECT %s: got %s, want %s", tc.sql, g, tc.want)
		}
	}
	if wantLine := "{" + strings.Join(want, ",") + "}\n"; line != wantLine && !t.Failed() {
		t.Errorf("the line is not the columns in order:\n got %s\nwant %s", line, wantLine)
	}
}

// TestRows: on a single connection, LoadSession reads the search_path;
// rows stream one per line, AppendRow renders the same objects, and a
// repeated column name repeats as a key.
func TestRows(t *testing.T) {
	ctx := context.Background()
	admin, schema := testdb.Schema(t)
	_, err := admin.Exec(ctx, `CREATE TABLE docs (id int, body text);
		INSERT INTO docs VALUES (1, E'two\nlines'), (2, NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(hostileDSN(t, schema))
	if err != nil {
		t.Fatal(err)
	}
	TextOutput(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	path, types, err := LoadSession(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{schema, "public"}; !slices.Equal(path, want) {
		t.Errorf("search_path %v, want %v", path, want)
	}
	const sql = "SELECT id, body, id AS body FROM docs ORDER BY id"
	want := []string{`{"id":1,"body":"two\nlines","body":1}`, `{"id":2,"body":null,"body":2}`}
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := types.WriteRows(&out, rows); err != nil || out.String() != strings.Join(want, "\n")+"\n" {
		t.Errorf("WriteRows: %q, %v; want %q", out.String(), err, want)
	}
	rows, err = conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		got = append(got, string(types.AppendRow(nil, rows.FieldDescriptions(), rows.RawValues())))
	}
	if err := rows.Err(); err != nil || !slices.Equal(got, want) {
		t.Errorf("AppendRow: %q, %v; want %q", got, err, want)
	}
}

// A connection that is not TextOutput's gets binary columns, which the rule
// cannot start from: refused, not rendered wrong.
func TestBinaryRefused(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT 1::int4 AS n")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = (&Types{}).WriteRows(&out, rows)
	if err == nil || !strings.Contains(err.Error(), "column n came back in binary format") || out.Len() != 0 {
		t.Errorf("binary column: %v, %q; want refused", err, out.String())
	}
}

func TestParseArray(t *testing.T) {
	types := &Types{arrays: map[uint32]arrayType{1007: {elem: 23, delim: ','}, 1009: {elem: 25, delim: ','}}}
	for _, tc := range []struct {
		oid        uint32
		text, want string
	}{
		{1007, `{1,2}`, `[1,2]`},
		{1007, `{{1},{NULL}}`, `[[1],[null]]`},
		{1009, `{"a\"b","c\\d",NuLl,"NULL"}`, `["a\"b","c\\d",null,"NULL"]`},
		// Anything array_out would not print is shown as it came.
		{1007, `[2:3]={1,2}`, `"[2:3]={1,2}"`},
		{1007, `{1,2`, `"{1,2"`},
		{1007, `{1,,2}`, `"{1,,2}"`},
		{1007, `{1}x`, `"{1}x"`},
		{1009, `{"a}`, `"{\"a}"`},
		{1009, `{a"b}`, `"{a\"b}"`},
		{1007, `{1.5e3,x}`, `[1.5e3,"x"]`}, // an int that is not one stays a string
	} {
		if got := string(types.appendValue(nil, tc.oid, []byte(tc.text))); got != tc.want {
			t.Errorf("%d %s: got %s, want %s", tc.oid, tc.text, got, tc.want)
		}
	}
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12": true, "1.50": true, "1e+300": true, "5e-324": true, "1E5": true,
		"": false, "-": false, "01": false, ".5": false, "1.": false, "1e": false, "+1": false,
		"NaN": false, "Infinity": false, "-Infinity": false, "0x10": false, "1_000": false, " 1": false,
	} {
		if got := isJSONNumber([]byte(s)); got != want {
			t.Errorf("isJSONNumber(%q) = %v, want %v", s, got, want)
		}
	}
}
