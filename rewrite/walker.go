package rewrite

import (
	"fmt"
	"reflect"
	"strings"

	sq "github.com/Masterminds/squirrel"
	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/internal/dollar"
	"github.com/ragfence/ragfence/internal/pgwalk"
	"github.com/ragfence/ragfence/policy"
)

// scope is the CTE names visible at a point of the statement.
type scope struct {
	names map[string]bool
	outer *scope
}

func (s *scope) has(name string) bool {
	for ; s != nil; s = s.outer {
		if s.names[name] {
			return true
		}
	}
	return false
}

// walker rewrites one statement in place.
type walker struct {
	rw          *Rewriter
	req         Request
	nextParam   int
	args        []any
	frags       []Fragment
	masked      map[string]bool // names of masked columns of referenced resources
	placed      []placement
	fences      map[*pg.RangeSubselect]*fence // the filtered subqueries put in
	orders      []func()                      // top-k orderings to move into fences
	explainFrom *pg.RangeVar                  // Request.Explain: the one table whose rows the statement returns
	refs        map[string]int                // how often each unqualified table name is read
	vetted      map[*pg.Node]bool             // rows and * that the parser checks (vetRows)
	relNames    map[string]bool               // tables, aliases and CTEs named anywhere (wholeRow)
	err         error
}

func (w *walker) fail(e *Error) {
	if w.err == nil {
		w.err = e
	}
}

// selectStmt rewrites one SELECT; top says whether it is the statement (or
// an arm of its set operation) rather than a subquery.
func (w *walker) selectStmt(s *pg.SelectStmt, sc *scope, top bool) {
	if s == nil || w.err != nil {
		return
	}
	if s.IntoClause != nil {
		w.fail(refuse(CodeWrite, -1, "SELECT INTO creates a table; only reads are allowed"))
		return
	}
	if len(s.LockingClause) > 0 {
		w.fail(refuse(CodeWrite, -1, "FOR UPDATE/SHARE locks rows; only plain reads are allowed"))
		return
	}
	sc = w.withClause(s.WithClause, sc)
	w.selectStmt(s.Larg, sc, top)
	w.selectStmt(s.Rarg, sc, top)
	for _, f := range s.FromClause {
		w.fromItem(f, sc)
	}
	for _, t := range s.TargetList {
		w.expr(t, sc, true)
	}
	for _, n := range []*pg.Node{s.WhereClause, s.HavingClause} {
		w.expr(n, sc, false)
	}
	w.limits(s, sc, top)
	for _, list := range [][]*pg.Node{s.GroupClause, s.SortClause, s.DistinctClause, s.WindowClause, s.ValuesLists} {
		for _, n := range list {
			w.expr(n, sc, false)
		}
	}
	if w.err == nil {
		w.intoFence(s)
		w.pushConditions(s)
	}
}

// limits checks LIMIT and OFFSET. In strict mode a subquery's must be
// non-negative integer literals: a negative one raises when the subquery
// runs, which a condition can make depend on a row; the statement's own may
// also be parameters (a wrong one fails whatever the rows).
func (w *walker) limits(s *pg.SelectStmt, sc *scope, top bool) {
	for _, n := range []*pg.Node{s.LimitCount, s.LimitOffset} {
		w.expr(n, sc, false)
		if n == nil || n.Node == nil || w.req.Mode != Strict || nonNegativeLiteral(n) || (top && n.GetParamRef() != nil) {
			continue
		}
		if c := n.GetAConst(); c != nil && c.Isnull {
			continue // LIMIT NULL, LIMIT ALL
		}
		w.fail(refuse(CodeExpression, location(n), "a subquery's LIMIT and OFFSET must be non-negative integer literals in strict mode"))
	}
}

// withClause checks and rewrites CTE bodies and returns the scope the rest
// of the statement sees. A CTE named like a protected table shadows it.
func (w *walker) withClause(wc *pg.WithClause, sc *scope) *scope {
	if wc == nil {
		return sc
	}
	names := map[string]bool{}
	inner := &scope{names: names, outer: sc}
	if wc.Recursive {
		for _, c := range wc.Ctes {
			names[c.GetCommonTableExpr().Ctename] = true
		}
	}
	for _, n := range wc.Ctes {
		c := n.GetCommonTableExpr()
		body := c.Ctequery.GetSelectStmt()
		if body == nil {
			w.fail(refuse(CodeWrite, c.Location, "WITH %s modifies data; only SELECT is allowed in WITH", c.Ctename))
			return inner
		}
		bodyScope := inner
		if !wc.Recursive {
			visible := make(map[string]bool, len(names))
			for k := range names {
				visible[k] = true
			}
			bodyScope = &scope{names: visible, outer: sc}
		}
		w.selectStmt(body, bodyScope, false)
		names[c.Ctename] = true
	}
	return inner
}

