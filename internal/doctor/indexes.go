package doctor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// cosineOps is the operator class whose index serves <=>, the cosine
// distance the retriever orders by.
const cosineOps = "vector_cosine_ops"

// vectorIndex checks for an HNSW or IVFFlat index the retriever's
// ORDER BY embedding <=> $1 can use.
func (c *resourceCheck) vectorIndex(t *table) {
	emb := t.Columns[c.res.Embedding]
	var notes []string
	for _, ix := range t.Indexes {
		if (ix.Method != "hnsw" && ix.Method != "ivfflat") || ix.Columns[0] != c.res.Embedding {
			continue
		}
		switch {
		case ix.OpClasses[0] != cosineOps:
			notes = append(notes, fmt.Sprintf("%s uses %s, which <=> cannot use", ix.Name, ix.OpClasses[0]))
		case !ix.Valid:
			notes = append(notes, fmt.Sprintf("%s is invalid (a failed build): DROP INDEX %s first", ix.Name, ix.Name))
		case ix.Partial:
			notes = append(notes, fmt.Sprintf("%s is partial, so only searches whose filter implies its WHERE use it", ix.Name))
		default:
			c.add(OK, CodeVectorIndex, "", "%s (%s, %s) serves ORDER BY %s <=> ...", ix.Name, ix.Method, cosineOps, emb.Quoted)
			return
		}
	}
	msg := fmt.Sprintf("no HNSW or IVFFlat index with %s on %s.%s: the retriever orders by <=> (cosine distance), so every search "+
		"computes the distance to every row the policy lets through", cosineOps, t.Name, emb.Quoted)
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	fix := fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s USING hnsw (%s %s)", t.Name, emb.Quoted, cosineOps)
	if v := parseVersion(c.pgv.Installed); v.less(fixedPgvector) {
		msg += fmt.Sprintf("; build it serially: pgvector %s can overflow in parallel HNSW builds (pgvector #959, fixed in %s)",
			orUnknown(c.pgv.Installed), fixedPgvector)
		fix = "SET max_parallel_maintenance_workers = 0; " + fix
	}
	c.add(Warning, CodeVectorIndex, fix, "%s", msg)
}

// columnIndexes checks that each column of the resource's table that a rule
// uses leads an index, or follows the tenant column in one: every filtered
// query pins the tenant with an equality, so (tenant_id, owner_id) serves
// owner_id = subject.id.
func (c *resourceCheck) columnIndexes(t *table, u uses) {
	pinned := map[string]bool{c.res.Tenant: true}
	_, tableName := c.res.TableName()
	for _, col := range u.Columns {
		info, ok := t.Columns[col]
		if !ok {
			continue // the catalog check reported it
		}
		used := strings.Join(u.Rules[col], ", ")
		if ix, ok := servingIndex(t, col, info, pinned); ok {
			c.add(OK, CodeColumnIndex, "", "column %s (%s) is served by %s (%s)", info.Quoted, used, ix.Name, ix.Method)
			continue
		}
		msg := fmt.Sprintf("column %s (%s; %s) leads no index the planner can use, so rows are tested against it one by one "+
			"and a selective policy cannot narrow the search before the vector scan", info.Quoted, info.Type, used)
		msg += unusableNotes(t, col)
		if u.Correlated[col] {
			msg += fmt.Sprintf("; it correlates an EXISTS over another table: a denormalised access column on %s "+
				"(e.g. an array of the users or groups that may read the row, with a GIN index) avoids the per-row EXISTS", tableName)
		}
		fix, why := suggestIndex(t.Name, c.res.Tenant, col, info, t.Columns)
		c.add(Warning, CodeColumnIndex, fix, "%s%s", msg, why)
	}
}

