package filter

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"

	"github.com/ragfence/ragfence/internal/condtree"
	"github.com/ragfence/ragfence/internal/deparse"
	"github.com/ragfence/ragfence/internal/pgwalk"
	"github.com/ragfence/ragfence/policy"
)

// aliasSentinel stands for the protected table's alias in compiled SQL until
// a request names it; the scanner finds it as an identifier token, so it can
// never be confused with text inside a string literal.
const aliasSentinel = "ragfence_alias_sentinel"

type pieceKind uint8

const (
	textPiece  pieceKind = iota
	paramPiece           // a bound value: subject.<attr> or context.<attr>
	aliasPiece           // the protected table's alias
)

// piece is one part of a compiled condition.
type piece struct {
	kind pieceKind
	text string // textPiece: SQL; paramPiece: "subject.x" or "context.x"
}

// template is compiled SQL whose only variable parts are bound values and
// the table alias: its text depends on the policy alone.
type template []piece

func (t template) add(kind pieceKind, s string) template {
	if kind == textPiece && len(t) > 0 && t[len(t)-1].kind == textPiece {
		t[len(t)-1].text += s
		return t
	}
	return append(t, piece{kind: kind, text: s})
}

func (t template) text(s string) template { return t.add(textPiece, s) }

func (t template) join(o template) template {
	for _, p := range o {
		t = t.add(p.kind, p.text)
	}
	return t
}

// attrs returns the attributes a template binds.
func (t template) attrs() []string {
	var out []string
	for _, p := range t {
		if p.kind == paramPiece {
			out = append(out, p.text)
		}
	}
	return out
}

// compileCondition turns a validated condition into a template: resource
// columns are qualified by the alias, relations get their tables and a
// tenant restriction, and every subject or context reference becomes a
// typed parameter.
func compileCondition(c *policy.Condition, res *policy.Resource, set *policy.Set) (template, error) {
	expr := proto.Clone(condtree.Of(c)).(*pg.Node)
	tr := &transformer{res: res, set: set}
	tr.node(expr)
	if tr.err != nil {
		return nil, tr.err
	}
	sql, err := deparse.Expr(expr)
	if err != nil {
		return nil, fmt.Errorf("filter: condition %q cannot be written as SQL that means what it says: %w", c.Text, err)
	}
	return split(sql, tr.slots)
}

// split cuts deparsed SQL at parameter and alias tokens. Positions come from
// PostgreSQL's own scanner, so "$1" inside a string literal stays text.
func split(sql string, slots []string) (template, error) {
	scan, err := pg.Scan(sql)
	if err != nil {
		return nil, fmt.Errorf("filter: scan compiled SQL: %w", err)
	}
	var t template
	last := 0
	for _, tok := range scan.Tokens {
		word := sql[tok.Start:tok.End]
		var p piece
		switch {
		case tok.Token == pg.Token_PARAM:
			n, _ := strconv.Atoi(word[1:])
			if n < 1 || n > len(slots) {
				return nil, fmt.Errorf("filter: compiled SQL has unknown parameter %s", word)
			}
			p = piece{kind: paramPiece, text: slots[n-1]}
		case tok.Token == pg.Token_IDENT && word == aliasSentinel:
			p = piece{kind: aliasPiece}
		default:
			continue
		}
		t = t.text(sql[last:tok.Start]).add(p.kind, p.text)
		last = int(tok.End)
	}
	return t.text(sql[last:]), nil
}

// transformer rewrites a cloned condition tree in place.
type transformer struct {
	res     *policy.Resource
	set     *policy.Set
	slots   []string          // slots[i] is the attribute bound as $(i+1)
	aliases map[string]string // relation alias as written -> alias in the output
	nextRel int
	err     error
}

func (tr *transformer) param(attr string, typ policy.Type) *pg.Node {
	tr.slots = append(tr.slots, attr)
	p := pg.MakeParamRefNode(int32(len(tr.slots)), 0)
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: p, TypeName: typeName(typ)}}}
}

