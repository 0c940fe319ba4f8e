// Package strictjson refuses the JSON that encoding/json reads one way and
// another parser (a proxy, a gateway, the issuer's library) may read
// another: duplicate keys in an object (encoding/json keeps the last, others
// the first or refuse), a key that matches a field only case-insensitively
// (encoding/json reads "K", or the Kelvin sign "\u212a", as the field "k";
// most parsers do not), and data after the top-level value.
//
// It does not decode: callers decode with encoding/json (or a library that
// does) and call Check on the same bytes, with an Object describing what
// they read. ForType derives the Object of a Go type, as encoding/json
// matches it; Check walks the bytes once, without reflection.
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Object is what a reader reads of a JSON object.
type Object struct {
	// Fields are the names the reader reads, exactly as it spells them,
	// each with what it reads of the value (nil: nothing by name; the
	// value is still checked for duplicate keys). A schema applies to every
	// element when the value is an array.
	Fields map[string]*Object
	// Open allows names other than Fields' (a map, or claims the reader
	// ignores). A name that differs from a field's only in letter case is
	// refused either way.
	Open bool
	// Elem is what the reader reads of the values under other names of an
	// open object (a map's values); nil when it reads none by name.
	Elem *Object
}

// Kind says what Check refused.
type Kind string

// The kinds of Error.
const (
	Duplicate Kind = "duplicate_key" // a key appears twice in one object
	CaseOnly  Kind = "case_mismatch" // a key matches a field only case-insensitively
	Unknown   Kind = "unknown_field" // a key of a closed object that is no field
	Trailing  Kind = "trailing_data" // something after the top-level value
	Malformed Kind = "malformed"     // not JSON
	TooDeep   Kind = "too_deep"      // nested deeper than MaxDepth
)

// maxKeyEcho is the longest key an error message quotes.
const maxKeyEcho = 64

// MaxDepth bounds nesting, as encoding/json does.
const MaxDepth = 10000

// Error is a refused document. Its message quotes keys the sender chose
// (shortened), never values.
type Error struct {
	Kind Kind
	// Path is where the object holding Key is, as dotted keys and [index]
	// ("" for the top level).
	Path string
	Key  string
	// Field is the field a CaseOnly key resembles.
	Field string
}

func (e *Error) Error() string {
	var msg string
	switch e.Kind {
	case Duplicate:
		msg = "duplicate key " + quote(e.Key)
	case CaseOnly:
		msg = "key " + quote(e.Key) + " differs from the field " + quote(e.Field) + " only in letter case"
	case Unknown:
		msg = "unknown field " + quote(e.Key)
	case Trailing:
		return "data after the top-level value"
	case TooDeep:
		return fmt.Sprintf("nested deeper than %d levels", MaxDepth)
	default:
		return "malformed JSON"
	}
	if e.Path != "" {
		msg += " in " + quote(e.Path)
	}
	return msg
}

func quote(s string) string {
	if len(s) > maxKeyEcho {
		s = strings.ToValidUTF8(s[:maxKeyEcho], "") + "..."
	}
	return strconv.Quote(s)
}

// Check reports the first duplicate key in any object of data, the first
// key that is not exactly a field of an object o describes as closed or
// that matches a field only case-insensitively, and any data after the
// first value. data should already have been decoded (so be valid JSON);
// Check refuses what is not, without describing why.
func Check(data []byte, o *Object) error {
	s := scanner{b: data}
	if err := s.value(o); err != nil {
		return err
	}
	s.space()
	if s.i != len(s.b) {
		return &Error{Kind: Trailing}
	}
	return nil
}

var errMalformed = &Error{Kind: Malformed}

type scanner struct {
	b     []byte
	i     int
	depth int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value(o *Object) error {
	s.space()
	if s.i >= len(s.b) {
		return errMalformed
	}
	switch s.b[s.i] {
	case '{':
		return s.object(o)
	case '[':
		return s.array(o)
	case '"':
		_, _, err := s.str()
		return err
	}
	// A number, true, false or null: up to the next delimiter.
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return nil
		case '{', '[', '"', ':':
			return errMalformed
		}
		s.i++
	}
	if s.i == start {
		return errMalformed
	}
	return nil
}

// str reads a string at s.i, returning its raw bytes (without quotes) and
// whether they hold an escape or a non-ASCII byte.
func (s *scanner) str() (raw []byte, complex bool, err error) {
	s.i++ // the opening quote
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, complex, nil
		case c == '\\':
			complex = true
			s.i += 2
			continue
		case c >= 0x80:
			complex = true
		}
		s.i++
	}
	return nil, false, errMalformed
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > MaxDepth {
		return &Error{Kind: TooDeep}
	}
	s.i++
	return nil
}

