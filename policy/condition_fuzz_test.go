package policy_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/internal/condtree"
	"github.com/ragfence/ragfence/policy"
)

// fuzzPolicy is the set conditions are fuzzed against: chunks declares its
// columns and has one relation with and one without a columns list; docs
// declares no columns, so PostgreSQL would check its names at query time.
const fuzzPolicy = `version: 1
subject:
  attributes:
    clearance: integer
    dept: text
    projects: text[]
resources:
  chunks:
    table: kb.chunk_table
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, document_id, visibility, acl_groups, classification,
              source, content, contact_email, metadata, created_at, embedding]
    relations:
      document_grants: {table: document_grants, tenant: tenant_id, columns: [tenant_id, document_id, user_id, permission]}
      teams: {table: hr.teams, tenant: tenant_id}
    allow:
      - {name: owner, when: "owner_id = subject.id"}
  docs:
    tenant: org_id
    relations:
      shares: {tenant: org_id}
    allow:
      - {name: all, when: "true"}
`

// acceptedSeeds and rejectedSeeds (for the chunks resource) cover the
// corners of the grammar a validator could miss.
var acceptedSeeds = []string{
	`owner_id = subject.id`,
	`visibility = 'group' AND acl_groups && subject.groups`,
	`'admin' = ANY (subject.roles)`,
	`classification > subject.clearance`,
	`source IN ('wiki', 'drive')`,
	`source NOT IN ('wiki')`,
	`classification BETWEEN 1 AND 3`,
	`classification NOT BETWEEN SYMMETRIC 3 AND 1`,
	`source LIKE 'w%' OR source ILIKE 'D%' OR source NOT LIKE '%x'`,
	`source ~ '^w' AND source !~* 'x'`,
	`contact_email IS NULL OR contact_email IS NOT NULL`,
	`(classification > 1) IS NOT TRUE`,
	`source IS DISTINCT FROM subject.dept`,
	`source IS NOT DISTINCT FROM NULL`,
	`NULLIF(source, '') IS NULL`,
	`COALESCE(classification, 0) + 1 <= GREATEST(subject.clearance, 0) * 2`,
	`CASE WHEN visibility = 'tenant' THEN true WHEN source = 'x' THEN false ELSE NULL END`,
	`CASE source WHEN 'wiki' THEN true END`,
	`metadata->>'lang' = 'en' AND metadata @> '{"a": 1}' AND metadata ? 'k' AND metadata ?| ARRAY['a']`,
	`metadata #>> '{a,b}' = 'x' AND (metadata -> 'y') IS NOT NULL`,
	`acl_groups @> ARRAY['eng']::text[] AND acl_groups <@ subject.groups`,
	`lower(source) = upper('w') AND length(content) > 0 AND starts_with(source, 'w')`,
	`pg_catalog.lower(source) = 'wiki'`,
	`substring(source from 1 for 2) = 'wi' AND trim(both 'x' from source) = 'w'`,
	`extract(hour from created_at) > 8 AND date_trunc('day', created_at) < context.time`,
	`context.hour BETWEEN 9 AND 17 AND context.weekday <> 0`,
	`context.ip << '10.0.0.0/8'::inet AND family(context.ip) = 4`,
	`context.agent = 'summarizer'`,
	`created_at > '2020-01-01'::timestamptz AND created_at < timestamp with time zone '2030-01-01'`,
	`CAST(classification AS text) = '1' AND classification::numeric(10,2) > 0.5`,
	`'1 hour'::interval hour < interval '2 hours'`,
	`chunks.owner_id = subject.id AND chunk_table.source = 'x'`,
	`"source" = 'wiki'`,
	`U&"sou\0072ce" = U&'\0077iki'`,
	`E'w\x69ki' = source`,
	`$$wiki$$ = source AND $tag$it's$$$tag$ <> source`,
	`source = 'it''s' -- a comment`,
	`source = 'a' /* a comment */ AND /* nested /* comments */ */ true`,
	`source = 'a';`,
	`EXISTS (SELECT 1 FROM document_grants g WHERE g.document_id = chunks.document_id AND g.user_id = subject.id)`,
	`EXISTS (SELECT FROM document_grants WHERE document_grants.user_id = subject.id)`,
	`EXISTS (SELECT 1 FROM document_grants g, teams t WHERE g.user_id = t.lead AND t.name = subject.dept)`,
	`EXISTS (SELECT 1 FROM document_grants g WHERE EXISTS (SELECT 1 FROM teams t WHERE t.id = g.user_id))`,
	`NOT EXISTS (SELECT 1 FROM ONLY teams t WHERE t.member = subject.id)`,
	`true -- ) OR (true`, // the tree, not the text, is compiled
	strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200),
	strings.Repeat("NOT ", 200) + "true",
}

