package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/internal/testdb"
)

// queryTypes are columns whose JSON depends on what `ragfence query` sets
// up (rowjson.Rule; internal/rowjson tests every type): the session
// settings TextOutput fixes, and the types LoadSession reads.
var queryTypes = []struct{ sql, want string }{
	{`NULL::int`, `null`},
	{`9223372036854775807::int8`, `9223372036854775807`},
	{`1.50::numeric`, `1.50`},
	{`0.1::float8`, `0.1`}, // extra_float_digits
	{`'NaN'::float8`, `"NaN"`},
	{`true`, `true`},
	{`'\x00ff'::bytea`, `"\\x00ff"`},       // bytea_output
	{`'2024-02-29'::date`, `"2024-02-29"`}, // DateStyle
	{`'2024-01-02 03:04:05+02'::timestamptz`, `"2024-01-02 01:04:05+00"`},
	{`'-1 day -02:00'::interval`, `"-1 days -02:00:00"`}, // IntervalStyle
	{`'{"b": 1, "a": [1, 2.50]}'::jsonb`, `{"a":[1,2.50],"b":1}`},
	{`ARRAY[[1, 2], [3, NULL]]`, `[[1,2],[3,null]]`},
	{`ARRAY['happy', 'sad']::mood[]`, `["happy","sad"]`},
	{`5::posint`, `5`},
	{`'{1,2}'::posints`, `[1,2]`},
	{`'[1,2.5,-3e-7]'::vector`, `[1,2.5,-3e-07]`},
	{`ARRAY['[1,2]'::vector, NULL]`, `[[1,2],null]`},
	{`ROW(1, 'x')`, `"(1,x)"`},
}

func TestQueryOutputTypes(t *testing.T) {
	pool, schema := testdb.Schema(t)
	_, err := pool.Exec(context.Background(), `CREATE TYPE mood AS ENUM ('happy', 'sad');
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE DOMAIN posints AS posint[]`)
	if err != nil {
		t.Fatal(err)
	}
	cols := make([]string, len(queryTypes))
	want := make([]string, len(queryTypes))
	for i, tc := range queryTypes {
		cols[i] = fmt.Sprintf("%s AS c%d", tc.sql, i)
		want[i] = fmt.Sprintf(`"c%d":%s`, i, tc.want)
	}
	// lc_monetary and TimeZone fixed for money and timestamptz; the command
	// fixes DateStyle, IntervalStyle and the rest itself.
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public&timezone=UTC&lc_monetary=C&DateStyle=German&IntervalStyle=sql_standard&extra_float_digits=0"
	subject := writeJSONFile(t, map[string]any{"id": "gina", "tenant": "acme"})
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"query", "--db", dsn, "--policy", filepath.Join(examples, "rbac.yaml"),
		"--subject", subject, "SELECT " + strings.Join(cols, ", ")}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	line := out.String()
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 || !json.Valid([]byte(line)) {
		t.Errorf("want one line of valid JSON, got %q", line)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	for i, tc := range queryTypes {
		if g := string(got[fmt.Sprintf("c%d", i)]); g != tc.want {
			t.Errorf("SELECT %s: got %s, want %s", tc.sql, g, tc.want)
		}
	}
	if wantLine := "{" + strings.Join(want, ",") + "}\n"; line != wantLine && !t.Failed() {
		t.Errorf("the line is not the columns in order:\n got %s\nwant %s", line, wantLine)
	}
}

// Rows stream one per line; a repeated column name repeats as a key.
func TestQueryOutputRows(t *testing.T) {
	pool, schema := testdb.Schema(t)
	_, err := pool.Exec(context.Background(), `CREATE TABLE docs (id int, tenant_id text, level text, draft bool, body text);
		INSERT INTO docs VALUES (1, 'acme', 'public', false, E'two\nlines'), (2, 'acme', 'public', false, NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	dsn := testdb.URL(t) + "&search_path=" + schema + ",public"
	subject := writeJSONFile(t, map[string]any{"id": "gina", "tenant": "acme"})
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"query", "--db", dsn, "--policy", filepath.Join(examples, "rbac.yaml"),
		"--subject", subject, "SELECT id, body, id AS body FROM docs ORDER BY id"}, &out, &errOut)
	want := `{"id":1,"body":"two\nlines","body":1}` + "\n" + `{"id":2,"body":null,"body":2}` + "\n"
	if code != 0 || out.String() != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, out.String(), errOut.String(), want)
	}
}
