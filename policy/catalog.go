package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Catalog tells which columns a table has in a live database.
type Catalog interface {
	// Columns returns the table's columns, or ok=false when the table (as
	// the database's search path resolves it) does not exist.
	Columns(ctx context.Context, table string) (cols []string, ok bool, err error)
}

// CheckCatalog compares set with a live database: every resource's and
// relation's table must exist and have the columns the policy names or its
// conditions use. It returns an ErrorList (code catalog) or nil; err is for
// a failing database.
func CheckCatalog(ctx context.Context, cat Catalog, set *Set) (ErrorList, error) {
	var errs ErrorList
	for _, name := range set.Names {
		res := set.Resources[name]
		if err := checkResourceCatalog(ctx, cat, res, &errs); err != nil {
			return nil, err
		}
	}
	errs.sort()
	return errs, nil
}

func checkResourceCatalog(ctx context.Context, cat Catalog, res *Resource, errs *ErrorList) error {
	report := func(p Pos, rule, format string, args ...any) {
		*errs = append(*errs, &Error{File: p.File, Line: p.Line, Col: p.Col, Resource: res.Name, Rule: rule, Code: CodeCatalog, Msg: fmt.Sprintf(format, args...)})
	}
	cols, ok, err := cat.Columns(ctx, res.Table)
	if err != nil {
		return fmt.Errorf("policy: read the columns of %s: %w", res.Table, err)
	}
	if !ok {
		report(res.Pos, "", "table %s does not exist in the database; create it or fix table:", res.Table)
		return nil
	}
	missing := func(col string) string {
		if slices.Contains(cols, col) {
			return ""
		}
		return fmt.Sprintf("table %s has no column %q%s", res.Table, col, hintFor(col, cols))
	}
	for _, col := range res.namedColumns() {
		if msg := missing(col); msg != "" {
			report(res.Pos, "", "%s", msg)
		}
	}
	for _, r := range res.rules() {
		for _, col := range r.When.Columns {
			if msg := missing(col); msg != "" {
				report(r.Pos, r.Name, "%s", msg)
			}
		}
	}
	for _, m := range res.Masks {
		for _, col := range append([]string{m.Column}, m.Unless.Columns...) {
			if msg := missing(col); msg != "" {
				report(m.Pos, "mask "+m.Column, "%s", msg)
			}
		}
	}
	for _, rel := range res.Relations {
		relCols, ok, err := cat.Columns(ctx, rel.Table)
		if err != nil {
			return fmt.Errorf("policy: read the columns of %s: %w", rel.Table, err)
		}
		switch {
		case !ok:
			report(rel.Pos, "", "relation %s: table %s does not exist in the database", rel.Name, rel.Table)
		case !slices.Contains(relCols, rel.Tenant):
			report(rel.Pos, "", "relation %s: table %s has no tenant column %q%s", rel.Name, rel.Table, rel.Tenant, hintFor(rel.Tenant, relCols))
		}
	}
	return nil
}

// namedColumns are the columns every use of the resource needs: tenant, id,
// the document column, its columns list and the plain filterable columns. (Content, embedding and
// metadata matter only to the retriever, which checks them itself.)
func (r *Resource) namedColumns() []string {
	cols := []string{r.Tenant, r.ID}
	if r.Document != "" {
		cols = append(cols, r.Document) // guardrails read it from every row
	}
	cols = append(cols, r.Columns...)
	for _, f := range r.Filterable {
		if !strings.Contains(f, ".") {
			cols = append(cols, f)
		}
	}
	slices.Sort(cols)
	return slices.Compact(cols)
}

// rules returns every rule of the resource, agents' included.
func (r *Resource) rules() []*Rule {
	out := slices.Concat(r.Allow, r.Deny)
	agents := make([]string, 0, len(r.Agents))
	for a := range r.Agents {
		agents = append(agents, a)
	}
	slices.Sort(agents)
	for _, a := range agents {
		out = append(out, r.Agents[a].Rules()...)
	}
	return out
}
