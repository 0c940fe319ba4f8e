package rewrite

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/policy"
)

// tables resolves table references as PostgreSQL would on a connection with
// the given search path, against what the policy declares.
type tables struct {
	path       []string // the search path's schemas, in order
	first      string   // the first of them
	resources  map[string]*policy.Resource
	unfiltered map[string]bool
}

func newTables(set *policy.Set, searchPath []string) *tables {
	t := &tables{first: "public", resources: map[string]*policy.Resource{}, unfiltered: map[string]bool{}}
	for _, s := range searchPath {
		if s != "" && s != "$user" && s != "pg_catalog" {
			t.path = append(t.path, s)
		}
	}
	if len(t.path) == 0 {
		t.path = []string{"public"}
	}
	t.first = t.path[0]
	for _, name := range set.Names {
		res := set.Resources[name]
		t.resources[t.key(res.TableName())] = res
	}
	for _, u := range set.Unfiltered {
		schema, name, ok := strings.Cut(u, ".")
		if !ok {
			schema, name = "", u
		}
		t.unfiltered[t.key(schema, name)] = true
	}
	return t
}

// key normalises a declared table: an unqualified one means the first
// schema of the search path.
func (t *tables) key(schema, name string) string {
	if schema == "" {
		schema = t.first
	}
	return schema + "." + name
}

// systemSchemas are never readable through the rewriter.
var systemSchemas = setOf("pg_catalog", "information_schema", "pg_toast")

// resolve says what a table reference is: a protected resource, an
// unfiltered table (nil resource), or a refusal. An unqualified name is
// looked up along the search path, first declared match wins; when that
// is an unfiltered table in a later schema, schema says how to qualify the
// reference so PostgreSQL reads exactly the declared table, not an
// undeclared one of the same name earlier on the path. (A protected
// table's filtered subquery always names the declared table itself.)
func (t *tables) resolve(rv *pg.RangeVar) (res *policy.Resource, schema string, err *Error) {
	if rv.Catalogname != "" {
		return nil, "", refuse(CodeUndeclared, rv.Location, "cross-database reference %s.%s.%s", rv.Catalogname, rv.Schemaname, rv.Relname)
	}
	// pg_catalog is searched before the search path, and pg_* names are
	// reserved for the system: an unqualified pg_class is the catalog.
	if systemSchemas[rv.Schemaname] || strings.HasPrefix(rv.Relname, "pg_") || strings.HasPrefix(rv.Schemaname, "pg_") {
		return nil, "", refuse(CodeSystemCatalog, rv.Location, "system catalogs such as %s cannot be read through ragfence", qualified(rv))
	}
	candidates := []string{rv.Schemaname}
	if rv.Schemaname == "" {
		candidates = t.path
	}
	for i, s := range candidates {
		k := t.key(s, rv.Relname)
		if res := t.resources[k]; res != nil {
			return res, "", nil
		}
		if t.unfiltered[k] {
			if rv.Schemaname == "" && i > 0 {
				return nil, s, nil
			}
			return nil, "", nil
		}
	}
	return nil, "", refuse(CodeUndeclared, rv.Location,
		"table %s is not declared in the policy; protect it as a resource or list it under unfiltered:", qualified(rv))
}

func qualified(rv *pg.RangeVar) string {
	if rv.Schemaname == "" {
		return rv.Relname
	}
	return rv.Schemaname + "." + rv.Relname
}