func (w *walker) fromItem(n *pg.Node, sc *scope) {
	if n == nil || w.err != nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		w.rangeVar(n, x.RangeVar, sc)
	case *pg.Node_JoinExpr:
		w.fromItem(x.JoinExpr.Larg, sc)
		w.fromItem(x.JoinExpr.Rarg, sc)
		w.expr(x.JoinExpr.Quals, sc, false)
	case *pg.Node_RangeSubselect:
		w.selectStmt(x.RangeSubselect.Subquery.GetSelectStmt(), sc, false)
	case *pg.Node_RangeFunction, *pg.Node_RangeTableFunc:
		w.fail(refuse(CodeTableFunction, location(n), "functions in FROM are not allowed; select from declared tables"))
	case *pg.Node_RangeTableSample:
		w.fail(refuse(CodeExpression, location(n), "TABLESAMPLE is not supported"))
	default:
		w.fail(refuse(CodeExpression, location(n), "%s is not supported in FROM", nodeKind(n)))
	}
}

// rangeVar replaces a reference to a protected table with a subquery that
// yields only the permitted rows, masked columns masked.
func (w *walker) rangeVar(n *pg.Node, rv *pg.RangeVar, sc *scope) {
	if rv.Schemaname == "" && sc.has(rv.Relname) {
		return // a CTE
	}
	res, schema, err := w.rw.tables.resolve(rv)
	if err != nil {
		w.fail(err)
		return
	}
	if res == nil {
		rv.Schemaname = schema // declared unfiltered
		return
	}
	if name := captured(res, sc); name != "" {
		w.fail(refuse(CodeExpression, rv.Location,
			"WITH %s would stand in for the table %s that the policy of %s reads; rename the CTE", name, name, res.Name))
		return
	}
	sub, err := w.filtered(res, rv)
	if err != nil {
		w.fail(err)
		return
	}
	alias := rv.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: rv.Relname}
	}
	rs := &pg.RangeSubselect{Subquery: sub, Alias: alias}
	if w.fences == nil {
		w.fences = map[*pg.RangeSubselect]*fence{}
	}
	masked := w.frags[len(w.frags)-1].Masked()
	comparable := comparableColumns(w.rw.columns[res.Name])
	if len(masked) > 0 {
		// The fence selects the policy's (or catalog's) column list: a
		// column outside it is no column of the fence.
		listed := setOf(w.rw.columnNames(res)...)
		for c := range comparable {
			if !listed[c] {
				delete(comparable, c)
			}
		}
	}
	w.fences[rs] = &fence{res: res, body: sub.GetSelectStmt(), alias: alias, star: len(masked) == 0, masked: setOf(masked...),
		comparable: comparable}
	n.Node = &pg.Node_RangeSubselect{RangeSubselect: rs}
}

// captured returns the name of a CTE in scope that the filtered subquery
// of res would read instead of a table (res's own or a relation's, named
// unqualified in the subquery), or "". A CTE named like a relation would
// otherwise let the statement decide which rows the policy grants.
func captured(res *policy.Resource, sc *scope) string {
	found := ""
	check := func(schema, name string) {
		if schema == "" && sc.has(name) && (found == "" || name < found) {
			found = name
		}
	}
	check(res.TableName())
	for _, rel := range res.Relations {
		check(rel.TableName())
	}
	return found
}

// filtered builds SELECT <columns> FROM [ONLY] table WHERE <fragment>.
func (w *walker) filtered(res *policy.Resource, rv *pg.RangeVar) (*pg.Node, *Error) {
	frag, err := fragment(res, w.req.Fragments)
	if err != nil {
		return nil, &Error{Code: CodePolicy, Msg: err.Error(), Position: int(rv.Location), Err: err}
	}
	explain := w.req.Explain && w.explainFrom != nil && w.explainFrom == rv
	sql, args, rerr := subquery(res, w.rw.columnNames(res), frag, rv.Inh, explain)
	if rerr != nil {
		rerr.Position = int(rv.Location)
		return nil, rerr
	}
	sql = dollar.Number(sql, w.nextParam)
	w.nextParam += len(args)
	w.args = append(w.args, args...)
	w.frags = append(w.frags, frag)
	w.placed = append(w.placed, placement{res: res, inh: rv.Inh, explain: explain})
	tree, perr := pg.Parse(sql)
	if perr != nil {
		return nil, &Error{Code: CodePolicy, Msg: fmt.Sprintf("internal: the filtered subquery does not parse: %v", perr), Position: -1, Err: perr}
	}
	return tree.Stmts[0].Stmt, nil
}

// placement is one protected reference the rewrite filtered, in order.
type placement struct {
	res     *policy.Resource
	inh     bool
	explain bool // the subquery selects the rules that let each row in
}