var rejectedSeeds = []string{
	``,
	`   `,
	`--`,
	`/*`,
	`source = 'a`,
	`source = "a`,
	`$$a`,
	`pg_read_file('/etc/passwd') = ''`,
	`pg_catalog.pg_read_file('/etc/passwd') IS NOT NULL`,
	`set_config('role', 'postgres', false) = ''`,
	`pg_sleep(10) IS NULL`,
	`current_setting('ragfence.tenant') = tenant_id`,
	`now() > created_at`,
	`CURRENT_TIMESTAMP > created_at`,
	`current_user = 'x'`,
	`public.lower(source) = 'x'`,
	`lower(VARIADIC ARRAY['a']) = 'a'`,
	`count(*) > 0`,
	`count(source) OVER () > 0`,
	`max(classification) FILTER (WHERE true) > 0`,
	`string_agg(source, ',' ORDER BY source) = 'x'`,
	`percentile_cont(0.5) WITHIN GROUP (ORDER BY classification) > 1`,
	`row_number() OVER (PARTITION BY source) = 1`,
	`(SELECT 1) = 1`,
	`(SELECT secret FROM secrets LIMIT 1) = 'x'`,
	`source IN (SELECT source FROM document_grants)`,
	`source = ANY (SELECT user_id FROM document_grants)`,
	`ARRAY(SELECT 1) = ARRAY[1]`,
	`EXISTS (SELECT 1 FROM pg_authid)`,
	`EXISTS (SELECT 1 FROM secrets s WHERE s.id = 1)`,
	`EXISTS (SELECT 1 FROM public.document_grants g)`,
	`EXISTS (SELECT 1 FROM document_grants g JOIN teams t ON true)`,
	`EXISTS (SELECT 1 FROM (SELECT 1) s)`,
	`EXISTS (SELECT 1 FROM generate_series(1, 2) s)`,
	`EXISTS (SELECT 1 FROM LATERAL (SELECT 1) s)`,
	`EXISTS (SELECT 1 FROM document_grants g TABLESAMPLE SYSTEM (50))`,
	`EXISTS (SELECT 1 FROM document_grants g(a, b) WHERE g.a = 'x')`,
	`EXISTS (SELECT 1 FROM document_grants g LIMIT 1)`,
	`EXISTS (SELECT 1 FROM document_grants g GROUP BY g.user_id HAVING count(*) > 1)`,
	`EXISTS (SELECT 1 FROM document_grants g UNION SELECT 1 FROM teams)`,
	`EXISTS (WITH x AS (SELECT 1) SELECT 1 FROM document_grants)`,
	`EXISTS (SELECT 1 FROM document_grants g FOR UPDATE)`,
	`EXISTS (SELECT * FROM document_grants g)`,
	`EXISTS (SELECT 1 FROM document_grants g WHERE user_id = subject.id)`,
	`EXISTS (SELECT 1 FROM document_grants g WHERE g.secret = 1)`,
	`EXISTS (SELECT 1 FROM document_grants AS subject)`,
	`EXISTS (SELECT 1 FROM document_grants g WHERE EXISTS (SELECT 1 FROM teams g))`,
	`EXISTS (VALUES (1))`,
	`EXISTS (TABLE document_grants)`,
	`ROW(source, owner_id) = ROW('a', 'b')`,
	`(source, owner_id) = ('a', 'b')`,
	`source = 'a' COLLATE "C"`,
	`source OPERATOR(pg_catalog.=) 'a'`,
	`source OPERATOR(public.=) 'a'`,
	`classification # 1 = 0`,
	`source = $1`,
	`source = $1::text AND $2 IS NULL`,
	`xmin = '1'`,
	`chunks.ctid = '(0,1)'`,
	`tableoid = 1`,
	`subject.password = 'x'`,
	`context.secret = 'x'`,
	`secrets.value = 'x'`,
	`public.chunk_table.source = 'x'`,
	`sorce = 'wiki'`,
	`*`,
	`chunks.*`,
	`metadata['a'] = '1'`,
	`acl_groups[1] = 'a'`,
	`(metadata).a = 1`,
	`source::regclass IS NULL`,
	`source::public.mytype IS NULL`,
	`'1'::numeric(pg_read_file('x')) = 1`,
	`'1'::numeric(subject.clearance) = 1`,
	`'1'::setof text = 'a'`,
	`source SIMILAR TO 'a'`,
	`source LIKE 'a' ESCAPE '!'`,
	`source IS JSON`,
	`source IS DOCUMENT`,
	`xmlelement(name a) IS NULL`,
	`json_object('a': 1) IS NULL`,
	`GROUPING(source) = 1`,
	`DEFAULT`,
	`created_at AT TIME ZONE 'UTC' > '2020-01-01'`,
	`1; SELECT 2`,
	`true; DROP TABLE chunks`,
	`1, 2`,
	`true AS x`,
	`true FROM chunks`,
	`true WHERE true`,
	`DISTINCT true`,
	`true INTO t`,
	`true UNION SELECT false`,
	`true) OR (true`,
	`source = 'x' /* unterminated`,
	`source = 'äöü' OR OR true`,
	"source = 'a'\x00",
	"\ufeffsource = 'a'",
	`"` + strings.Repeat("a", 70) + `" = 1`,
	"true\x00 AND false",
	"owner_id = subject.id\x00",
	`EXISTS (SELECT 1 FROM teams t WHERE t.xmin = '1')`,
}