// sqlTypes maps attribute types to the names PostgreSQL's grammar produces
// for them: a bare "integer" in a TypeName deparses as the quoted identifier
// "integer", a type that does not exist.
var sqlTypes = map[string]string{
	"text": "text", "integer": "int4", "boolean": "bool", "timestamptz": "timestamptz", "inet": "inet",
}

func typeName(t policy.Type) *pg.TypeName {
	name, array := strings.CutSuffix(string(t), "[]")
	// Typemod -1 is what the parser records for a type without modifiers,
	// so the compiled tree compares equal to its own text read back.
	tn := &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode("pg_catalog"), pg.MakeStrNode(sqlTypes[name])}, Typemod: -1}
	if array {
		tn.ArrayBounds = []*pg.Node{pg.MakeIntNode(-1)}
	}
	return tn
}

// node visits every node below n, replacing references where they stand.
func (tr *transformer) node(n *pg.Node) {
	if n == nil || tr.err != nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		if repl := tr.columnRef(x.ColumnRef); repl != nil {
			n.Node = repl.Node
		}
	case *pg.Node_SubLink:
		tr.subLink(x.SubLink)
	default:
		pgwalk.EachChild(n, tr.node)
	}
}

func (tr *transformer) columnRef(c *pg.ColumnRef) *pg.Node {
	parts := make([]string, len(c.Fields))
	for i, f := range c.Fields {
		parts[i] = f.GetString_().Sval
	}
	col := func(q, name string) *pg.Node {
		return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(q), pg.MakeStrNode(name)}, 0)
	}
	_, table := tr.res.TableName()
	switch {
	case len(parts) == 1:
		return col(aliasSentinel, parts[0])
	case parts[0] == "subject" || parts[0] == "context":
		typ, ok := tr.set.AttrType(parts[0], parts[1])
		if !ok {
			tr.err = fmt.Errorf("filter: unknown attribute %s.%s", parts[0], parts[1])
			return nil
		}
		return tr.param(parts[0]+"."+parts[1], typ)
	case tr.aliases[parts[0]] != "":
		return col(tr.aliases[parts[0]], parts[1])
	case parts[0] == tr.res.Name || parts[0] == table:
		return col(aliasSentinel, parts[1])
	}
	tr.err = fmt.Errorf("filter: unresolved name %s", strings.Join(parts, "."))
	return nil
}

// subLink points each relation at its table under a reserved alias and adds
// the relation's tenant restriction to the subquery's WHERE.
func (tr *transformer) subLink(s *pg.SubLink) {
	sel := s.Subselect.GetSelectStmt()
	outer := tr.aliases
	tr.aliases = make(map[string]string, len(outer)+len(sel.FromClause))
	for k, v := range outer {
		tr.aliases[k] = v
	}
	defer func() { tr.aliases = outer }()
	var tenants []*pg.Node
	for _, from := range sel.FromClause {
		rv := from.GetRangeVar()
		rel := tr.res.Relations[rv.Relname]
		written := rel.Name
		if rv.Alias != nil {
			written = rv.Alias.Aliasname
		}
		tr.nextRel++
		alias := fmt.Sprintf("%sr%d", policy.ReservedPrefix, tr.nextRel)
		tr.aliases[written] = alias
		schema, name := rel.TableName()
		from.Node = pg.MakeFullRangeVarNode(schema, name, alias, 0).Node
		from.GetRangeVar().Inh = true
		col := pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(alias), pg.MakeStrNode(rel.Tenant)}, 0)
		tenants = append(tenants, pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_OP, []*pg.Node{pg.MakeStrNode("=")}, col, tr.param("subject.tenant", policy.Text), 0))
	}
	for _, t := range sel.TargetList {
		tr.node(t)
	}
	tr.node(sel.WhereClause)
	if sel.WhereClause != nil {
		tenants = append(tenants, sel.WhereClause)
	}
	sel.WhereClause = tenants[0]
	if len(tenants) > 1 {
		sel.WhereClause = pg.MakeBoolExprNode(pg.BoolExprType_AND_EXPR, tenants, 0)
	}
}

// quoteIdent quotes an identifier for SQL text.
func quoteIdent(s string) string { return policy.QuoteIdent(s) }