// innerAlias is how the filtered subquery names its table.
func innerAlias(res *policy.Resource) string {
	_, table := res.TableName()
	if strings.HasPrefix(table, policy.ReservedPrefix) {
		return "t"
	}
	return table
}

// fragment asks for res's fragment under the subquery's table alias.
func fragment(res *policy.Resource, frags Fragments) (Fragment, error) {
	return frags(res.Name, innerAlias(res))
}

// subquery renders the filtered subquery with ? placeholders, and its
// arguments in placeholder order.
func subquery(res *policy.Resource, columns []string, frag Fragment, inh, explain bool) (string, []any, *Error) {
	from := res.QuotedTable()
	if !inh {
		from = "ONLY " + from
	}
	b := sq.Select().From(from + " AS " + policy.QuoteIdent(innerAlias(res))).Where(frag)
	if masked := frag.Masked(); len(masked) == 0 {
		b = b.Column("*")
	} else if columns == nil {
		return "", nil, refuse(CodeMissingColumns, -1,
			"resource %s masks %s; list its columns in the policy (columns:), or give the rewriter the database's (rewrite.WithColumns; filter.Wrap and ragfence query do), so it can mask them", res.Name, strings.Join(masked, ", "))
	} else {
		for _, col := range columns {
			b = b.Column(sq.Alias(frag.Column(col), policy.QuoteIdent(col)))
		}
	}
	if explain {
		b = b.Column(sq.Alias(frag.Granted(), explainColumn))
	}
	sql, args, err := b.ToSql()
	if err != nil {
		return "", nil, &Error{Code: CodePolicy, Msg: err.Error(), Position: -1, Err: err}
	}
	return sql, args, nil
}

// expr checks an expression and rewrites the subqueries inside it.
func (w *walker) expr(n *pg.Node, sc *scope, inTarget bool) {
	// An empty node is no expression: plain DISTINCT is a list holding one.
	if n == nil || n.Node == nil || w.err != nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg.Node_SelectStmt:
		w.selectStmt(x.SelectStmt, sc, false)
		return
	case *pg.Node_SubLink:
		w.vetRows(n)
		w.judge(n)
		w.expr(x.SubLink.Testexpr, sc, inTarget)
		w.selectStmt(x.SubLink.Subselect.GetSelectStmt(), sc, false)
		return
	case *pg.Node_RangeVar, *pg.Node_JoinExpr, *pg.Node_RangeSubselect, *pg.Node_RangeFunction, *pg.Node_RangeTableFunc:
		w.fromItem(n, sc)
		return
	case *pg.Node_FuncCall:
		w.funcCall(x.FuncCall)
		w.vetRows(n)
		w.judge(n)
		pgwalk.EachChild(n, func(c *pg.Node) { w.expr(c, sc, inTarget) })
		return
	case *pg.Node_ColumnRef:
		w.columnRef(x.ColumnRef, inTarget)
	}
	w.vetRows(n)
	w.judge(n)
	pgwalk.EachChild(n, func(c *pg.Node) { w.expr(c, sc, inTarget) })
}

func (w *walker) columnRef(c *pg.ColumnRef, inTarget bool) {
	if inTarget || len(c.Fields) == 0 {
		return
	}
	name := c.Fields[len(c.Fields)-1].GetString_().GetSval()
	if w.masked[name] {
		w.fail(refuse(CodeMaskedColumn, c.Location,
			"column %s is masked by the policy: it may be selected, not used to filter, join, group or order", name))
	}
}

func (w *walker) funcCall(f *pg.FuncCall) {
	parts := make([]string, len(f.Funcname))
	for i, p := range f.Funcname {
		parts[i] = p.GetString_().GetSval()
	}
	name := parts[len(parts)-1]
	qualifiedOK := len(parts) == 1 || (len(parts) == 2 && parts[0] == "pg_catalog")
	allowed := trustedFunctions
	if w.req.Mode == Strict {
		allowed = strictFunctions
	}
	if !qualifiedOK || !allowed[name] {
		w.fail(refuse(CodeFunction, f.Location, "function %s is not allowed%s", strings.Join(parts, "."), modeHint(w.req.Mode, trustedFunctions[name])))
	}
}

func modeHint(m Mode, trusted bool) string {
	if m == Strict && trusted {
		return " in strict mode (it can fail on a row's data and reveal it through the error)"
	}
	return ""
}

// location returns a node's location, or -1.
func location(n *pg.Node) int32 {
	if n == nil || n.Node == nil {
		return -1
	}
	if l, ok := reflect.ValueOf(n.Node).Elem().Field(0).Interface().(interface{ GetLocation() int32 }); ok {
		return l.GetLocation()
	}
	return -1
}

func nodeKind(n *pg.Node) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_")
}