func loadFuzzSet(t testing.TB) *policy.Set {
	t.Helper()
	set, err := policy.Parse(policy.Source{Name: "fuzz.yaml", Data: []byte(fuzzPolicy)})
	if err != nil {
		t.Fatalf("fuzz policy: %v", err)
	}
	return set
}

func FuzzCondition(f *testing.F) {
	for _, s := range slices.Concat(acceptedSeeds, rejectedSeeds) {
		f.Add(s)
	}
	set := loadFuzzSet(f)
	f.Fuzz(func(t *testing.T, text string) {
		for _, name := range set.Names {
			checkCondition(t, text, set.Resources[name], set)
		}
		checkInPolicy(t, text, set)
	})
}

// TestConditionSeeds runs the seeds in every go test run, so a validator
// change that lets a rejected one through, or starts refusing an accepted
// one, fails without a fuzzing run.
func TestConditionSeeds(t *testing.T) {
	set := loadFuzzSet(t)
	res := set.Resources["chunks"]
	for _, s := range acceptedSeeds {
		if _, err := policy.ParseCondition(s, res, set); err != nil {
			t.Errorf("%q rejected: %v", s, err)
		}
	}
	for _, s := range rejectedSeeds {
		if _, err := policy.ParseCondition(s, res, set); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for _, s := range slices.Concat(acceptedSeeds, rejectedSeeds) {
		for _, name := range set.Names {
			checkCondition(t, s, set.Resources[name], set)
		}
		checkInPolicy(t, s, set)
	}
}

// checkCondition validates text and holds the outcome against the oracle.
func checkCondition(t *testing.T, text string, res *policy.Resource, set *policy.Set) {
	t.Helper()
	c, err := policy.ParseCondition(text, res, set)
	if err != nil {
		checkRejection(t, text, res, err)
		return
	}
	if c == nil || condtree.Of(c) == nil {
		t.Fatalf("%s: %q accepted without a tree", res.Name, text)
	}
	if strings.ContainsRune(text, 0) {
		t.Fatalf("%s: %q accepted, but PostgreSQL's parser stops at its NUL", res.Name, text)
	}
	tree, perr := pg.Parse("SELECT " + strings.TrimSpace(text))
	if perr != nil {
		t.Fatalf("%s: %q accepted, but PostgreSQL cannot parse it: %v", res.Name, text, perr)
	}
	o := &oracle{res: res, set: set}
	o.check(tree)
	if len(o.problems) > 0 {
		t.Fatalf("%s: %q accepted, but the oracle objects:\n  %s", res.Name, text, strings.Join(o.problems, "\n  "))
	}
	target := tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val
	if !proto.Equal(condtree.Of(c), target) {
		t.Fatalf("%s: %q: the condition's tree is not the parsed expression", res.Name, text)
	}
	for _, l := range []struct {
		what      string
		got, want []string
	}{
		{"subject attributes", c.Subject, o.uses["subject"]},
		{"context attributes", c.Context, o.uses["context"]},
		{"columns", c.Columns, o.uses["column"]},
		{"relations", c.Relations, o.uses["relation"]},
	} {
		if !slices.Equal(l.got, sortedSet(l.want)) {
			t.Fatalf("%s: %q: %s %q, the oracle found %q", res.Name, text, l.what, l.got, sortedSet(l.want))
		}
	}
	// The filter compiles the deparsed tree: that text must mean the same.
	sql, derr := pg.Deparse(tree)
	if derr != nil {
		t.Fatalf("%s: %q accepted, but it does not deparse: %v", res.Name, text, derr)
	}
	again, err := policy.ParseCondition(strings.TrimPrefix(sql, "SELECT "), res, set)
	if err != nil {
		t.Fatalf("%s: %q accepted, but its deparsed form %q is not: %v", res.Name, text, sql, err)
	}
	if !slices.Equal(again.Subject, c.Subject) || !slices.Equal(again.Context, c.Context) ||
		!slices.Equal(again.Columns, c.Columns) || !slices.Equal(again.Relations, c.Relations) {
		t.Fatalf("%s: %q and its deparsed form %q use different names", res.Name, text, sql)
	}
}

// checkInPolicy writes the condition into the fuzz policy as a rule of
// chunks, in every YAML scalar style, and checks that loading the file
// judges it as ParseCondition does, with its errors inside the scalar.
func checkInPolicy(t *testing.T, text string, set *policy.Set) {
	t.Helper()
	_, condErr := policy.ParseCondition(text, set.Resources["chunks"], set)
	var want []string
	var list policy.ErrorList
	if errors.As(condErr, &list) {
		for _, e := range list {
			want = append(want, string(e.Code)+": "+e.Msg)
		}
	}
	sort.Strings(want)
	for _, style := range []yaml.Style{0, yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle, yaml.LiteralStyle, yaml.FoldedStyle} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(fuzzPolicy), &doc); err != nil {
			t.Fatal(err)
		}
		allow := yamlPath(&doc, "resources", "chunks", "allow")
		allow.Content = append(allow.Content, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "name"}, {Kind: yaml.ScalarNode, Value: "fuzzed"},
			{Kind: yaml.ScalarNode, Value: "when"}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: text, Style: style},
		}})
		data, err := yaml.Marshal(&doc)
		if err != nil {
			return // not representable in YAML
		}
		var back yaml.Node
		if yaml.Unmarshal(data, &back) != nil {
			// yaml.v3's encoder writes some block scalars it cannot read
			// back (" 0" as "|4-" with the wrong indentation): not ours.
			continue
		}
		rules := yamlPath(&back, "resources", "chunks", "allow")
		when := yamlPath(rules.Content[len(rules.Content)-1], "when")
		if when.Value != text || when.Tag != "!!str" {
			continue // the encoder changed the text (invalid UTF-8, a tag)
		}
		end := yamlKey(yamlPath(&back, "resources"), "docs").Line
		_, err = policy.Parse(policy.Source{Name: "y.yaml", Data: data})
		var got []string
		if errors.As(err, &list) {
			for _, e := range list {
				if e.Resource != "chunks" || e.Rule != "fuzzed" {
					t.Fatalf("style %v: an error outside the fuzzed rule: %v\n%s", style, e, data)
				}
				if e.Line < when.Line || e.Line >= end || e.Col < 1 {
					t.Fatalf("style %v: %v is outside the condition, lines %d-%d:\n%s", style, e, when.Line, end-1, data)
				}
				got = append(got, string(e.Code)+": "+e.Msg)
			}
		} else if err != nil {
			t.Fatalf("style %v: %v", style, err)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Fatalf("style %v: loading reports %q, ParseCondition %q:\n%s", style, got, want, data)
		}
	}
}