func (s *scanner) array(o *Object) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer func() { s.depth-- }()
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		if err := s.value(o); err != nil {
			return within(err, "["+strconv.Itoa(n)+"]")
		}
		s.space()
		if s.i >= len(s.b) {
			return errMalformed
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errMalformed
		}
	}
}

func (s *scanner) object(o *Object) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer func() { s.depth-- }()
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	var keys keySet
	for {
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errMalformed
		}
		raw, complex, err := s.str()
		if err != nil {
			return err
		}
		key := raw
		if complex {
			// Unescape exactly as encoding/json does (invalid UTF-8 and
			// lone surrogates become U+FFFD), so "\u006b" is "k".
			var k string
			if json.Unmarshal(s.b[s.i-len(raw)-2:s.i], &k) != nil {
				return errMalformed
			}
			key = []byte(k)
		}
		if keys.has(key) {
			return &Error{Kind: Duplicate, Key: string(key)}
		}
		keys.add(key)
		child, err := o.field(key)
		if err != nil {
			return err
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errMalformed
		}
		s.i++
		if err := s.value(child); err != nil {
			return within(err, string(key))
		}
		s.space()
		if s.i >= len(s.b) {
			return errMalformed
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errMalformed
		}
	}
}

// field returns what o reads of key's value, or why key is refused.
func (o *Object) field(key []byte) (*Object, error) {
	if o == nil {
		return nil, nil
	}
	if child, ok := o.Fields[string(key)]; ok {
		return child, nil
	}
	for name := range o.Fields {
		// bytes.EqualFold is the rule encoding/json matches names by.
		if bytes.EqualFold(key, []byte(name)) {
			return nil, &Error{Kind: CaseOnly, Key: string(key), Field: name}
		}
	}
	if !o.Open {
		return nil, &Error{Kind: Unknown, Key: string(key)}
	}
	return o.Elem, nil
}

// within prefixes the path of err's object with step, a key or "[n]".
func within(err error, step string) error {
	e, ok := err.(*Error)
	if !ok || e.Kind == Malformed || e.Kind == TooDeep {
		return err
	}
	out := *e
	if out.Path != "" && !strings.HasPrefix(out.Path, "[") {
		step += "."
	}
	out.Path = step + out.Path
	return &out
}

// keySet is an object's keys so far: a slice for the usual few, a map
// beyond.
type keySet struct {
	few  [][]byte
	many map[string]struct{}
}

func (k *keySet) has(key []byte) bool {
	if k.many != nil {
		_, ok := k.many[string(key)]
		return ok
	}
	for _, f := range k.few {
		if bytes.Equal(f, key) {
			return true
		}
	}
	return false
}

func (k *keySet) add(key []byte) {
	if k.many == nil && len(k.few) < 16 {
		k.few = append(k.few, key)
		return
	}
	if k.many == nil {
		k.many = make(map[string]struct{}, 32)
		for _, f := range k.few {
			k.many[string(f)] = struct{}{}
		}
		k.few = nil
	}
	k.many[string(key)] = struct{}{}
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// ForType is the Object encoding/json reads of a value of type t: a
// struct's fields by their JSON names (closed: callers decode with
// DisallowUnknownFields), a map's values under any name, a slice's, array's
// or pointer's elements as the element type's. It returns nil for types
// that read no object by name (scalars, json.RawMessage, any, and types
// with their own UnmarshalJSON).
func ForType(t reflect.Type) *Object {
	return forType(t, map[reflect.Type]*Object{})
}

func forType(t reflect.Type, seen map[reflect.Type]*Object) *Object {
	if o, ok := seen[t]; ok {
		return o
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return forType(t.Elem(), seen)
	case reflect.Map:
		o := &Object{Open: true}
		seen[t] = o
		o.Elem = forType(t.Elem(), seen)
		return o
	case reflect.Struct:
		o := &Object{Fields: map[string]*Object{}}
		seen[t] = o
		addFields(o, t, seen)
		return o
	}
	return nil
}

// addFields adds t's JSON fields to o, promoting untagged embedded
// structs' fields as encoding/json does.
func addFields(o *Object, t reflect.Type, seen map[reflect.Type]*Object) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(o, ft, seen)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		o.Fields[name] = forType(ft, seen)
	}
}