// relationIndexes checks, best effort, that the relation columns EXISTS
// conditions compare lead an index: otherwise each EXISTS may scan the
// relation's table.
func (c *resourceCheck) relationIndexes(ctx context.Context, u uses) error {
	_, tableName := c.res.TableName()
	for _, name := range slices.Sorted(maps.Keys(u.Relations)) {
		rel := c.res.Relations[name]
		t, err := c.cat.table(ctx, rel.Table)
		if err != nil {
			return err
		}
		if t == nil {
			continue // the catalog check reported it
		}
		cols := u.Relations[name]
		// An EXISTS pins the relation's tenant and every column it compares.
		pinned := map[string]bool{rel.Tenant: true}
		for col := range cols {
			pinned[col] = true
		}
		for _, col := range slices.Sorted(maps.Keys(cols)) {
			info, ok := t.Columns[col]
			if !ok {
				continue
			}
			used := strings.Join(cols[col], ", ")
			if ix, ok := servingIndex(t, col, info, pinned); ok {
				c.add(OK, CodeRelationIndex, "", "relation %s: column %s (compared by %s) is served by %s (%s)", name, info.Quoted, used, ix.Name, ix.Method)
				continue
			}
			msg := fmt.Sprintf("relation %s: column %s.%s (%s; compared by %s) leads no index the planner can use, so each EXISTS may scan %s; "+
				"a denormalised access column on %s (e.g. an array of the users or groups that may read the row, with a GIN index) "+
				"avoids the per-row EXISTS altogether", name, t.Name, info.Quoted, info.Type, used, t.Name, tableName)
			msg += unusableNotes(t, col)
			fix, why := suggestIndex(t.Name, rel.Tenant, col, info, t.Columns)
			c.add(Warning, CodeRelationIndex, fix, "%s%s", msg, why)
		}
	}
	return nil
}

// ginTyped are columns whose rules use operators only GIN (or GiST)
// indexes answer: arrays (&&, @>), jsonb (@>, ?) and tsvector (@@).
func ginTyped(c column) bool {
	return c.Category == "A" || c.TypeName == "jsonb" || c.TypeName == "tsvector"
}

// servingIndex returns a valid, non-partial index that can find rows by
// col when the columns in pinned are compared with equalities: a GIN index
// holding col, or a btree (GiST) index whose columns before col are all
// pinned. A hash index serves a scalar column it holds alone.
func servingIndex(t *table, col string, info column, pinned map[string]bool) (index, bool) {
	for _, ix := range t.Indexes {
		if !ix.Valid || ix.Partial {
			continue
		}
		pos := slices.Index(ix.Columns, col)
		if pos < 0 {
			continue
		}
		prefixPinned := true
		for _, before := range ix.Columns[:pos] {
			prefixPinned = prefixPinned && pinned[before]
		}
		switch ix.Method {
		case "gin":
			return ix, true
		case "gist":
			if prefixPinned {
				return ix, true
			}
		case "btree":
			if prefixPinned && !ginTyped(info) {
				return ix, true
			}
		case "hash":
			if pos == 0 && !ginTyped(info) {
				return ix, true
			}
		}
	}
	return index{}, false
}

// unusableNotes names the indexes that hold col but cannot serve it.
func unusableNotes(t *table, col string) string {
	var notes []string
	for _, ix := range t.Indexes {
		if !slices.Contains(ix.Columns, col) {
			continue
		}
		switch {
		case !ix.Valid:
			notes = append(notes, fmt.Sprintf("%s is invalid (a failed build): DROP INDEX %s", ix.Name, ix.Name))
		case ix.Partial:
			notes = append(notes, fmt.Sprintf("%s is partial, so it serves only queries that imply its WHERE", ix.Name))
		default:
			notes = append(notes, fmt.Sprintf("%s (%s) holds it behind columns the policy does not pin", ix.Name, ix.Method))
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}

// suggestIndex returns the CREATE INDEX that serves col: GIN for arrays,
// jsonb and tsvector; otherwise a btree led by the tenant column, since
// every filtered query pins it. why explains the choice, or says why there
// is no statement.
func suggestIndex(table, tenant, col string, info column, cols map[string]column) (fix, why string) {
	switch {
	case info.TypeName == "json":
		return "", fmt.Sprintf("; json has no index operator class: ALTER TABLE %s ALTER COLUMN %s TYPE jsonb, then index it with GIN", table, info.Quoted)
	case ginTyped(info):
		return fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s USING gin (%s)", table, info.Quoted), ""
	case col == tenant || cols[tenant].Quoted == "":
		return fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s)", table, info.Quoted), ""
	default:
		return fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s, %s)", table, cols[tenant].Quoted, info.Quoted),
			"; lead the index with the tenant column, which every filtered query compares"
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown version)"
	}
	return s
}
