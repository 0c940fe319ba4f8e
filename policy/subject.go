package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ragfence/ragfence/internal/suggest"
)

// Subject is who a request acts for, as the authentication layer says.
// Attributes beyond the built-in ones are typed by the policy's subject
// schema (see Set.CheckSubject).
type Subject struct {
	ID         string         `json:"id"`
	Tenant     string         `json:"tenant"`
	Roles      []string       `json:"roles"`
	Groups     []string       `json:"groups"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Context is what the server knows about a request; clients never set it.
type Context struct {
	Time time.Time  `json:"time"`
	IP   netip.Addr `json:"ip"`
}

// ReadSubject reads a subject file ({"id", "tenant", "roles", "groups", "attributes"}).
func ReadSubject(path string) (*Subject, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	var s Subject
	if err := decodeStrict(b, &s); err != nil {
		return nil, fmt.Errorf("subject %s: %w", path, err)
	}
	return &s, nil
}

// ReadContext reads a context file ({"time": RFC 3339, "ip": address}).
func ReadContext(path string) (Context, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Context{}, fmt.Errorf("context: %w", err)
	}
	var c Context
	if err := decodeStrict(b, &c); err != nil {
		return Context{}, fmt.Errorf("context %s: %w", path, err)
	}
	return c, nil
}

// decodeStrict decodes one JSON object into v, refusing what encoding/json
// lets through: keys that match a field only case-insensitively, duplicate
// keys, unknown keys, null, and anything after the object.
func decodeStrict(b []byte, v any) error {
	if err := checkKeys(b, jsonFields(v)); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("invalid JSON: unexpected end of input")
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

// checkKeys walks the top-level object's keys.
func checkKeys(b []byte, allowed []string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil && err != io.EOF {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if !slices.Contains(allowed, key) {
			return fmt.Errorf("unknown field %q%s; allowed: %s", key, suggest.Hint(key, allowed), strings.Join(allowed, ", "))
		}
		if seen[key] {
			return fmt.Errorf("field %q appears twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// CheckSubject converts s's attributes to the policy's declared types
// (int64, bool, string, []string, time.Time), refusing a value of the wrong
// type and an attribute the policy does not declare. A JSON null counts as
// absent.
func (set *Set) CheckSubject(s *Subject) (*Subject, error) {
	out := *s
	out.Attributes = make(map[string]any, len(s.Attributes))
	names := make([]string, 0, len(s.Attributes))
	for k := range s.Attributes {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		raw := s.Attributes[name]
		typ, declared := set.Subject[name]
		if _, builtin := builtinSubject[name]; builtin {
			return nil, fmt.Errorf("subject attribute %q is a top-level field, not an attribute", name)
		}
		if !declared {
			return nil, fmt.Errorf("subject attribute %q is not declared in the policy's subject.attributes", name)
		}
		if raw == nil {
			continue
		}
		v, err := convert(raw, typ)
		if err != nil {
			return nil, fmt.Errorf("subject attribute %q: %w", name, err)
		}
		out.Attributes[name] = v
	}
	return &out, nil
}

// ConvertAttr converts a subject attribute's value, as JSON decoding or an
// authentication layer produced it, to the Go type ragfence binds for typ:
// string, bool, int64, []string or time.Time.
func ConvertAttr(raw any, typ Type) (any, error) { return convert(raw, typ) }

func convert(raw any, typ Type) (any, error) {
	switch typ {
	case Text:
		if s, ok := raw.(string); ok {
			return s, nil
		}
	case Boolean:
		if b, ok := raw.(bool); ok {
			return b, nil
		}
	case Integer:
		n, err := toInt(raw)
		if err == nil && (n < math.MinInt32 || n > math.MaxInt32) {
			return nil, fmt.Errorf("%d is out of range for integer (32-bit)", n)
		}
		return n, err
	case TextArray:
		return toStrings(raw)
	case Timestamptz:
		if s, ok := raw.(string); ok {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return nil, fmt.Errorf("want an RFC 3339 time: %w", err)
			}
			return t, nil
		}
		if t, ok := raw.(time.Time); ok {
			return t, nil
		}
	}
	return nil, fmt.Errorf("want %s, got %T", typ, raw)
}

func toInt(raw any) (int64, error) {
	switch x := raw.(type) {
	case json.Number:
		return x.Int64()
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), nil
		}
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	}
	return 0, fmt.Errorf("want an integer, got %v", raw)
}

func toStrings(raw any) ([]string, error) {
	switch x := raw.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, got %T in it", e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list of strings, got %T", raw)
}

// Attr returns a subject attribute's value and whether the request carries
// it. Roles and groups are always carried (absent means none).
func (s *Subject) Attr(name string) (any, bool) {
	switch name {
	case "id":
		return s.ID, s.ID != ""
	case "tenant":
		return s.Tenant, s.Tenant != ""
	case "roles":
		return nonNil(s.Roles), true
	case "groups":
		return nonNil(s.Groups), true
	}
	v, ok := s.Attributes[name]
	return v, ok && v != nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Attr returns a context attribute's value in loc and whether the request
// carries it.
func (c Context) Attr(name, agent string, loc *time.Location) (any, bool) {
	switch name {
	case "time":
		return c.Time, !c.Time.IsZero()
	case "hour":
		return int64(c.Time.In(loc).Hour()), !c.Time.IsZero()
	case "weekday":
		return int64(c.Time.In(loc).Weekday()), !c.Time.IsZero()
	case "ip":
		// Dual-stack listeners report IPv4 clients as ::ffff:a.b.c.d; policies
		// written against IPv4 networks must still match them.
		return c.IP.Unmap(), c.IP.IsValid()
	case "agent":
		return agent, agent != ""
	}
	return nil, false
}

// AttrType returns the SQL type of subject.<name> or context.<name>.
func (set *Set) AttrType(qualifier, name string) (Type, bool) {
	if qualifier == "context" {
		t, ok := contextAttrs[name]
		return t, ok
	}
	t, ok := set.Subject[name]
	return t, ok
}
