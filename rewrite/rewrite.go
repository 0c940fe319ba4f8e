package rewrite

import (
	"errors"
	"fmt"
	"strings"

	sq "github.com/Masterminds/squirrel"
	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/internal/deparse"
	"github.com/ragfence/ragfence/internal/pgwalk"
	"github.com/ragfence/ragfence/policy"
)

// Mode says how far the statement's author is trusted.
type Mode int

const (
	// Strict is for SQL an AI agent generated or an end user typed: only
	// operators and functions that cannot fail on a row's data. The
	// default (the zero value).
	Strict Mode = iota
	// Trusted is for SQL the application's developers wrote: any allowlisted
	// read-only function. In both modes the fence keeps every expression to
	// permitted rows (see the package documentation).
	Trusted
)

// Fragment is a policy fragment for one table reference: a SQL condition
// over the table's alias with ? placeholders (squirrel's Sqlizer), the
// expressions to select its columns as (masked ones masked), and a Shape
// that identifies its SQL text. *filter.Fragment implements it.
type Fragment interface {
	sq.Sqlizer
	// Args are ToSql's arguments; ColumnArgs(col) are Column(col)'s. A
	// cached rewrite binds them without rendering SQL again.
	Args() []any
	Masked() []string
	Column(col string) sq.Sqlizer
	ColumnArgs(col string) []any
	// Granted is a text[] of the allow rules that let a row in, and
	// GrantedArgs its arguments (Request.Explain).
	Granted() sq.Sqlizer
	GrantedArgs() []any
	Shape() string
}

// Fragments supplies the fragment of a protected resource for the table
// alias the rewriter uses; filter.Policy.Fragments binds one to a request.
// An error refuses the statement (code policy_refused, wrapping it).
type Fragments func(resource, alias string) (Fragment, error)

// Request is who a statement runs for and how far it is trusted.
type Request struct {
	Fragments Fragments
	Mode      Mode
	// NArgs is how many arguments the caller binds ($1..$NArgs).
	NArgs int
	// Explain adds a last output column, ragfence_rules (text[]): the
	// allow rules that let each row in. Only for a statement that reads
	// one protected table with no join, grouping, aggregate, DISTINCT or
	// set operation (each output row is one of its rows); others are
	// refused with explain_unsupported.
	Explain bool
}

// Result is a rewritten statement: SQL whose parameters are the caller's
// $1..$NArgs followed by Args, which the caller appends to its own.
type Result struct {
	SQL  string
	Args []any
	// Fragments are the policy fragments injected, one per protected reference.
	Fragments []Fragment
}

// Rewriter rewrites statements for one policy set and search path.
type Rewriter struct {
	set     *policy.Set
	tables  *tables
	cache   *cache
	columns map[string][]Column // by resource name; nil when no catalog was given
}

// Column is a column of a protected table as the database's catalog has it.
type Column struct {
	Name string
	// Comparable says that comparing the column with a literal or a
	// parameter cannot raise an error, whatever the rows hold: true for
	// scalar types (the value is converted to the column's type when the
	// statement is parsed or bound, and a type without the operator is
	// refused then), false for composite types and for arrays of a type
	// without equality (json[]): their comparisons look operators up as
	// they run, and fail on the rows they meet.
	Comparable bool
}

// Option configures New.
type Option func(*Rewriter)

// WithColumns gives the rewriter the protected tables' columns, by resource
// name, as the database's catalog has them (internal/pgcatalog reads them;
// filter.Wrap does so on its first statement). With them the rewriter lists
// the columns of a masked table whose policy names none, and moves a
// statement's conditions on comparable columns into the fence, where the
// table's indexes serve them; without them it does neither.
func WithColumns(cols map[string][]Column) Option {
	return func(rw *Rewriter) { rw.columns = cols }
}

// New returns a rewriter for the policy set on a connection whose
// search_path is searchPath (schemas in order; pg_catalog always comes
// first).
func New(set *policy.Set, searchPath []string, opts ...Option) *Rewriter {
	rw := &Rewriter{set: set, tables: newTables(set, searchPath), cache: newCache(DefaultCacheSize)}
	for _, o := range opts {
		o(rw)
	}
	return rw
}