func yamlPath(n *yaml.Node, keys ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for _, k := range keys {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				n = n.Content[i+1]
				break
			}
		}
	}
	return n
}

func yamlKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

var errorCodes = []policy.Code{policy.CodeMissing, policy.CodeSyntax, policy.CodeForbidden, policy.CodeUnknownName, policy.CodeInvalid}

// checkRejection checks the shape of the errors of a rejected condition.
func checkRejection(t *testing.T, text string, res *policy.Resource, err error) {
	t.Helper()
	var list policy.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("%s: %q: error %T %v is not a non-empty ErrorList", res.Name, text, err, err)
	}
	for _, e := range list {
		if e.File != "<condition>" || e.Line != 1 || e.Col < 1 || e.Col > len(text)+1 {
			t.Fatalf("%s: %q: error position %s:%d:%d is outside the condition", res.Name, text, e.File, e.Line, e.Col)
		}
		if !slices.Contains(errorCodes, e.Code) || e.Msg == "" {
			t.Fatalf("%s: %q: error %q has code %q", res.Name, text, e.Msg, e.Code)
		}
		if want := fmt.Sprintf("<condition>:1:%d: %s", e.Col, e.Msg); e.Error() != want {
			t.Fatalf("%s: %q: error reads %q, want %q", res.Name, text, e.Error(), want)
		}
	}
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return slices.Compact(s)
}

