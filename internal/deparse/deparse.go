// Package deparse turns pg_query parse trees back into SQL text that means
// exactly what the tree means.
//
// pg_query's deparser drops parentheses that matter: it writes the tree of
// (a OR b) IS NOT NULL as a OR b IS NOT NULL, which PostgreSQL reads as
// a OR (b IS NOT NULL); likewise (NOT a) IS NULL, x BETWEEN a AND (b = c),
// (a OR b)::text, (-1)::text and (1).f. Text that reads back as another
// tree is another query, so ragfence never emits the deparser's output
// unchecked: Statement and Expr parse what they wrote and compare it with
// the tree they were given (locations aside). When the two differ they
// write the tree again with every compound operand in explicit parentheses
// (which PostgreSQL's grammar does not record, so they change nothing but
// the reading) and check again. What still differs is an ErrUnfaithful.
package deparse

import (
	"errors"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrUnfaithful is wrapped by the errors of Statement and Expr when no text
// they can write parses back to the tree they were given.
var ErrUnfaithful = errors.New("the deparsed SQL does not parse back to the same tree")

// Statement returns SQL for tree that parses back to tree. tree is not
// modified.
func Statement(tree *pg.ParseResult) (string, error) {
	want := normalized(tree)
	out, err := pg.Deparse(tree)
	if err == nil && sameTree(out, want) {
		return out, nil
	}
	out, perr := parenthesized(tree)
	if perr != nil {
		return "", perr
	}
	if !sameTree(out, want) {
		return "", fmt.Errorf("deparse: %w: %s", ErrUnfaithful, out)
	}
	return out, nil
}

// Expr returns SQL for one expression (a SELECT's target) that parses back
// to it. n is not modified.
func Expr(n *pg.Node) (string, error) {
	sql, err := Statement(selectOf(n))
	if err != nil {
		return "", err
	}
	out, ok := strings.CutPrefix(sql, "SELECT ")
	if !ok {
		return "", fmt.Errorf("deparse: unexpected text for an expression: %s", sql)
	}
	return out, nil
}

// selectOf wraps an expression as SELECT <n>.
func selectOf(n *pg.Node) *pg.ParseResult {
	return &pg.ParseResult{Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
		TargetList:  []*pg.Node{pg.MakeResTargetNodeWithVal(n, 0)},
		LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg.SetOperation_SETOP_NONE,
	}}}}}}
}

// sameTree reports whether sql parses to the normalized tree want.
func sameTree(sql string, want *pg.ParseResult) bool {
	got, err := pg.Parse(sql)
	if err != nil {
		return false
	}
	return proto.Equal(normalized(got), want)
}

// normalized is a copy of tree without the byte offsets that tell where each
// node was written, which no reading of the text can be expected to keep,
// and without the parser's version, which a tree built in code lacks.
func normalized(tree *pg.ParseResult) *pg.ParseResult {
	c := proto.Clone(tree).(*pg.ParseResult)
	c.Version = 0
	clearLocations(c.ProtoReflect())
	return c
}

func clearLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearLocations(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind:
			clearLocations(v.Message())
		case isLocation(fd.Name()):
			m.Clear(fd)
		}
		return true
	})
}

func isLocation(name protoreflect.Name) bool {
	return name == "location" || name == "stmt_location" || name == "stmt_len"
}