// columnNames are res's columns: the policy's list, else the catalog's, else
// nil.
func (rw *Rewriter) columnNames(res *policy.Resource) []string {
	if res.Columns != nil {
		return res.Columns
	}
	cols := rw.columns[res.Name]
	if cols == nil {
		return nil
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return names
}

// Set is the policy set the rewriter applies.
func (rw *Rewriter) Set() *policy.Set { return rw.set }

// Rewrite makes every reference to a protected table in sql yield only the
// rows req's subject may see, or refuses the statement with an *Error.
func (rw *Rewriter) Rewrite(sql string, req Request) (*Result, error) {
	if req.Fragments == nil {
		return nil, &Error{Code: CodePolicy, Msg: "no fragment source: the request has no policy bound", Position: -1, Err: errNoFragments}
	}
	key := cacheKey(sql, req)
	if e, ok := rw.cache.get(key); ok {
		if e.refusal != nil {
			return nil, e.refusal
		}
		frags, args, shapes, err := rw.bind(e.placed, req.Fragments)
		if err != nil {
			return nil, err
		}
		if out, ok := rw.cache.variant(e, shapes); ok {
			return &Result{SQL: out, Args: args, Fragments: frags}, nil
		}
	}
	res, placed, err := rw.rewrite(sql, req)
	var refusal *Error
	if err != nil {
		if re, ok := err.(*Error); ok && re.Code != CodePolicy {
			// The statement itself is refused, for every request.
			refusal = re
			rw.cache.put(key, nil, "", "", refusal)
		}
		return nil, err
	}
	var shapes strings.Builder
	for _, f := range res.Fragments {
		shapes.WriteString(f.Shape())
		shapes.WriteByte(0)
	}
	rw.cache.put(key, placed, shapes.String(), res.SQL, nil)
	return res, nil
}

// rewrite parses and rewrites without the cache.
func (rw *Rewriter) rewrite(sql string, req Request) (*Result, []placement, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, nil, &Error{Code: CodeSyntax, Msg: err.Error(), Position: -1, Err: err}
	}
	sel, err := singleSelect(tree)
	if err != nil {
		return nil, nil, err
	}
	w := &walker{rw: rw, req: req, nextParam: req.NArgs + 1, masked: rw.maskedNames(tree), relNames: relationNames(tree), refs: tableReads(tree)}
	if err := w.checkParams(tree, req.NArgs); err != nil {
		return nil, nil, err
	}
	if req.Explain {
		if w.explainFrom = explainTable(sel); w.explainFrom == nil {
			return nil, nil, refuse(CodeExplain, -1, "explaining rows needs a statement that reads one protected table, with no join, grouping, aggregate, DISTINCT or set operation")
		}
	}
	w.selectStmt(sel, nil, true)
	if w.err != nil {
		return nil, nil, w.err
	}
	if req.Explain {
		if err := w.explainColumn(sel); err != nil {
			return nil, nil, err
		}
	}
	w.buildFences()
	// pg_query's deparser drops parentheses that matter; deparse writes
	// them back or refuses a statement it cannot write faithfully.
	out, err := deparse.Statement(tree)
	if err != nil {
		return nil, nil, &Error{Code: CodeExpression, Msg: "the statement cannot be rewritten faithfully: " + err.Error(), Position: -1, Err: err}
	}
	return &Result{SQL: out, Args: w.args, Fragments: w.frags}, w.placed, nil
}

// explainColumn is the output column Request.Explain adds.
const explainColumn = policy.ReservedPrefix + "rules"

// explainTable is the table whose rows s returns one for one, or nil.
func explainTable(s *pg.SelectStmt) *pg.RangeVar {
	if s.Op != pg.SetOperation_SETOP_NONE || len(s.FromClause) != 1 || s.GroupClause != nil || s.HavingClause != nil ||
		s.DistinctClause != nil || s.WindowClause != nil || aggregates(s.TargetList) {
		return nil
	}
	return s.FromClause[0].GetRangeVar()
}