// The oracle is an independent statement of what a condition may contain,
// written against the documentation (doc.go) rather than the validator: it
// walks every field of every message of the parse tree by reflection, so a
// node the validator forgets to visit cannot hide from it.
type oracle struct {
	res      *policy.Resource
	set      *policy.Set
	problems []string
	uses     map[string][]string // subject, context, column, relation
}

// oracleFields lists, per message type, the fields that may be set; any
// other set field (a FILTER, OVER, typmod expression, column alias list, a
// FROM outside EXISTS...) is a problem. Message types not listed may not
// appear at all.
var oracleFields = map[protoreflect.Name][]protoreflect.Name{
	"ParseResult":  {"version", "stmts"},
	"RawStmt":      {"stmt", "stmt_location", "stmt_len"},
	"SelectStmt":   {"target_list", "from_clause", "where_clause", "limit_option", "op"},
	"ResTarget":    {"name", "val", "location"},
	"A_Const":      {"ival", "fval", "boolval", "sval", "bsval", "isnull", "location"},
	"Integer":      {"ival"},
	"Float":        {"fval"},
	"Boolean":      {"boolval"},
	"String":       {"sval"},
	"BitString":    {"bsval"},
	"ColumnRef":    {"fields", "location"},
	"A_Expr":       {"kind", "name", "lexpr", "rexpr", "location"},
	"BoolExpr":     {"boolop", "args", "location"},
	"NullTest":     {"arg", "nulltesttype", "location"},
	"BooleanTest":  {"arg", "booltesttype", "location"},
	"TypeCast":     {"arg", "type_name", "location"},
	"TypeName":     {"names", "typmods", "typemod", "array_bounds", "location"},
	"A_ArrayExpr":  {"elements", "location"},
	"List":         {"items"},
	"CoalesceExpr": {"args", "location"},
	"MinMaxExpr":   {"op", "args", "location"},
	"CaseExpr":     {"arg", "args", "defresult", "location"},
	"CaseWhen":     {"expr", "result", "location"},
	"FuncCall":     {"funcname", "args", "funcformat", "location"},
	"SubLink":      {"sub_link_type", "subselect", "location"},
	"RangeVar":     {"relname", "inh", "relpersistence", "alias", "location"},
	"Alias":        {"aliasname"},
}

