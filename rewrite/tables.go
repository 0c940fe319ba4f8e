package rewrite

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/policy"
)

// tables resolves table references as PostgreSQL would on a connection with
// the given search path, against what the policy declares.
type tables struct {
	first      string // the first schema of the search path
	resources  map[string]*policy.Resource
	unfiltered map[string]bool
}

func newTables(set *policy.Set, searchPath []string) *tables {
	t := &tables{first: "public", resources: map[string]*policy.Resource{}, unfiltered: map[string]bool{}}
	for _, s := range searchPath {
		if s != "" && s != "$user" && s != "pg_catalog" {
			t.first = s
			break
		}
	}
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

// key normalises a reference: an unqualified name means the first schema
// of the search path. A name that exists only in a later schema is thus
// not matched and is refused as undeclared (fail closed), never mistaken.
func (t *tables) key(schema, name string) string {
	if schema == "" {
		schema = t.first
	}
	return schema + "." + name
}

// systemSchemas are never readable through the rewriter.
var systemSchemas = setOf("pg_catalog", "information_schema", "pg_toast")

// resolve says what a table reference is: a protected resource, an
// unfiltered table (nil, nil), or a refusal.
func (t *tables) resolve(rv *pg.RangeVar) (*policy.Resource, *Error) {
	if rv.Catalogname != "" {
		return nil, refuse(CodeUndeclared, rv.Location, "cross-database reference %s.%s.%s", rv.Catalogname, rv.Schemaname, rv.Relname)
	}
	// pg_catalog is searched before the search path, and pg_* names are
	// reserved for the system: an unqualified pg_class is the catalog.
	if systemSchemas[rv.Schemaname] || strings.HasPrefix(rv.Relname, "pg_") || strings.HasPrefix(rv.Schemaname, "pg_") {
		return nil, refuse(CodeSystemCatalog, rv.Location, "system catalogs such as %s cannot be read through ragfence", qualified(rv))
	}
	k := t.key(rv.Schemaname, rv.Relname)
	if res := t.resources[k]; res != nil {
		return res, nil
	}
	if t.unfiltered[k] {
		return nil, nil
	}
	return nil, refuse(CodeUndeclared, rv.Location,
		"table %s is not declared in the policy; protect it as a resource or list it under unfiltered:", qualified(rv))
}

func qualified(rv *pg.RangeVar) string {
	if rv.Schemaname == "" {
		return rv.Relname
	}
	return rv.Schemaname + "." + rv.Relname
}
