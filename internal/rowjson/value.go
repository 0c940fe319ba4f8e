package rowjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// appendValue appends text, a non-NULL value of type oid in PostgreSQL's
// text format, as JSON by Rule.
func (t *Types) appendValue(b []byte, oid uint32, text []byte) []byte {
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

func (t *Types) appendArray(b []byte, elem uint32, v arrayValue) []byte {
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