// oracleOperators are the operators doc.go lists: comparisons, arithmetic,
// concatenation, array, jsonb, pattern and inet operators.
var oracleOperators = map[string]bool{
	"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true,
	"+": true, "-": true, "*": true, "/": true, "%": true, "||": true,
	"&&": true, "@>": true, "<@": true, "->": true, "->>": true, "#>": true, "#>>": true,
	"?": true, "?|": true, "?&": true, "~~": true, "!~~": true, "~~*": true, "!~~*": true,
	"~": true, "!~": true, "~*": true, "!~*": true, "<<": true, "<<=": true, ">>": true, ">>=": true,
}

// oracleExprKinds maps the allowed A_Expr kinds to the operator names they
// may carry ("" means any of oracleOperators).
var oracleExprKinds = map[pg.A_Expr_Kind]string{
	pg.A_Expr_Kind_AEXPR_OP: "", pg.A_Expr_Kind_AEXPR_OP_ANY: "", pg.A_Expr_Kind_AEXPR_OP_ALL: "",
	pg.A_Expr_Kind_AEXPR_DISTINCT: "=", pg.A_Expr_Kind_AEXPR_NOT_DISTINCT: "=", pg.A_Expr_Kind_AEXPR_NULLIF: "=",
	pg.A_Expr_Kind_AEXPR_IN: "", pg.A_Expr_Kind_AEXPR_LIKE: "", pg.A_Expr_Kind_AEXPR_ILIKE: "",
	pg.A_Expr_Kind_AEXPR_BETWEEN: "BETWEEN", pg.A_Expr_Kind_AEXPR_NOT_BETWEEN: "NOT BETWEEN",
	pg.A_Expr_Kind_AEXPR_BETWEEN_SYM: "BETWEEN SYMMETRIC", pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM: "NOT BETWEEN SYMMETRIC",
}

// oracleTypes are built-in data types, as the grammar names them (keyword
// types come out as pg_catalog.<internal name>). No reg* types, no pseudo
// types, nothing user-defined.
var oracleTypes = map[string]bool{
	"text": true, "varchar": true, "bpchar": true, "char": true, "int2": true, "int4": true, "int8": true,
	"integer": true, "int": true, "bigint": true, "smallint": true, "numeric": true, "decimal": true,
	"float4": true, "float8": true, "real": true, "bool": true, "boolean": true, "date": true, "time": true,
	"timetz": true, "timestamp": true, "timestamptz": true, "interval": true, "inet": true, "cidr": true,
	"jsonb": true, "json": true, "uuid": true,
}

// systemColumns exist in every table but are not data a policy may use.
var systemColumns = map[string]bool{"ctid": true, "xmin": true, "xmax": true, "cmin": true, "cmax": true, "tableoid": true}

// scope is what a ColumnRef may name at one place of the tree: nil outside
// EXISTS, else the aliases of the enclosing EXISTS subqueries.
type oracleScope map[string]*policy.Relation

// parent is the message and field a message hangs from.
type parent struct {
	msg   protoreflect.Name
	field protoreflect.Name
	grand *parent
}

