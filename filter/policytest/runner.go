package policytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	sq "github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// Beginner starts the transaction a test file runs in (*pgx.Conn, *pgxpool.Pool).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Runner runs test files against one policy set.
type Runner struct {
	set    *policy.Set
	policy *filter.Policy
	// tables maps each resource and relation's unqualified table name to
	// the name as the policy writes it.
	tables map[string]string
	// Now is the clock of cases without a context time; time.Now by default.
	Now func() time.Time
}

// NewRunner compiles set for testing. Tables are looked up by their
// unqualified names, so the scratch schema's fixture tables stand in for
// them even when the policy qualifies them with a schema.
func NewRunner(set *policy.Set) (*Runner, error) {
	local, tables := unqualified(set)
	p, err := filter.Compile(local)
	if err != nil {
		return nil, err
	}
	return &Runner{set: local, policy: p, tables: tables, Now: time.Now}, nil
}

// Result is the outcome of one case.
type Result struct {
	File string
	Line int
	Case string
	Pass bool
	// Unexpected ids were seen but not expected; Missing were expected but
	// not seen. Detail explains any other failure.
	Unexpected []string
	Missing    []string
	// Granted names, for each unexpected id, the allow rules that let it
	// in (an agent grant's as agent:rule): why the subject sees it.
	Granted map[string][]string
	Detail  string
}

func (r Result) String() string {
	where := fmt.Sprintf("%s:%d: %s", r.File, r.Line, r.Case)
	if r.Pass {
		return "PASS " + where
	}
	var why []string
	if len(r.Unexpected) > 0 {
		seen := make([]string, len(r.Unexpected))
		for i, id := range r.Unexpected {
			seen[i] = id
			if rules := r.Granted[id]; len(rules) > 0 {
				seen[i] += " (allowed by " + strings.Join(rules, ", ") + ")"
			}
		}
		why = append(why, "seen but not expected: "+strings.Join(seen, ", "))
	}
	if len(r.Missing) > 0 {
		why = append(why, "expected but not seen: "+strings.Join(r.Missing, ", "))
	}
	if r.Detail != "" {
		why = append(why, r.Detail)
	}
	return "FAIL " + where + ": " + strings.Join(why, "; ")
}

// Run runs every case of f in one transaction that is always rolled back.
func (r *Runner) Run(ctx context.Context, db Beginner, f *File) ([]Result, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy test %s: %w", f.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // rollback is the point
	if err := r.setup(ctx, tx, f); err != nil {
		return nil, fmt.Errorf("policy test %s: %w", f.Name, err)
	}
	out := make([]Result, 0, len(f.Cases))
	for i := range f.Cases {
		res, err := r.runCase(ctx, tx, &f.Cases[i])
		if err != nil {
			return nil, fmt.Errorf("policy test %s:%d: case %q: %w", f.Name, f.Cases[i].Line, f.Cases[i].Name, err)
		}
		res.File, res.Line, res.Case = f.Name, f.Cases[i].Line, f.Cases[i].Name
		out = append(out, res)
	}
	return out, nil
}

