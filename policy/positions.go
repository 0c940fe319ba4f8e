package policy

// Positions in YAML: a condition's parse errors are reported at the file
// line and column of the character PostgreSQL names, through the scalar's
// quoting, escapes, folding and block indentation.

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// offsetPos maps a byte offset inside a condition (the node's value with
// surrounding space trimmed) to its file position. It walks the scalar's
// source, so quotes, escapes, line folding and block indentation are
// accounted for; columns count characters, as yaml.v3's do.
func (r *reader) offsetPos(n *yaml.Node, text string, offset int) Pos {
	offset = max(0, min(offset, len(text)))
	offset += len(n.Value) - len(strings.TrimLeftFunc(n.Value, unicode.IsSpace))
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		if p, ok := r.blockPos(n, offset); ok {
			return p
		}
	case 0, yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if p, ok := r.flowPos(n, offset); ok {
			return p
		}
	}
	p := r.pos(n)
	p.Col += offset
	return p
}

// flowPos walks a plain or quoted scalar from its first character. A line
// break with the space around it folds into one space, or into a newline per
// blank line; an escape or a doubled quote is one character of the value.
func (r *reader) flowPos(n *yaml.Node, offset int) (Pos, bool) {
	li := n.Line - 1
	if li < 0 || li >= len(r.lines) {
		return Pos{}, false
	}
	line := strings.TrimRight(r.lines[li], "\r")
	bi := byteIndex(line, n.Column-1)
	var quote byte
	switch n.Style {
	case yaml.DoubleQuotedStyle:
		quote = '"'
	case yaml.SingleQuotedStyle:
		quote = '\''
	}
	if quote != 0 {
		bi++
	}
	at := func() (Pos, bool) {
		return Pos{File: r.file, Line: li + 1, Col: utf8.RuneCountInString(line[:min(bi, len(line))]) + 1}, true
	}
	for v := 0; ; {
		end := len(strings.TrimRight(line, " \t"))
		joined := false // an escaped line break folds into nothing
		for bi < end && v < offset {
			switch c := line[bi]; {
			case quote == '\'' && c == '\'' && bi+1 < len(line) && line[bi+1] == '\'':
				bi, v = bi+2, v+1
			case quote != 0 && c == quote:
				return at() // the closing quote
			case quote == '"' && c == '\\' && bi+1 >= end:
				bi, joined = end, true
			case quote == '"' && c == '\\':
				src, val := escapeLen(line[bi+1:])
				bi, v = bi+1+src, v+val
			default:
				bi, v = bi+1, v+1
			}
		}
		if v >= offset {
			return at()
		}
		next := li + 1
		for next < len(r.lines) && strings.TrimSpace(r.lines[next]) == "" {
			next++
		}
		fold := next - li - 1
		if fold == 0 && !joined {
			fold = 1
		}
		if next >= len(r.lines) || v+fold > offset {
			return at()
		}
		v += fold
		li = next
		line = strings.TrimRight(r.lines[li], "\r")
		bi = len(line) - len(strings.TrimLeft(line, " \t"))
	}
}

// escapeLen returns how many source bytes follow the backslash of a
// double-quoted escape and how many bytes of the value it stands for.
func escapeLen(s string) (src, val int) {
	if s == "" {
		return 0, 1
	}
	digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[s[0]]
	if digits > 0 && len(s) > digits {
		if code, err := strconv.ParseUint(s[1:1+digits], 16, 32); err == nil {
			return 1 + digits, max(1, utf8.RuneLen(rune(code)))
		}
	}
	switch s[0] {
	case 'N', '_':
		return 1, 2
	case 'L', 'P':
		return 1, 3
	}
	return 1, 1
}

// blockPos walks a literal or folded block scalar's lines. Its indentation
// is its first content line's, less the spaces the value keeps of it.
func (r *reader) blockPos(n *yaml.Node, offset int) (Pos, bool) {
	blank := func(i int) bool { return strings.TrimSpace(r.lines[i]) == "" }
	indentOf := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	li := n.Line // content starts on the line after the indicator
	for li < len(r.lines) && blank(li) {
		li++
	}
	if li >= len(r.lines) {
		return Pos{}, false
	}
	v := li - n.Line // each leading blank line is a newline of the value
	kept := strings.TrimLeft(n.Value, "\n")
	indent := indentOf(r.lines[li]) - (len(kept) - len(strings.TrimLeft(kept, " ")))
	if indent < 0 {
		return Pos{}, false
	}
	moreIndented := func(s string) bool { return s != "" && (s[0] == ' ' || s[0] == '\t') }
	for {
		line := strings.TrimRight(r.lines[li], "\r")
		content := line[indent:]
		at := func(i int) (Pos, bool) {
			return Pos{File: r.file, Line: li + 1, Col: utf8.RuneCountInString(line[:indent+i]) + 1}, true
		}
		if offset <= v+len(content) {
			return at(offset - v)
		}
		v += len(content)
		next := li + 1
		for next < len(r.lines) && blank(next) {
			next++
		}
		if next >= len(r.lines) || indentOf(r.lines[next]) < indent {
			return at(len(content))
		}
		breaks := next - li
		if n.Style == yaml.FoldedStyle && breaks > 1 && !moreIndented(content) && !moreIndented(r.lines[next][indent:]) {
			breaks-- // "a\n\nb" folds to "a\nb", and "a\nb" to "a b"
		}
		if offset < v+breaks {
			return at(len(content))
		}
		v += breaks
		li = next
	}
}

// byteIndex returns the byte offset of the col'th character (0-based) of s.
func byteIndex(s string, col int) int {
	for i := range s {
		if col == 0 {
			return i
		}
		col--
	}
	return len(s)
}