func (p *parent) is(msg, field protoreflect.Name) bool {
	return p != nil && p.msg == msg && p.field == field
}

func (o *oracle) fail(format string, args ...any) {
	o.problems = append(o.problems, fmt.Sprintf(format, args...))
}

func (o *oracle) use(kind, name string) {
	if o.uses == nil {
		o.uses = map[string][]string{}
	}
	o.uses[kind] = append(o.uses[kind], name)
}

func (o *oracle) check(tree *pg.ParseResult) {
	if len(tree.Stmts) != 1 {
		o.fail("%d statements", len(tree.Stmts))
		return
	}
	top := tree.Stmts[0].Stmt.GetSelectStmt()
	if top == nil || len(top.TargetList) != 1 || top.FromClause != nil || top.WhereClause != nil {
		o.fail("not SELECT <one expression>")
		return
	}
	if rt := top.TargetList[0].GetResTarget(); rt == nil || rt.Name != "" {
		o.fail("the expression has a name")
	}
	o.walk(tree.ProtoReflect(), nil, nil)
}

// walk checks m and everything below it.
func (o *oracle) walk(m protoreflect.Message, up *parent, sc oracleScope) {
	if n, ok := m.Interface().(*pg.Node); ok { // the oneof wrapper is transparent
		if n.Node == nil {
			o.fail("empty node under %v", up)
			return
		}
		m.Range(func(_ protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			o.walk(v.Message(), up, sc)
			return false
		})
		return
	}
	kind := m.Descriptor().Name()
	allowed, ok := oracleFields[kind]
	if !ok {
		o.fail("node %s", kind)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, fd.Name()) {
			o.fail("%s.%s is set", kind, fd.Name())
		}
		return true
	})
	sc = o.node(m.Interface(), up, sc)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		here := &parent{msg: kind, field: fd.Name(), grand: up}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				o.walk(v.List().Get(i).Message(), here, sc)
			}
		} else {
			o.walk(v.Message(), here, sc)
		}
		return true
	})
}