// setup creates the scratch schema, runs the file's DDL and loads fixtures.
func (r *Runner) setup(ctx context.Context, tx pgx.Tx, f *File) error {
	scratch := "ragfence_policytest_" + randomHex()
	var path string
	if err := tx.QueryRow(ctx, "SHOW search_path").Scan(&path); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+scratch); err != nil {
		return fmt.Errorf("create scratch schema: %w", err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL search_path = %s, %s", scratch, path)); err != nil {
		return err
	}
	if strings.TrimSpace(f.Schema) != "" {
		if _, err := tx.Exec(ctx, f.Schema); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	for _, table := range f.fixtureOrder {
		if err := r.load(ctx, tx, scratch, table, f.Fixtures[table]); err != nil {
			return fmt.Errorf("fixtures %s: %w", table, err)
		}
	}
	return nil
}

// load inserts rows into table in the scratch schema, creating the table
// like the real one first when the file's schema did not create it.
func (r *Runner) load(ctx context.Context, tx pgx.Tx, scratch, table string, rows []map[string]any) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", scratch+"."+policy.QuoteIdent(table)).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		like := table
		if q, ok := r.tables[table]; ok {
			like = q
		}
		ddl := fmt.Sprintf("CREATE TABLE %s.%s (LIKE %s INCLUDING DEFAULTS)", scratch, policy.QuoteIdent(table), quoteQualified(like))
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("no table %s in the file's schema: and copying the database's failed (%w); create it in the file's schema: key", table, err)
		}
	}
	// Rows go in in runs of the same columns, so a column a row leaves out
	// gets its default rather than NULL.
	t := policy.QuoteIdent(table)
	for start := 0; start < len(rows); {
		cols := columnsOf(rows[start : start+1])
		end := start + 1
		for end < len(rows) && slices.Equal(columnsOf(rows[end:end+1]), cols) {
			end++
		}
		b, err := json.Marshal(rows[start:end])
		if err != nil {
			return err
		}
		list := strings.Join(cols, ", ")
		if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1)", t, list, list, t), b); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func columnsOf(rows []map[string]any) []string {
	seen := map[string]bool{}
	var cols []string
	for _, row := range rows {
		for k := range row {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, policy.QuoteIdent(k))
			}
		}
	}
	sort.Strings(cols)
	return cols
}

func (r *Runner) runCase(ctx context.Context, tx pgx.Tx, c *Case) (Result, error) {
	frag, err := r.fragment(c)
	if c.Error != "" {
		got := string(filter.CodeOf(err))
		if got == c.Error {
			return Result{Pass: true}, nil
		}
		if err == nil {
			return Result{Detail: fmt.Sprintf("want error %s, got a fragment (outcome %s)", c.Error, frag.Outcome)}, nil
		}
		return Result{Detail: fmt.Sprintf("want error %s, got: %v", c.Error, err)}, nil
	}
	if err != nil {
		return Result{Detail: err.Error()}, nil
	}
	res := r.set.Resources[frag.Resource]
	seen, granted, err := r.visible(ctx, tx, res, frag)
	if err != nil {
		return Result{}, err
	}
	out := diff(seen, c.See)
	for _, id := range out.Unexpected {
		if out.Granted == nil {
			out.Granted = map[string][]string{}
		}
		out.Granted[id] = granted[id]
	}
	for _, col := range sortedKeys(c.Masked) {
		hidden, err := r.ids(ctx, tx, res, frag, maskedWhere(frag, res, col))
		if err != nil {
			return Result{}, err
		}
		if d := diff(hidden, c.Masked[col]); !d.Pass {
			out.Detail = strings.TrimPrefix(out.Detail+"; ", "; ") +
				fmt.Sprintf("masked %s: reads NULL for [%s], want [%s]", col, strings.Join(hidden, ", "), strings.Join(stringIDs(c.Masked[col]), ", "))
		}
	}
	out.Pass = out.Pass && out.Detail == ""
	return out, nil
}

func (r *Runner) fragment(c *Case) (*filter.Fragment, error) {
	resource := c.Resource
	if resource == "" {
		if len(r.set.Names) != 1 {
			return nil, fmt.Errorf("the policy has %d resources; name one with the case's resource: key", len(r.set.Names))
		}
		resource = r.set.Names[0]
	}
	req := filter.Request{Subject: c.subject, Agent: c.Agent, Context: policy.Context{Time: r.Now()}}
	if c.subject != nil {
		s, err := r.set.CheckSubject(c.subject)
		if err != nil {
			return nil, &filter.Error{Code: filter.CodeInvalidSubject, Resource: resource, Msg: err.Error()}
		}
		req.Subject = s
	}
	if c.Context != nil {
		ctx, err := c.Context.parse(req.Context.Time)
		if err != nil {
			return nil, err
		}
		req.Context = ctx
	}
	return r.policy.Fragment(resource, req)
}

