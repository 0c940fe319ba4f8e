// Package pgwalk walks pg_query parse trees generically, so walkers only
// spell out the node types they care about.
package pgwalk

import (
	"reflect"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// EachChild calls fn for every *pg.Node directly below n, through any
// message in between (a ResTarget, a TypeName, a CaseWhen): the walk does
// not need to know every node type, so none is skipped by omission.
func EachChild(n *pg.Node, fn func(*pg.Node)) {
	if n == nil || n.Node == nil {
		return
	}
	inner := reflect.ValueOf(n.Node).Elem().Field(0).Interface().(interface {
		ProtoReflect() protoreflect.Message
	})
	walkMessage(inner.ProtoReflect(), fn)
}

func walkMessage(m protoreflect.Message, fn func(*pg.Node)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message(), fn)
			}
			return true
		}
		visit(v.Message(), fn)
		return true
	})
}

func visit(m protoreflect.Message, fn func(*pg.Node)) {
	if n, ok := m.Interface().(*pg.Node); ok {
		fn(n)
		return
	}
	walkMessage(m, fn)
}