// node applies the rules of one message type given where it stands, and
// returns the scope its children see.
func (o *oracle) node(m proto.Message, up *parent, sc oracleScope) oracleScope {
	inExistsSelect := up.is("SubLink", "subselect")
	switch x := m.(type) {
	case *pg.SelectStmt:
		if up.is("RawStmt", "stmt") && up.grand.is("ParseResult", "stmts") && up.grand.grand == nil {
			return sc
		}
		if !inExistsSelect {
			o.fail("SELECT outside EXISTS")
			return sc
		}
		if len(x.FromClause) == 0 {
			o.fail("EXISTS without FROM")
		}
		if x.Op != pg.SetOperation_SETOP_NONE || x.LimitOption != pg.LimitOption_LIMIT_OPTION_DEFAULT {
			o.fail("EXISTS subquery with %v %v", x.Op, x.LimitOption)
		}
		inner := oracleScope{}
		for k, v := range sc {
			inner[k] = v
		}
		for _, from := range x.FromClause {
			rv := from.GetRangeVar()
			if rv == nil {
				continue // reported by the walk as a node kind
			}
			rel := o.res.Relations[rv.Relname]
			if rel == nil || rv.Schemaname != "" || rv.Catalogname != "" {
				o.fail("FROM %s.%s.%s is not a declared relation", rv.Catalogname, rv.Schemaname, rv.Relname)
				continue
			}
			alias := rv.Relname
			if rv.Alias != nil {
				alias = rv.Alias.Aliasname
			}
			_, table := o.res.TableName()
			if alias == "subject" || alias == "context" || alias == o.res.Name || alias == table || inner[alias] != nil {
				o.fail("alias %q shadows a name", alias)
			}
			inner[alias] = rel
			o.use("relation", rel.Name)
		}
		return inner
	case *pg.RangeVar:
		if !up.is("SelectStmt", "from_clause") || !up.grand.is("SubLink", "subselect") {
			o.fail("table %s outside an EXISTS FROM", x.Relname)
		}
	case *pg.Alias:
		if !up.is("RangeVar", "alias") {
			o.fail("alias outside FROM")
		}
	case *pg.ResTarget:
		top := up.is("SelectStmt", "target_list") && up.grand.is("RawStmt", "stmt")
		exists := up.is("SelectStmt", "target_list") && up.grand.is("SubLink", "subselect")
		if !top && !exists || top && x.Name != "" {
			o.fail("target %q out of place", x.Name)
		}
	case *pg.SubLink:
		if x.SubLinkType != pg.SubLinkType_EXISTS_SUBLINK {
			o.fail("%v subquery", x.SubLinkType)
		}
	case *pg.FuncCall:
		names := strs(x.Funcname)
		name := names[len(names)-1]
		if len(names) > 2 || len(names) == 2 && names[0] != "pg_catalog" || !slices.Contains(policy.Functions, name) {
			o.fail("function %s", strings.Join(names, "."))
		}
	case *pg.A_Expr:
		want, ok := oracleExprKinds[x.Kind]
		names := strs(x.Name)
		switch {
		case !ok:
			o.fail("expression kind %v", x.Kind)
		case len(names) != 1:
			o.fail("operator %s", strings.Join(names, "."))
		case want == "" && !oracleOperators[names[0]] || want != "" && names[0] != want:
			o.fail("operator %s in %v", names[0], x.Kind)
		}
	case *pg.TypeName:
		names := strs(x.Names)
		name := names[len(names)-1]
		if len(names) > 2 || len(names) == 2 && names[0] != "pg_catalog" || !oracleTypes[name] {
			o.fail("type %s", strings.Join(names, "."))
		}
		for _, tm := range x.Typmods {
			if c := tm.GetAConst(); c == nil || c.GetIval() == nil {
				o.fail("type modifier that is not an integer")
			}
		}
		if !up.is("TypeCast", "type_name") {
			o.fail("type name outside a cast")
		}
	case *pg.ColumnRef:
		o.columnRef(x, sc)
	}
	return sc
}

func (o *oracle) columnRef(c *pg.ColumnRef, sc oracleScope) {
	var parts []string
	for _, f := range c.Fields {
		s := f.GetString_()
		if s == nil {
			o.fail("* in a column reference")
			return
		}
		parts = append(parts, s.Sval)
	}
	column := func(name string) {
		if systemColumns[name] || o.res.Columns != nil && !slices.Contains(o.res.Columns, name) {
			o.fail("column %q", name)
			return
		}
		o.use("column", name)
	}
	_, table := o.res.TableName()
	switch {
	case len(parts) == 1 && sc != nil:
		o.fail("unqualified %q inside EXISTS", parts[0])
	case len(parts) == 1:
		column(parts[0])
	case len(parts) != 2:
		o.fail("name %s", strings.Join(parts, "."))
	case parts[0] == "subject":
		if _, ok := o.set.Subject[parts[1]]; !ok {
			o.fail("subject.%s", parts[1])
		}
		o.use("subject", parts[1])
	case parts[0] == "context":
		if !slices.Contains([]string{"time", "hour", "weekday", "ip", "agent"}, parts[1]) {
			o.fail("context.%s", parts[1])
		}
		o.use("context", parts[1])
	case parts[0] == o.res.Name || parts[0] == table:
		column(parts[1])
	case sc[parts[0]] != nil:
		rel := sc[parts[0]]
		if systemColumns[parts[1]] || rel.Columns != nil && !slices.Contains(rel.Columns, parts[1]) {
			o.fail("relation column %s.%s", parts[0], parts[1])
		}
	default:
		o.fail("name %s", strings.Join(parts, "."))
	}
}

func strs(ns []*pg.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		s := n.GetString_()
		if s == nil {
			out[i] = fmt.Sprintf("<%T>", n.Node)
			continue
		}
		out[i] = s.Sval
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}