func (c *contextYAML) parse(now time.Time) (policy.Context, error) {
	out := policy.Context{Time: now}
	if c.Time != "" {
		t, err := time.Parse(time.RFC3339, c.Time)
		if err != nil {
			return out, fmt.Errorf("context.time: want RFC 3339, e.g. 2026-11-23T10:00:00Z: %w", err)
		}
		out.Time = t
	}
	if c.IP != "" {
		ip, err := netip.ParseAddr(c.IP)
		if err != nil {
			return out, fmt.Errorf("context.ip: %w", err)
		}
		out.IP = ip
	}
	return out, nil
}

// maskedWhere selects rows whose column has a value the mask hides.
func maskedWhere(f *filter.Fragment, res *policy.Resource, col string) sq.Sqlizer {
	_, table := res.TableName()
	return sq.Expr("("+policy.QuoteIdent(table, col)+" IS NOT NULL AND (?) IS NULL)", f.Column(col))
}

// ids returns the ids of res visible through f (and extra, if given).
// visible returns the ids the fragment lets through and, in the same
// statement, the allow rules that let each in.
func (r *Runner) visible(ctx context.Context, tx pgx.Tx, res *policy.Resource, f *filter.Fragment) ([]string, map[string][]string, error) {
	_, table := res.TableName()
	sql, args, err := sq.Select(policy.QuoteIdent(table, res.ID) + "::text").Column(f.Granted()).
		From(policy.QuoteIdent(table)).Where(f).PlaceholderFormat(sq.Dollar).ToSql()
	if err != nil {
		return nil, nil, err
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", res.Name, err)
	}
	var ids []string
	granted := map[string][]string{}
	var (
		id    string
		rules []string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &rules}, func() error {
		ids = append(ids, id)
		granted[id] = rules
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", res.Name, err)
	}
	return ids, granted, nil
}

func (r *Runner) ids(ctx context.Context, tx pgx.Tx, res *policy.Resource, f *filter.Fragment, extra sq.Sqlizer) ([]string, error) {
	_, table := res.TableName()
	q := sq.Select(policy.QuoteIdent(table, res.ID) + "::text").From(policy.QuoteIdent(table)).
		Where(f).PlaceholderFormat(sq.Dollar)
	if extra != nil {
		q = q.Where(extra)
	}
	sql, args, err := q.ToSql()
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", res.Name, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", res.Name, err)
	}
	return ids, nil
}

func diff(seen []string, want []any) Result {
	w := stringIDs(want)
	var out Result
	for _, id := range seen {
		if !slices.Contains(w, id) {
			out.Unexpected = append(out.Unexpected, id)
		}
	}
	for _, id := range w {
		if !slices.Contains(seen, id) {
			out.Missing = append(out.Missing, id)
		}
	}
	sortIDs(out.Unexpected)
	sortIDs(out.Missing)
	out.Pass = len(out.Unexpected) == 0 && len(out.Missing) == 0
	return out
}

func stringIDs(ids []any) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprint(id)
	}
	return out
}

// sortIDs sorts numerically when ids are numbers, so 10 follows 9.
func sortIDs(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		if len(a) != len(b) && isDigits(a) && isDigits(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteQualified(name string) string {
	schema, table, ok := strings.Cut(name, ".")
	if !ok {
		return policy.QuoteIdent(name)
	}
	return policy.QuoteIdent(schema, table)
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// unqualified returns a copy of set whose resources and relations name
// their tables without a schema, and the map from those names back.
func unqualified(set *policy.Set) (*policy.Set, map[string]string) {
	out := *set
	out.Resources = make(map[string]*policy.Resource, len(set.Resources))
	tables := map[string]string{}
	for name, res := range set.Resources {
		rc := *res
		_, rc.Table = res.TableName()
		tables[rc.Table] = res.Table
		rc.Relations = make(map[string]*policy.Relation, len(res.Relations))
		for rn, rel := range res.Relations {
			relc := *rel
			_, relc.Table = rel.TableName()
			tables[relc.Table] = rel.Table
			rc.Relations[rn] = &relc
		}
		out.Resources[name] = &rc
	}
	return &out, tables
}
