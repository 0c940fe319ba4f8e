package doctor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ragfence/ragfence/policy"
)

// Versions of pgvector the checks compare with.
var (
	// minPgvector has iterative index scans (hnsw.iterative_scan), which
	// the retriever turns on so a selective policy still gets k rows.
	minPgvector = version{0, 8, 0}
	// fixedPgvector fixes the overflow in parallel HNSW builds (pgvector #959).
	fixedPgvector = version{0, 8, 2}
)

// Check compares the database with what set needs for fast, correct
// filtered vector search and reports one finding per check: the server's
// pgvector, then for each resource its table and columns, its vector
// index, the indexes of the columns its rules use (its relations'
// included) and its planner statistics. It only reads the catalogs. The
// error is for a failing database; problems found are findings.
func Check(ctx context.Context, db Querier, set *policy.Set) (Report, error) {
	var rep Report
	pgv, err := readPgvector(ctx, db)
	if err != nil {
		return Report{}, fmt.Errorf("doctor: read the pgvector version: %w", err)
	}
	rep.Findings = append(rep.Findings, checkPgvector(pgv))
	cat := newCatalog(db)
	catErrs, err := policy.CheckCatalog(ctx, cat, set)
	if err != nil {
		return Report{}, err
	}
	for _, name := range set.Names {
		c := &resourceCheck{res: set.Resources[name], cat: cat, pgv: pgv}
		for _, e := range catErrs {
			if e.Resource == name {
				c.catErrs = append(c.catErrs, e)
			}
		}
		if err := c.run(ctx); err != nil {
			return Report{}, err
		}
		rep.Findings = append(rep.Findings, c.out...)
	}
	return rep, nil
}

func checkPgvector(v pgvector) Finding {
	f := Finding{Code: CodePgvector}
	installed, available := parseVersion(v.Installed), parseVersion(v.Available)
	upgrade := "install pgvector " + fixedPgvector.String() + " or later on the server, then run ALTER EXTENSION vector UPDATE in this database"
	fix := ""
	if v.Available != "" && !available.less(fixedPgvector) {
		upgrade, fix = "the server has "+v.Available+" available", "ALTER EXTENSION vector UPDATE"
	}
	switch {
	case v.Installed == "" && v.Available == "":
		f.Severity, f.Message = Error, "pgvector is not installed on the server; install pgvector "+fixedPgvector.String()+" or later, then CREATE EXTENSION vector in this database"
	case v.Installed == "":
		f.Severity, f.Message, f.Fix = Error, "the vector extension is not created in this database", "CREATE EXTENSION vector"
	case installed.less(minPgvector):
		f.Severity, f.Fix = Error, fix
		f.Message = fmt.Sprintf("pgvector %s has no iterative index scans (%s): the retriever turns them on so a selective policy still returns k rows; %s",
			v.Installed, minPgvector, upgrade)
	case installed.less(fixedPgvector):
		f.Severity, f.Fix = Warning, fix
		f.Message = fmt.Sprintf("pgvector %s can overflow a buffer when it builds an HNSW index in parallel (pgvector #959, fixed in %s): "+
			"build HNSW indexes after SET max_parallel_maintenance_workers = 0 until you upgrade; %s", v.Installed, fixedPgvector, upgrade)
	default:
		f.Message = "pgvector " + v.Installed
	}
	return f
}

// resourceCheck runs the checks of one resource.
type resourceCheck struct {
	res     *policy.Resource
	cat     *catalog
	pgv     pgvector
	catErrs policy.ErrorList
	out     []Finding
}

func (c *resourceCheck) add(sev Severity, code, fix, format string, args ...any) {
	c.out = append(c.out, Finding{Severity: sev, Resource: c.res.Name, Code: code, Message: fmt.Sprintf(format, args...), Fix: fix})
}