// explainColumn selects the rules column of the explained table's fence,
// unless a * of the statement's already does.
func (w *walker) explainColumn(s *pg.SelectStmt) error {
	rs := s.FromClause[0].GetRangeSubselect()
	if rs == nil || w.fences[rs] == nil {
		return refuse(CodeExplain, -1, "explaining rows needs a statement that reads one protected table; this one reads none")
	}
	for _, t := range s.TargetList {
		if ref := t.GetResTarget().GetVal().GetColumnRef(); ref != nil && ref.Fields[len(ref.Fields)-1].GetAStar() != nil {
			return nil
		}
	}
	ref := pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(rs.Alias.Aliasname), pg.MakeStrNode(explainColumn)}, -1)
	s.TargetList = append(s.TargetList, pg.MakeResTargetNodeWithNameAndVal(explainColumn, ref, -1))
	return nil
}

// singleSelect returns the one SELECT of tree, refusing anything else.
func singleSelect(tree *pg.ParseResult) (*pg.SelectStmt, error) {
	if len(tree.Stmts) != 1 {
		return nil, refuse(CodeNotAQuery, -1, "give exactly one statement, not %d", len(tree.Stmts))
	}
	raw := tree.Stmts[0]
	sel := raw.Stmt.GetSelectStmt()
	if sel == nil {
		kind := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", raw.Stmt.Node), "*pg_query.Node_"), "Stmt")
		return nil, refuse(CodeNotAQuery, raw.StmtLocation, "only SELECT is allowed, not %s", kind)
	}
	return sel, nil
}

// checkParams refuses $n beyond the caller's arguments.
func (w *walker) checkParams(tree *pg.ParseResult, nargs int) error {
	var err error
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if p := n.GetParamRef(); p != nil && err == nil && (p.Number < 1 || int(p.Number) > nargs) {
			err = refuse(CodeParam, p.Location, "$%d is used but %d argument(s) were given", p.Number, nargs)
		}
		pgwalk.EachChild(n, visit)
	}
	visit(tree.Stmts[0].Stmt)
	return err
}

// maskedNames are the masked columns of every protected table the statement
// names anywhere (CTEs shadowing them included: refusing too much is safe).
func (rw *Rewriter) maskedNames(tree *pg.ParseResult) map[string]bool {
	out := map[string]bool{}
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if rv := n.GetRangeVar(); rv != nil {
			if res, _, err := rw.tables.resolve(rv); err == nil && res != nil {
				for _, m := range res.Masks {
					out[m.Column] = true
				}
			}
		}
		pgwalk.EachChild(n, visit)
	}
	visit(tree.Stmts[0].Stmt)
	return out
}

// relationNames are the names the statement gives tables, aliases and CTEs
// anywhere: a column reference that is one of them may be a whole row.
func relationNames(tree *pg.ParseResult) map[string]bool {
	out := map[string]bool{}
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		switch x := n.Node.(type) {
		case *pg.Node_RangeVar:
			out[x.RangeVar.Relname] = true
			if x.RangeVar.Alias != nil {
				out[x.RangeVar.Alias.Aliasname] = true
			}
		case *pg.Node_RangeSubselect:
			if x.RangeSubselect.Alias != nil {
				out[x.RangeSubselect.Alias.Aliasname] = true
			}
		case *pg.Node_CommonTableExpr:
			out[x.CommonTableExpr.Ctename] = true
		case *pg.Node_JoinExpr:
			if x.JoinExpr.Alias != nil {
				out[x.JoinExpr.Alias.Aliasname] = true
			}
		}
		pgwalk.EachChild(n, visit)
	}
	visit(tree.Stmts[0].Stmt)
	return out
}

// tableReads counts how often the statement reads each unqualified name.
func tableReads(tree *pg.ParseResult) map[string]int {
	out := map[string]int{}
	var visit func(*pg.Node)
	visit = func(n *pg.Node) {
		if rv := n.GetRangeVar(); rv != nil && rv.Schemaname == "" {
			out[rv.Relname]++
		}
		pgwalk.EachChild(n, visit)
	}
	visit(tree.Stmts[0].Stmt)
	return out
}

var errNoFragments = errors.New("rewrite: Request.Fragments is nil")
