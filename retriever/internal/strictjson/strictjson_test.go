package strictjson_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/retriever/internal/strictjson"
)

type inner struct {
	Sub string `json:"sub"`
}

type embedded struct {
	Promoted int `json:"promoted"`
}

type doc struct {
	embedded
	K       int                        `json:"k"`
	Raw     json.RawMessage            `json:"raw"`
	Inner   *inner                     `json:"inner"`
	List    []inner                    `json:"list"`
	Filter  map[string]json.RawMessage `json:"filter"`
	Skipped string                     `json:"-"`
	Plain   string
	//lint:ignore U1000 unexported fields are no JSON fields, which the test shows
	hidden string
}

func TestCheck(t *testing.T) {
	schema := strictjson.ForType(reflect.TypeFor[doc]())
	cases := []struct {
		name string
		in   string
		kind strictjson.Kind // "" for accepted
		path string
		key  string
	}{
		{"plain", `{"k": 1, "raw": [1, 2.5e3, -0], "inner": {"sub": "a"}, "Plain": "x", "promoted": 2}`, "", "", ""},
		{"empty object and array", `{"list": [], "filter": {}}`, "", "", ""},
		{"map keys of any name", `{"filter": {"A": 1, "a": 2, "$in": [1]}}`, "", "", ""},
		{"duplicate top-level", `{"k": 1, "k": 2}`, strictjson.Duplicate, "", "k"},
		{"duplicate through an escape", `{"k": 1, "\u006b": 2}`, strictjson.Duplicate, "", "k"},
		{"duplicate invalid UTF-8 as U+FFFD", "{\"filter\": {\"\xff\": 1, \"\xfe\": 2}}", strictjson.Duplicate, "filter", "\ufffd"},
		{"duplicate in a map", `{"filter": {"lang": 1, "lang": 2}}`, strictjson.Duplicate, "filter", "lang"},
		{"duplicate inside a raw value", `{"filter": {"year": {"$gte": 1, "$gte": 2}}}`, strictjson.Duplicate, "filter.year", "$gte"},
		{"duplicate in a raw array", `{"raw": [{"a": 1}, {"b": 1, "b": 2}]}`, strictjson.Duplicate, "raw[1]", "b"},
		{"duplicate in a struct list", `{"list": [{"sub": "a", "sub": "b"}]}`, strictjson.Duplicate, "list[0]", "sub"},
		{"upper case", `{"K": 1}`, strictjson.CaseOnly, "", "K"},
		{"upper case besides the exact one", `{"k": 1, "K": 2}`, strictjson.CaseOnly, "", "K"},
		{"Kelvin sign", `{"\u212a": 1}`, strictjson.CaseOnly, "", "\u212a"},
		{"nested case", `{"inner": {"SUB": "a"}}`, strictjson.CaseOnly, "inner", "SUB"},
		{"case of a Go-named field", `{"plain": "x"}`, strictjson.CaseOnly, "", "plain"},
		{"unknown", `{"colour": "red"}`, strictjson.Unknown, "", "colour"},
		{"skipped field is unknown", `{"Skipped": "x"}`, strictjson.Unknown, "", "Skipped"},
		{"unexported field is unknown", `{"hidden": "x"}`, strictjson.Unknown, "", "hidden"},
		{"trailing value", `{"k": 1} {"k": 2}`, strictjson.Trailing, "", ""},
		{"trailing brace", `{"k": 1}}`, strictjson.Trailing, "", ""},
		{"trailing space is fine", "{\"k\": 1} \n", "", "", ""},
		{"truncated", `{"k": 1`, strictjson.Malformed, "", ""},
		{"truncated string", `{"k`, strictjson.Malformed, "", ""},
		{"empty", ``, strictjson.Malformed, "", ""},
		{"key without colon", `{"k" 1}`, strictjson.Malformed, "", ""},
		{"too deep", strings.Repeat("[", strictjson.MaxDepth+1) + strings.Repeat("]", strictjson.MaxDepth+1), strictjson.TooDeep, "", ""},
		{"deep enough", `{"raw": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := strictjson.Check([]byte(tc.in), schema)
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *strictjson.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a %s error", err, tc.kind)
			}
			if e.Kind != tc.kind || e.Path != tc.path || e.Key != tc.key {
				t.Errorf("got kind %s path %q key %q (%v), want %s %q %q", e.Kind, e.Path, e.Key, err, tc.kind, tc.path, tc.key)
			}
		})
	}
}

// TestCheckAgreesWithEncodingJSON: every case Check refuses as a case or
// duplicate problem is one encoding/json silently accepts, which is the
// point; and what Check accepts decodes to the same value either way.
func TestCheckAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{`{"K": 1}`, `{"k": 1, "k": 2}`, `{"\u212a": 3}`} {
		var d doc
		dec := json.NewDecoder(strings.NewReader(in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: encoding/json refused it (%v): the case no longer needs Check", in, err)
		}
		if strictjson.Check([]byte(in), strictjson.ForType(reflect.TypeFor[doc]())) == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}

func TestErrorMessagesQuoteKeysShortened(t *testing.T) {
	long := strings.Repeat("x", 500)
	err := strictjson.Check([]byte(`{"filter": {"`+long+`": 1, "`+long+`": 2}}`), strictjson.ForType(reflect.TypeFor[doc]()))
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "duplicate key") || !strings.Contains(err.Error(), `in "filter"`) {
		t.Errorf("message %q", err)
	}
}

func TestOpenObjectRefusesCaseVariants(t *testing.T) {
	claims := &strictjson.Object{Open: true, Fields: map[string]*strictjson.Object{"sub": nil, "tenant": nil}}
	claims.Fields["act"] = claims
	for in, want := range map[string]strictjson.Kind{
		`{"sub": "a", "other": 1, "Other": 2}`:       "",
		`{"sub": "a", "Sub": "b"}`:                   strictjson.CaseOnly,
		`{"act": {"sub": "x", "SUB": "y"}}`:          strictjson.CaseOnly,
		`{"act": {"act": {"sub": "x", "sub": "y"}}}`: strictjson.Duplicate,
	} {
		err := strictjson.Check([]byte(in), claims)
		var e *strictjson.Error
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: refused: %v", in, err)
		case want != "" && (!errors.As(err, &e) || e.Kind != want):
			t.Errorf("%s: got %v, want %s", in, err, want)
		}
	}
}

// FuzzCheck: Check never panics, and on valid JSON it refuses only for a
// reason encoding/json does not see: never "malformed".
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"k":1}`, `{"k":1,"k":2}`, `{"a":[{"b":"\u0062"}]}`, `[1,"x",{"\"":null}]`, `"\ud800"`, `{"\\":1,"\\\\":2}`} {
		f.Add([]byte(s))
	}
	schema := strictjson.ForType(reflect.TypeFor[doc]())
	f.Fuzz(func(t *testing.T, data []byte) {
		err := strictjson.Check(data, schema)
		open := strictjson.Check(data, nil)
		if !json.Valid(data) {
			return
		}
		var e *strictjson.Error
		if errors.As(err, &e) && (e.Kind == strictjson.Malformed || e.Kind == strictjson.Trailing) {
			t.Errorf("valid JSON %q refused as %v", data, err)
		}
		if errors.As(open, &e) && e.Kind != strictjson.Duplicate {
			t.Errorf("valid JSON %q refused without a schema: %v", data, open)
		}
	})
}

// BenchmarkCheck is Check on a retrieve body with a 384-dimensional
// embedding, beside encoding/json's decoding of the same body, which the
// handler does first.
func BenchmarkCheck(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"collection": "chunks", "k": 10, "filter": {"source": {"$in": ["wiki", "drive"]}}, "raw": [`)
	for i := range 384 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("-0.012345678")
	}
	sb.WriteString("]}")
	body := []byte(sb.String())
	type wire struct {
		Collection string                     `json:"collection"`
		K          int                        `json:"k"`
		Filter     map[string]json.RawMessage `json:"filter"`
		Raw        json.RawMessage            `json:"raw"`
	}
	schema := strictjson.ForType(reflect.TypeFor[wire]())
	b.Run("Check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := strictjson.Check(body, schema); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wire
			if err := json.Unmarshal(body, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