func (c *resourceCheck) run(ctx context.Context) error {
	t, err := c.cat.table(ctx, c.res.Table)
	if err != nil {
		return err
	}
	for _, e := range c.catErrs {
		where := e.File + ":" + strconv.Itoa(e.Line)
		if e.Rule != "" {
			where += " (rule " + strconv.Quote(e.Rule) + ")"
		}
		c.add(Error, CodeCatalog, "", "%s; the policy is at %s", e.Msg, where)
	}
	if t == nil {
		return nil // the catalog error said so; nothing else can be checked
	}
	if len(c.catErrs) == 0 {
		c.add(OK, CodeCatalog, "", "table %s has every column the policy uses", t.Name)
	}
	if c.retrieverColumns(t) {
		c.vectorIndex(t)
	}
	u := ruleUses(c.res)
	c.columnIndexes(t, u)
	if err := c.relationIndexes(ctx, u); err != nil {
		return err
	}
	c.analyzed(t)
	seen := map[string]bool{t.Name: true}
	for _, name := range slices.Sorted(maps.Keys(c.res.Relations)) {
		rel, err := c.cat.table(ctx, c.res.Relations[name].Table)
		if err != nil {
			return err
		}
		if rel != nil && !seen[rel.Name] {
			seen[rel.Name] = true
			c.analyzed(rel)
		}
	}
	return nil
}

// retrieverColumns checks the columns the retriever selects besides id
// (which CheckCatalog checks); it reports whether the embedding column is
// a vector, so its index can be checked.
func (c *resourceCheck) retrieverColumns(t *table) bool {
	var missing []string
	for _, k := range []struct{ role, col string }{{"content", c.res.Content}, {"embedding", c.res.Embedding}, {"metadata", c.res.Metadata}} {
		if _, ok := t.Columns[k.col]; !ok {
			missing = append(missing, fmt.Sprintf("%s column %q", k.role, k.col))
		}
	}
	if len(missing) > 0 {
		c.add(Warning, CodeRetrieverColumns, "",
			"table %s has no %s, so POST /v1/retrieve cannot search this resource; that is fine if it is only filtered "+
				"(ragfence query, filter.Wrap), otherwise name the right columns in the policy (content:, embedding:, metadata:)",
			t.Name, strings.Join(missing, ", no "))
		return false
	}
	emb := t.Columns[c.res.Embedding]
	if emb.TypeName != "vector" {
		c.add(Warning, CodeRetrieverColumns, "",
			"embedding column %s is %s, not vector: the retriever compares it with a vector parameter using <=>; store embeddings as vector(N)",
			emb.Quoted, emb.Type)
		return false
	}
	c.add(OK, CodeRetrieverColumns, "", "content, embedding (%s) and metadata columns are there", emb.Type)
	return true
}

// analyzed checks that the planner has statistics for t.
func (c *resourceCheck) analyzed(t *table) {
	if t.Analyzed {
		c.add(OK, CodeAnalyze, "", "table %s has planner statistics", t.Name)
		return
	}
	rows := "an unknown number of rows"
	if t.Reltuples >= 0 {
		rows = fmt.Sprintf("about %.0f rows", t.Reltuples)
	}
	msg := fmt.Sprintf("table %s (%s) has never been analyzed: without statistics the planner guesses how many rows the policy "+
		"lets through and may pick the wrong scan for a search (walking the vector index when an index on the policy's columns "+
		"would be faster, or the reverse)", t.Name, rows)
	if t.Kind == "p" {
		msg += "; autovacuum never analyzes a partitioned table itself, so run ANALYZE after every large load"
	}
	c.add(Warning, CodeAnalyze, "ANALYZE "+t.Name, "%s", msg)
}

// version is a pgvector version, major.minor.patch.
type version [3]int

// parseVersion reads "0.8.0" (or "0.8.0-dev"); missing parts are 0.
func parseVersion(s string) version {
	var v version
	for i, part := range strings.SplitN(s, ".", 3) {
		end := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			part = part[:end]
		}
		v[i], _ = strconv.Atoi(part)
	}
	return v
}

func (v version) less(w version) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }
