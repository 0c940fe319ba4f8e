package rewrite_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

// fuzzPolicy protects chunks (masked, with a relation and an agent grant)
// and kb.docs, and leaves lookup unfiltered.
const fuzzPolicy = `
version: 1
subject:
  attributes:
    clearance: integer
resources:
  chunks:
    table: chunks
    tenant: tenant_id
    columns: [id, tenant_id, document_id, owner_id, visibility, classification, source,
              content, contact_email, embedding, metadata]
    relations:
      document_grants:
        table: document_grants
        tenant: tenant_id
        columns: [tenant_id, document_id, user_id]
    allow:
      - name: tenant-wide
        when: visibility = 'tenant' AND NOT metadata ? 'draft?'
      - name: owner
        when: owner_id = subject.id
      - name: shared
        when: >-
          EXISTS (SELECT 1 FROM document_grants g
                  WHERE g.document_id = chunks.document_id AND g.user_id = subject.id)
    deny:
      - name: above-clearance
        when: classification > subject.clearance
    mask:
      - column: contact_email
        unless: "'pii-reader' = ANY (subject.roles)"
    agents:
      summarizer:
        allow:
          - name: wiki
            when: source = 'wiki'
  docs:
    table: kb.docs
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
unfiltered: [lookup]
`

// The subject's values are distinctive so that the checks can tell whether
// an error message leaks them.
const (
	fuzzTenant = "tnt-9f3c2q"
	fuzzUserID = "usr-4b7e1x"
)

// What the independent checker knows about fuzzPolicy, written out rather
// than read from the policy so that it shares nothing with the rewriter.
var (
	fzProtected      = map[string]string{"chunks": "tenant_id", "kb.docs": "tenant_id"}
	fzProtectedNames = []string{"chunks", "docs"} // any schema, any case: conservative
	fzRelations      = map[string]bool{"document_grants": true}
	fzMasked         = map[string][]string{"chunks": {"contact_email"}}
	fzUnfiltered     = map[string]bool{"lookup": true}
	fzForbidden      = []string{"set_config", "current_setting", "pg_sleep", "pg_read_file", "pg_read_binary_file", "lo_", "dblink"}
)

// fzCodes is every refusal code rewrite/errors.go documents.
var fzCodes = []rewrite.Code{
	rewrite.CodeSyntax, rewrite.CodeNotAQuery, rewrite.CodeWrite, rewrite.CodeUndeclared,
	rewrite.CodeSystemCatalog, rewrite.CodeTableFunction, rewrite.CodeFunction, rewrite.CodeOperator,
	rewrite.CodeExpression, rewrite.CodeParam, rewrite.CodeMaskedColumn, rewrite.CodeMissingColumns,
	rewrite.CodePolicy,
}

// fzEnv is a compiled policy and a rewriter for it.
type fzEnv struct {
	set *policy.Set
	p   *filter.Policy
	rw  *rewrite.Rewriter
}

func fzNewEnv(tb testing.TB, yaml string) *fzEnv {
	tb.Helper()
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(yaml)})
	if err != nil {
		tb.Fatal(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		tb.Fatal(err)
	}
	return &fzEnv{set: set, p: p, rw: rewrite.New(set, []string{"public"})}
}

func fuzzSubjects() []*policy.Subject {
	return []*policy.Subject{
		{ID: fuzzUserID, Tenant: fuzzTenant, Groups: []string{"eng"}, Attributes: map[string]any{"clearance": 2}},
		{ID: fuzzUserID, Tenant: fuzzTenant, Roles: []string{"pii-reader"}},
	}
}

// fuzzSeeds are statements the rewriter must handle: ordinary queries of
// every shape and attacks it must refuse or neutralise.
var fuzzSeeds = []string{
	// plain shapes
	`SELECT * FROM chunks`,
	`SELECT id, content FROM chunks WHERE source = 'wiki' ORDER BY id LIMIT 10`,
	`SELECT c.id, c.contact_email FROM chunks c`,
	`SELECT id FROM chunks ORDER BY embedding <=> $1 LIMIT 5`,
	`SELECT id, embedding <-> $1 AS d FROM chunks WHERE metadata ->> 'lang' = $2 ORDER BY d LIMIT 20`,
	`SELECT * FROM kb.docs`,
	`SELECT * FROM "kb"."docs" AS "D" WHERE "D".title = 'x'`,
	`SELECT * FROM public.chunks`,
	`SELECT * FROM ONLY chunks`,
	`SELECT * FROM ONLY kb.docs d`,
	`SELECT * FROM chunks*`,
	`SELECT * FROM CHUNKS`,
	`SELECT * FROM "Chunks"`,
	`SELECT * FROM "chunks" "Chunks" WHERE "Chunks".id = 1`,
	`SELECT * FROM U&"\0063hunks"`,
	`SELECT * FROM U&"!0063hunks" UESCAPE '!'`,
	`SELECT * FROM "chu""nks"`,
	`SELECT * FROM chunks AS "we""ird" WHERE "we""ird".id > 0`,
	`SELECT * FROM chunks AS c (a, b, c2)`,
	`TABLE chunks`,
	`TABLE kb.docs`,
	`VALUES (1, 'a'), (2, 'b')`,
	`SELECT * FROM (VALUES (1)) v(x) JOIN chunks ON chunks.id = v.x`,
	`SELECT * FROM lookup`,
	`SELECT * FROM public.lookup l JOIN chunks c ON c.id = l.id`,
	// joins
	`SELECT * FROM chunks c JOIN kb.docs d ON c.document_id = d.id`,
	`SELECT * FROM chunks c LEFT JOIN kb.docs d ON c.document_id = d.id`,
	`SELECT * FROM chunks c FULL OUTER JOIN kb.docs d ON c.document_id = d.id`,
	`SELECT * FROM chunks c CROSS JOIN lookup l`,
	`SELECT * FROM chunks JOIN kb.docs USING (tenant_id)`,
	`SELECT * FROM chunks NATURAL JOIN kb.docs`,
	`SELECT * FROM chunks a, chunks b WHERE a.id = b.id`,
	`SELECT * FROM (chunks c JOIN lookup l ON l.id = c.id) j`,
	`SELECT * FROM lookup l, LATERAL (SELECT * FROM chunks c WHERE c.id = l.id) x`,
	`SELECT * FROM lookup l LEFT JOIN LATERAL (SELECT id FROM kb.docs d WHERE d.id = l.id LIMIT 1) x ON true`,
	// subqueries
	`SELECT (SELECT count(*) FROM kb.docs) AS n, id FROM chunks`,
	`SELECT * FROM lookup WHERE id IN (SELECT document_id FROM chunks)`,
	`SELECT * FROM lookup l WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.id = l.id)`,
	`SELECT * FROM lookup l WHERE NOT EXISTS (SELECT FROM kb.docs)`,
	`SELECT source, count(*) FROM chunks GROUP BY source HAVING count(*) > (SELECT count(*) FROM kb.docs)`,
	`SELECT * FROM lookup ORDER BY (SELECT max(id) FROM chunks)`,
	`SELECT ARRAY(SELECT id FROM chunks) FROM lookup`,
	`SELECT * FROM lookup WHERE id = ANY (SELECT id FROM chunks)`,
	`SELECT * FROM lookup WHERE id IN (TABLE chunks)`,
	`SELECT * FROM chunks c JOIN lookup l ON EXISTS (SELECT 1 FROM kb.docs d WHERE d.id = l.id)`,
	// CTEs
	`WITH c AS (SELECT * FROM chunks) SELECT * FROM c`,
	`WITH chunks AS (SELECT 1 AS id) SELECT * FROM chunks`,
	`WITH chunks AS (SELECT * FROM chunks) SELECT * FROM chunks`,
	`WITH chunks AS (SELECT 1 AS id) SELECT * FROM public.chunks`,
	`WITH "Chunks" AS (SELECT 1 AS id) SELECT * FROM chunks`,
	`WITH a AS (SELECT * FROM chunks), b AS (SELECT * FROM a) SELECT * FROM b`,
	`WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a`,
	`WITH a AS (SELECT * FROM chunks), chunks AS (SELECT 1 AS id) SELECT * FROM a, chunks`,
	`WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n FROM t WHERE n < 10) SELECT * FROM t, chunks`,
	`WITH RECURSIVE a AS (SELECT * FROM chunks), chunks AS (SELECT 1 AS id) SELECT * FROM a`,
	`WITH RECURSIVE chunks AS (SELECT 1 AS id UNION SELECT id FROM chunks) SELECT * FROM chunks`,
	`SELECT * FROM (WITH chunks AS (SELECT 1 AS id) SELECT * FROM chunks) s, chunks`,
	`SELECT * FROM lookup WHERE id IN (WITH x AS (SELECT id FROM chunks) SELECT id FROM x)`,
	`WITH x AS (SELECT 1) SELECT * FROM (WITH y AS (SELECT * FROM x) SELECT * FROM y, chunks) z`,
	`WITH x AS MATERIALIZED (SELECT id FROM chunks) SELECT * FROM x`,
	`WITH document_grants AS (SELECT * FROM lookup) SELECT * FROM document_grants`,
	// set operations
	`SELECT id FROM chunks UNION SELECT id FROM kb.docs`,
	`SELECT id FROM chunks INTERSECT SELECT id FROM lookup`,
	`SELECT id FROM chunks EXCEPT ALL SELECT id FROM kb.docs ORDER BY 1`,
	`(SELECT id FROM chunks LIMIT 1) UNION ALL (SELECT id FROM chunks OFFSET 2)`,
	`WITH chunks AS (SELECT 1 AS id) SELECT id FROM chunks UNION SELECT id FROM public.chunks`,
	`SELECT id FROM lookup UNION (WITH chunks AS (SELECT 2 AS id) SELECT id FROM chunks)`,
	// aggregates, windows
	`SELECT source, count(*), max(id) FROM chunks GROUP BY source`,
	`SELECT id, row_number() OVER (PARTITION BY source ORDER BY id) FROM chunks`,
	`SELECT id, rank() OVER w FROM chunks WINDOW w AS (ORDER BY id)`,
	`SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM kb.docs)) FROM chunks`,
	`SELECT DISTINCT ON (source) source, id FROM chunks ORDER BY source, id`,
	`SELECT source FROM chunks GROUP BY GROUPING SETS ((source), ())`,
	`SELECT lower(content), coalesce(source, 'x') FROM chunks WHERE content LIKE 'a%'`,
	`SELECT avg(classification) FROM chunks`,
	`SELECT id FROM chunks WHERE classification / 0 = 1`,
	`SELECT id FROM chunks WHERE content::int = 1`,
	`SELECT id FROM chunks WHERE content LIKE source`,
	`SELECT id FROM chunks TABLESAMPLE SYSTEM (10)`,
	`SELECT id FROM chunks WHERE contact_email = 'a@b.c'`,
	`SELECT contact_email FROM chunks ORDER BY contact_email`,
	`SELECT id FROM chunks c GROUP BY c.contact_email`,
	// attacks: comments, several statements
	`SELECT * FROM chunks -- ; DROP TABLE chunks`,
	`SELECT * FROM /* chunks */ lookup`,
	`SELECT * FROM chunks; SELECT * FROM kb.docs`,
	`SELECT 1; DELETE FROM chunks`,
	`;;SELECT * FROM chunks;;`,
	`SELECT * FROM chunks WHERE id = 1 /*`,
	// writes
	`SELECT * INTO stolen FROM chunks`,
	`SELECT * FROM chunks FOR UPDATE`,
	`SELECT * FROM chunks c FOR SHARE OF c NOWAIT`,
	`WITH d AS (DELETE FROM chunks RETURNING *) SELECT * FROM d`,
	`WITH u AS (UPDATE chunks SET tenant_id = 'x' RETURNING id) SELECT * FROM lookup`,
	`SELECT * FROM (WITH i AS (INSERT INTO lookup VALUES (1) RETURNING *) SELECT * FROM i) s`,
	`INSERT INTO chunks SELECT * FROM chunks`,
	`UPDATE chunks SET content = 'x'`,
	`DELETE FROM chunks`,
	`COPY chunks TO STDOUT`,
	`COPY (SELECT * FROM chunks) TO '/tmp/x'`,
	`EXPLAIN ANALYZE SELECT * FROM chunks`,
	`DO $$ BEGIN PERFORM 1; END $$`,
	`CALL refresh_everything()`,
	`SET search_path = evil, public`,
	`SET ROLE postgres`,
	`RESET ROLE`,
	`CREATE TABLE x AS SELECT * FROM chunks`,
	`PREPARE p AS SELECT * FROM chunks`,
	// functions
	`SELECT set_config('ragfence.tenant', 'other', false)`,
	`SELECT current_setting('ragfence.tenant') FROM chunks`,
	`SELECT * FROM chunks WHERE pg_sleep(1) IS NULL`,
	`SELECT pg_catalog.pg_sleep(10)`,
	`SELECT pg_read_file('/etc/passwd')`,
	`SELECT lo_import('/etc/passwd')`,
	`SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)`,
	`SELECT dblink_exec('host=evil', 'DROP TABLE chunks')`,
	`SELECT * FROM generate_series(1, 10)`,
	`SELECT * FROM chunks, generate_series(1, 3) g`,
	`SELECT * FROM ROWS FROM (unnest(ARRAY[1]))`,
	`SELECT * FROM chunks c, LATERAL unnest(c.acl_groups) g`,
	`SELECT public.lower(content) FROM chunks`,
	`SELECT "lower"(content) FROM chunks`,
	`SELECT evil.count(*) FROM chunks`,
	`SELECT query_to_xml('SELECT * FROM chunks', true, true, '')`,
	`SELECT * FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS x int)`,
	// catalogs
	`SELECT * FROM pg_class`,
	`SELECT * FROM pg_catalog.pg_class`,
	`SELECT * FROM information_schema.tables`,
	`SELECT * FROM pg_catalog.pg_authid`,
	`SELECT * FROM "pg_catalog"."pg_authid"`,
	`SELECT * FROM pg_toast.pg_toast_1234`,
	`SELECT * FROM mydb.public.chunks`,
	`SELECT * FROM secrets`,
	`SELECT * FROM docs`,
	`SELECT * FROM public.docs`,
	`SELECT * FROM document_grants`,
	`SELECT * FROM kb.chunks`,
	// parameters
	`SELECT * FROM chunks WHERE id = $0`,
	`SELECT * FROM chunks WHERE id = $99`,
	`SELECT * FROM chunks WHERE id = $2 AND owner_id = $1`,
	`SELECT * FROM chunks LIMIT $3`,
	// alias tricks
	`SELECT * FROM chunks AS ragfence_r1`,
	`SELECT * FROM chunks AS "RAGFENCE_x"`,
	`SELECT * FROM chunks AS document_grants`,
	`SELECT * FROM lookup chunks, chunks c WHERE chunks.id = c.id`,
	`SELECT * FROM chunks t WHERE t.tenant_id = 'other' OR true`,
	// policy capture: CTEs named like the tables the policy reads
	`WITH document_grants AS (SELECT 'tnt' AS tenant_id, id AS document_id, 'u' AS user_id FROM lookup) SELECT * FROM chunks`,
	`SELECT * FROM lookup WHERE id IN (WITH document_grants AS (SELECT * FROM lookup) SELECT id FROM chunks)`,
	`WITH RECURSIVE document_grants(tenant_id, document_id, user_id) AS (SELECT 'a', 1, 'b' UNION ALL SELECT tenant_id, document_id, user_id FROM document_grants) SELECT * FROM chunks`,
	`WITH document_grants AS (SELECT * FROM lookup) SELECT * FROM lookup WHERE EXISTS (SELECT 1 FROM chunks)`,
	`WITH document_grants AS (SELECT * FROM chunks) SELECT * FROM document_grants`,
	`WITH RECURSIVE document_grants AS (SELECT * FROM chunks) SELECT 1`,
	`SELECT * FROM chunks UNION (WITH document_grants AS (SELECT 1) SELECT * FROM lookup)`,
	`WITH "Document_grants" AS (SELECT 1) SELECT * FROM chunks`,
	`WITH ragfence_r1 AS (SELECT 1) SELECT * FROM chunks`,
	// odd corners
	`VALUES ((SELECT count(*) FROM chunks))`,
	`SELECT * FROM lookup WHERE (SELECT c FROM chunks c LIMIT 1) IS NOT NULL`,
	`SELECT id, count(*) OVER (ORDER BY (SELECT max(id) FROM kb.docs)) FROM chunks`,
	`SELECT * FROM chunks AS chunks(tenant_id)`,
	`SELECT (c).id, (c.metadata).x FROM chunks c`,
	`SELECT (1).a`,
	`SELECT id FROM chunks ORDER BY id USING <`,
	`SELECT id FROM chunks WHERE id IN (1, 1/0)`,
	`SELECT xmlparse(content content) FROM chunks`,
	`SELECT current_user, current_schema FROM chunks`,
	`SELECT * FROM pg_temp.chunks`,
	`SELECT * FROM chunks WHERE id = $1::int AND embedding <=> $2::vector < 0.5`,
	// syntax
	`SELEC * FROM chunks`,
	``,
	`   `,
	`SELECT`,
	`SELECT 'unterminated`,
}

// FuzzRewrite checks that the rewriter never panics, that what it accepts is
// one SELECT whose every protected reference is filtered for the subject's
// tenant (checked by a walk of the output that shares no code with the
// rewriter), and that what it refuses it refuses with a documented code.
func FuzzRewrite(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	env := fzNewEnv(f, fuzzPolicy)
	subjects := fuzzSubjects()
	f.Fuzz(func(t *testing.T, sql string) {
		for _, mode := range []rewrite.Mode{rewrite.Strict, rewrite.Trusted} {
			for nargs := 0; nargs <= 2; nargs++ {
				for ai, agent := range []string{"", "summarizer"} {
					req := rewrite.Request{
						Fragments: env.p.Fragments(filter.Request{Subject: subjects[(nargs+ai)%2], Agent: agent}),
						Mode:      mode,
						NArgs:     nargs,
					}
					where := fmt.Sprintf("mode %d, nargs %d, agent %q, subject %d", mode, nargs, agent, (nargs+ai)%2)
					// env.rw's cache has seen this statement for other
					// requests; a fresh rewriter has not: they must agree.
					// (The code may differ when one is policy_refused: the
					// walk stops at the first problem, and a refusal cached
					// for another request can name a later one.)
					res, err := env.rw.Rewrite(sql, req)
					fresh, ferr := rewrite.New(env.set, []string{"public"}).Rewrite(sql, req)
					code, fcode := rewrite.CodeOf(err), rewrite.CodeOf(ferr)
					if (err == nil) != (ferr == nil) || (code != fcode && code != rewrite.CodePolicy && fcode != rewrite.CodePolicy) {
						t.Fatalf("%s: the cached rewriter says %v, a fresh one %v\ninput: %s", where, err, ferr, sql)
					}
					if err != nil {
						if p := fzCheckRefusal(sql, err); p != "" {
							t.Fatalf("%s: %s\ninput: %s\nerror: %v", where, p, sql, err)
						}
						continue
					}
					if res.SQL != fresh.SQL || !reflect.DeepEqual(res.Args, fresh.Args) {
						t.Fatalf("%s: the cached rewrite differs from a fresh one\ninput:  %s\ncached: %s %v\nfresh:  %s %v",
							where, sql, res.SQL, res.Args, fresh.SQL, fresh.Args)
					}
					if problems := fzCheckOutput(res, nargs); len(problems) > 0 {
						t.Fatalf("%s: unsafe rewrite:\n  %s\ninput:  %s\noutput: %s\nargs:   %v",
							where, strings.Join(problems, "\n  "), sql, res.SQL, res.Args)
					}
				}
			}
		}
	})
}

// fzCheckRefusal returns what is wrong with a refusal, or "".
func fzCheckRefusal(sql string, err error) string {
	var e *rewrite.Error
	if !errors.As(err, &e) {
		return fmt.Sprintf("the error is a %T, not a *rewrite.Error", err)
	}
	if e.Code == "" || !slices.Contains(fzCodes, e.Code) {
		return fmt.Sprintf("undocumented code %q", e.Code)
	}
	if rewrite.CodeOf(err) != e.Code {
		return "CodeOf disagrees with the error's Code"
	}
	if e.Position < -1 || e.Position > len(sql) {
		return fmt.Sprintf("position %d outside the statement", e.Position)
	}
	msg := strings.ToLower(err.Error())
	for _, secret := range []string{fuzzTenant, fuzzUserID} {
		if strings.Contains(msg, secret) && !strings.Contains(strings.ToLower(sql), secret) {
			return fmt.Sprintf("the message reveals the subject's %q", secret)
		}
	}
	return ""
}

// fzCheckOutput re-parses a rewritten statement and checks it independently
// of the rewriter.
func fzCheckOutput(res *rewrite.Result, nargs int) []string {
	tree, err := pg.Parse(res.SQL)
	if err != nil {
		return []string{fmt.Sprintf("the output does not parse: %v", err)}
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return []string{fmt.Sprintf("the output is %d statement(s), not one SELECT", len(tree.Stmts))}
	}
	js, err := pg.ParseToJSON(res.SQL)
	if err != nil {
		return []string{fmt.Sprintf("the output does not parse to JSON: %v", err)}
	}
	var doc struct {
		Stmts []struct {
			Stmt map[string]any `json:"stmt"`
		} `json:"stmts"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		return []string{fmt.Sprintf("parse tree JSON: %v", err)}
	}
	c := &fzChecker{nargs: nargs, args: res.Args}
	sel, ok := doc.Stmts[0].Stmt["SelectStmt"].(map[string]any)
	if !ok {
		return []string{"the output's JSON parse tree holds no SelectStmt"}
	}
	c.selectStmt(sel, nil, fzUserSQL)
	if c.policies != len(res.Fragments) {
		c.flag("%d policy subqueries in the output but %d fragments reported", c.policies, len(res.Fragments))
	}
	return c.problems
}

// fzScope is the CTE names visible at a point of the statement.
type fzScope struct {
	names map[string]bool
	outer *fzScope
}

func (s *fzScope) has(name string) bool {
	for ; s != nil; s = s.outer {
		if s.names[name] {
			return true
		}
	}
	return false
}

// fzWalkMode says whose SQL the checker is in.
type fzWalkMode int

const (
	fzUserSQL      fzWalkMode = iota // the caller's statement
	fzPolicySQL                      // an injected policy subquery's select list and WHERE
	fzPolicyExists                   // an EXISTS inside it, where declared relations may be read
)

// fzChecker walks the generic JSON parse tree of a rewritten statement.
type fzChecker struct {
	nargs    int
	args     []any
	policies int
	problems []string
}

func (c *fzChecker) flag(format string, a ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, a...))
}

// walk visits any JSON value. A node is an object with one key naming its
// type (upper case), whose value is the node's fields; every other object is
// a message embedded directly and is walked field by field.
func (c *fzChecker) walk(v any, sc *fzScope, m fzWalkMode) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			c.walk(e, sc, m)
		}
	case map[string]any:
		if len(x) == 1 {
			for k, b := range x {
				if body, ok := b.(map[string]any); ok && k != "" && k[0] >= 'A' && k[0] <= 'Z' {
					c.node(k, body, sc, m)
					return
				}
			}
		}
		for _, k := range fzKeys(x) {
			c.walk(x[k], sc, m)
		}
	}
}

func fzKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *fzChecker) node(kind string, b map[string]any, sc *fzScope, m fzWalkMode) {
	switch kind {
	case "SelectStmt":
		c.selectStmt(b, sc, m)
		return
	case "RangeVar":
		c.rangeVar(b, sc, m)
		return
	case "RangeSubselect":
		if c.policySubquery(b, sc) {
			return
		}
	case "SubLink":
		if m == fzPolicySQL && b["subLinkType"] == "EXISTS_SUBLINK" {
			m = fzPolicyExists
		}
	case "ParamRef":
		n := fzNum(b["number"])
		if n < 1 || n > c.nargs+len(c.args) {
			c.flag("$%d is outside $1..$%d", n, c.nargs+len(c.args))
		}
	case "FuncCall":
		name := strings.ToLower(fzLastString(b["funcname"]))
		for _, bad := range fzForbidden {
			if strings.HasPrefix(name, bad) {
				c.flag("function %s is called", name)
			}
		}
	case "RangeFunction", "RangeTableFunc", "RangeTableSample", "LockingClause", "IntoClause",
		"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt":
		c.flag("%s in the output", kind)
	}
	for _, k := range fzKeys(b) {
		c.walk(b[k], sc, m)
	}
}

// selectStmt applies PostgreSQL's CTE scoping: without RECURSIVE a CTE's
// body sees the CTEs before it, with RECURSIVE all of its WITH; the rest of
// the statement (both sides of a set operation included) sees them all.
func (c *fzChecker) selectStmt(b map[string]any, sc *fzScope, m fzWalkMode) {
	if b["intoClause"] != nil {
		c.flag("SELECT INTO in the output")
	}
	inner := sc
	if wc, ok := b["withClause"].(map[string]any); ok {
		names := map[string]bool{}
		inner = &fzScope{names: names, outer: sc}
		recursive := wc["recursive"] == true
		ctes, _ := wc["ctes"].([]any)
		if recursive {
			for _, n := range ctes {
				names[fzCTEField(n, "ctename")] = true
			}
		}
		for _, n := range ctes {
			body := inner
			if !recursive {
				body = &fzScope{names: fzCopy(names), outer: sc}
			}
			cte, _ := n.(map[string]any)["CommonTableExpr"].(map[string]any)
			if cte == nil {
				c.flag("a WITH entry is not a CommonTableExpr")
				continue
			}
			for _, k := range fzKeys(cte) {
				c.walk(cte[k], body, m)
			}
			names[fzCTEField(n, "ctename")] = true
		}
	}
	for _, k := range fzKeys(b) {
		switch k {
		case "withClause":
		case "larg", "rarg":
			if s, ok := b[k].(map[string]any); ok {
				c.selectStmt(s, inner, m)
			} else {
				c.flag("%s is not a SELECT", k)
			}
		default:
			c.walk(b[k], inner, m)
		}
	}
}

func fzCTEField(n any, field string) string {
	cte, _ := n.(map[string]any)["CommonTableExpr"].(map[string]any)
	s, _ := cte[field].(string)
	return s
}

func fzCopy(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// rangeVar checks a table reference outside a policy subquery's FROM.
func (c *fzChecker) rangeVar(b map[string]any, sc *fzScope, m fzWalkMode) {
	catalog, schema, name := fzStr(b["catalogname"]), fzStr(b["schemaname"]), fzStr(b["relname"])
	qual := name
	if schema != "" {
		qual = schema + "." + name
	}
	if catalog != "" {
		c.flag("cross-database reference %s.%s", catalog, qual)
		return
	}
	if m == fzPolicyExists && (schema == "" || schema == "public") && fzRelations[name] {
		if schema == "" && sc.has(name) {
			c.flag("the policy's relation %s is captured by a CTE of the same name", name)
		}
		return
	}
	if schema == "" && sc.has(name) {
		return // a CTE
	}
	for _, pname := range fzProtectedNames {
		if strings.EqualFold(name, pname) {
			c.flag("protected table %s is read outside a policy subquery", qual)
			return
		}
	}
	if (schema == "" || schema == "public") && fzUnfiltered[name] {
		return
	}
	c.flag("table %s is neither protected, unfiltered nor a CTE", qual)
}

// policySubquery reports whether b is (SELECT ... FROM <protected> [AS a]
// WHERE ... AND a.<tenant> = $N AND ...) with $N bound to the subject's
// tenant, and checks the rest of it.
func (c *fzChecker) policySubquery(b map[string]any, sc *fzScope) bool {
	sub, _ := b["subquery"].(map[string]any)
	sel, _ := sub["SelectStmt"].(map[string]any)
	if sel == nil || sel["op"] != "SETOP_NONE" {
		return false
	}
	for k, v := range sel {
		switch k {
		case "targetList", "fromClause", "whereClause", "limitOption", "op":
		case "limitOffset":
			// A fence: OFFSET 0 and nothing else.
			if fzInt(v) != 0 {
				return false
			}
		case "sortClause":
			// A top-k ordering moved into a fence; walked below.
			if sel["limitOffset"] == nil {
				return false
			}
		default:
			return false
		}
	}
	from, _ := sel["fromClause"].([]any)
	if len(from) != 1 {
		return false
	}
	rv, _ := from[0].(map[string]any)["RangeVar"].(map[string]any)
	if rv == nil || fzStr(rv["catalogname"]) != "" {
		return false
	}
	schema, name := fzStr(rv["schemaname"]), fzStr(rv["relname"])
	key := name
	if schema != "" && schema != "public" {
		key = schema + "." + name
	}
	tenantCol, ok := fzProtected[key]
	if !ok {
		return false
	}
	if schema == "" && sc.has(name) {
		c.flag("the policy subquery's table %s is captured by a CTE of the same name", name)
		return true
	}
	alias := name
	if a, ok := rv["alias"].(map[string]any); ok {
		alias = fzStr(a["aliasname"])
	}
	if !c.tenantFiltered(sel["whereClause"], alias, tenantCol) {
		c.flag("the subquery over %s does not restrict %s.%s to the subject's tenant", key, alias, tenantCol)
		return true
	}
	c.policies++
	c.checkMasks(sel["targetList"], key)
	c.walk(sel["targetList"], sc, fzPolicySQL)
	c.walk(sel["whereClause"], sc, fzPolicySQL)
	c.walk(sel["sortClause"], sc, fzPolicySQL)
	return true
}

// fzInt is the value of an integer constant node, or -1.
func fzInt(v any) int {
	n, _ := v.(map[string]any)
	c, _ := n["A_Const"].(map[string]any)
	if c == nil {
		return -1
	}
	iv, _ := c["ival"].(map[string]any)
	if iv == nil {
		return -1
	}
	if x, ok := iv["ival"].(float64); ok {
		return int(x)
	}
	return 0 // protojson omits a zero
}

// checkMasks flags a policy subquery that selects a masked column bare
// (or through *) rather than through an expression.
func (c *fzChecker) checkMasks(targets any, table string) {
	list, _ := targets.([]any)
	for _, t := range list {
		rt, _ := t.(map[string]any)["ResTarget"].(map[string]any)
		ref, _ := rt["val"].(map[string]any)["ColumnRef"].(map[string]any)
		fields, _ := ref["fields"].([]any)
		if len(fields) == 0 {
			continue
		}
		last, _ := fields[len(fields)-1].(map[string]any)
		for _, col := range fzMasked[table] {
			if _, star := last["A_Star"]; star || fzStringNode(last) == col {
				c.flag("the subquery over %s selects %s unmasked", table, col)
			}
		}
	}
}

// tenantFiltered reports whether where's top-level AND holds
// alias.col = $N (N a fragment argument bound to the tenant), or is FALSE.
func (c *fzChecker) tenantFiltered(where any, alias, col string) bool {
	for _, conj := range fzConjuncts(where) {
		if k, ok := conj.(map[string]any)["A_Const"].(map[string]any); ok {
			if bv, ok := k["boolval"].(map[string]any); ok && bv["boolval"] != true {
				return true // WHERE false
			}
		}
		e, _ := conj.(map[string]any)["A_Expr"].(map[string]any)
		if e == nil || e["kind"] != "AEXPR_OP" || fzLastString(e["name"]) != "=" {
			continue
		}
		if names, ok := e["name"].([]any); !ok || len(names) != 1 {
			continue
		}
		lref, _ := e["lexpr"].(map[string]any)["ColumnRef"].(map[string]any)
		fields, _ := lref["fields"].([]any)
		if len(fields) != 2 || fzStringNode(fields[0]) != alias || fzStringNode(fields[1]) != col {
			continue
		}
		r, _ := e["rexpr"].(map[string]any)
		if tc, ok := r["TypeCast"].(map[string]any); ok {
			r, _ = tc["arg"].(map[string]any)
		}
		p, ok := r["ParamRef"].(map[string]any)
		if !ok {
			continue
		}
		n := fzNum(p["number"])
		if n > c.nargs && n <= c.nargs+len(c.args) && c.args[n-c.nargs-1] == fuzzTenant {
			return true
		}
	}
	return false
}

func fzConjuncts(n any) []any {
	if b, ok := n.(map[string]any)["BoolExpr"].(map[string]any); ok && b["boolop"] == "AND_EXPR" {
		var out []any
		args, _ := b["args"].([]any)
		for _, a := range args {
			out = append(out, fzConjuncts(a)...)
		}
		return out
	}
	return []any{n}
}

func fzStr(v any) string {
	s, _ := v.(string)
	return s
}

func fzNum(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// fzStringNode returns the value of a {"String": {"sval": ...}} node.
func fzStringNode(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["String"].(map[string]any)
	return fzStr(s["sval"])
}

func fzLastString(v any) string {
	l, _ := v.([]any)
	if len(l) == 0 {
		return ""
	}
	return fzStringNode(l[len(l)-1])
}

// fzNoColumnsPolicy masks a column of a resource without a columns list.
const fzNoColumnsPolicy = `
version: 1
resources:
  chunks:
    tenant: tenant_id
    allow:
      - name: all
        when: "true"
    mask:
      - column: contact_email
        unless: "'pii-reader' = ANY (subject.roles)"
`

// TestRewriteRefusals refuses one statement per code, in strict mode with
// one argument unless the case says otherwise.
func TestRewriteRefusals(t *testing.T) {
	env := fzNewEnv(t, fuzzPolicy)
	noColumns := fzNewEnv(t, fzNoColumnsPolicy)
	cases := []struct {
		name    string
		sql     string
		want    rewrite.Code
		trusted bool
		agent   string
		env     *fzEnv
	}{
		{name: "syntax", sql: `SELEC * FROM chunks`, want: rewrite.CodeSyntax},
		{name: "unterminated", sql: `SELECT 'x FROM chunks`, want: rewrite.CodeSyntax},
		{name: "empty", sql: ``, want: rewrite.CodeNotAQuery},
		{name: "two statements", sql: `SELECT * FROM chunks; SELECT * FROM kb.docs`, want: rewrite.CodeNotAQuery},
		{name: "insert", sql: `INSERT INTO chunks SELECT * FROM chunks`, want: rewrite.CodeNotAQuery},
		{name: "copy", sql: `COPY chunks TO STDOUT`, want: rewrite.CodeNotAQuery},
		{name: "explain analyze", sql: `EXPLAIN ANALYZE SELECT * FROM chunks`, want: rewrite.CodeNotAQuery},
		{name: "do", sql: `DO $$ BEGIN PERFORM 1; END $$`, want: rewrite.CodeNotAQuery},
		{name: "call", sql: `CALL refresh()`, want: rewrite.CodeNotAQuery},
		{name: "set", sql: `SET search_path = evil`, want: rewrite.CodeNotAQuery},
		{name: "select into", sql: `SELECT * INTO stolen FROM chunks`, want: rewrite.CodeWrite},
		{name: "for update", sql: `SELECT * FROM chunks FOR UPDATE`, want: rewrite.CodeWrite},
		{name: "writable cte", sql: `WITH d AS (DELETE FROM chunks RETURNING *) SELECT * FROM d`, want: rewrite.CodeWrite},
		{name: "nested writable cte", sql: `SELECT * FROM (WITH i AS (INSERT INTO lookup VALUES (1) RETURNING *) SELECT * FROM i) s`, want: rewrite.CodeWrite},
		{name: "undeclared", sql: `SELECT * FROM secrets`, want: rewrite.CodeUndeclared},
		{name: "quoted case", sql: `SELECT * FROM "Chunks"`, want: rewrite.CodeUndeclared},
		{name: "wrong schema", sql: `SELECT * FROM docs`, want: rewrite.CodeUndeclared},
		{name: "relation", sql: `SELECT * FROM document_grants`, want: rewrite.CodeUndeclared},
		{name: "cross database", sql: `SELECT * FROM other.public.chunks`, want: rewrite.CodeUndeclared},
		{name: "pg_class", sql: `SELECT * FROM pg_class`, want: rewrite.CodeSystemCatalog},
		{name: "information_schema", sql: `SELECT * FROM information_schema.tables`, want: rewrite.CodeSystemCatalog},
		{name: "pg_authid", sql: `SELECT * FROM pg_catalog.pg_authid`, want: rewrite.CodeSystemCatalog},
		{name: "generate_series", sql: `SELECT * FROM generate_series(1, 10)`, want: rewrite.CodeTableFunction},
		{name: "dblink", sql: `SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)`, want: rewrite.CodeTableFunction},
		{name: "xmltable", sql: `SELECT * FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS x int)`, want: rewrite.CodeTableFunction},
		{name: "set_config", sql: `SELECT set_config('ragfence.tenant', 'x', false)`, want: rewrite.CodeFunction},
		{name: "current_setting", sql: `SELECT current_setting('ragfence.tenant') FROM chunks`, want: rewrite.CodeFunction, trusted: true},
		{name: "pg_sleep", sql: `SELECT * FROM chunks WHERE pg_sleep(1) IS NULL`, want: rewrite.CodeFunction, trusted: true},
		{name: "pg_read_file", sql: `SELECT pg_read_file('/etc/passwd')`, want: rewrite.CodeFunction},
		{name: "lo_import", sql: `SELECT lo_import('/etc/passwd')`, want: rewrite.CodeFunction},
		{name: "qualified function", sql: `SELECT public.lower(content) FROM chunks`, want: rewrite.CodeFunction},
		{name: "trusted-only function", sql: `SELECT avg(classification) FROM chunks`, want: rewrite.CodeFunction},
		{name: "division", sql: `SELECT id FROM chunks WHERE classification / 0 = 1`, want: rewrite.CodeOperator},
		{name: "like column pattern", sql: `SELECT id FROM chunks WHERE content LIKE source`, want: rewrite.CodeOperator},
		{name: "cast", sql: `SELECT id FROM chunks WHERE content::int = 1`, want: rewrite.CodeExpression},
		{name: "tablesample", sql: `SELECT id FROM chunks TABLESAMPLE SYSTEM (10)`, want: rewrite.CodeExpression, trusted: true},
		{name: "cte captures a relation", sql: `WITH document_grants AS (SELECT tenant_id, id AS document_id, 'u' AS user_id FROM lookup) SELECT * FROM chunks`, want: rewrite.CodeExpression},
		{name: "cte captures the table", sql: `WITH chunks AS (SELECT 1 AS id) SELECT * FROM public.chunks`, want: rewrite.CodeExpression},
		{name: "param zero", sql: `SELECT * FROM chunks WHERE id = $0`, want: rewrite.CodeParam},
		{name: "param beyond", sql: `SELECT * FROM chunks WHERE id = $99`, want: rewrite.CodeParam},
		{name: "masked filter", sql: `SELECT id FROM chunks WHERE contact_email = 'a@b.c'`, want: rewrite.CodeMaskedColumn},
		{name: "masked order", sql: `SELECT id FROM chunks c ORDER BY c.contact_email`, want: rewrite.CodeMaskedColumn, trusted: true},
		{name: "missing columns", sql: `SELECT * FROM chunks`, want: rewrite.CodeMissingColumns, env: noColumns},
		{name: "agent without grant", sql: `SELECT * FROM kb.docs`, want: rewrite.CodePolicy, agent: "summarizer"},
	}
	covered := map[rewrite.Code]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.env
			if e == nil {
				e = env
			}
			mode := rewrite.Strict
			if tc.trusted {
				mode = rewrite.Trusted
			}
			sub := &policy.Subject{ID: fuzzUserID, Tenant: fuzzTenant, Attributes: map[string]any{"clearance": 1}}
			res, err := e.rw.Rewrite(tc.sql, rewrite.Request{
				Fragments: e.p.Fragments(filter.Request{Subject: sub, Agent: tc.agent}),
				Mode:      mode,
				NArgs:     1,
			})
			if err == nil {
				t.Fatalf("accepted %s\nas %s", tc.sql, res.SQL)
			}
			if got := rewrite.CodeOf(err); got != tc.want {
				t.Fatalf("code %q, want %q: %v", got, tc.want, err)
			}
			if p := fzCheckRefusal(tc.sql, err); p != "" {
				t.Fatalf("%s: %v", p, err)
			}
		})
		covered[tc.want] = true
	}
	for _, c := range fzCodes {
		if !covered[c] {
			t.Errorf("no case refuses with %q", c)
		}
	}
}

// TestFuzzChecker shows that FuzzRewrite's independent checker catches the
// outputs it exists to catch, and passes safe ones.
func TestFuzzChecker(t *testing.T) {
	const ok = "(SELECT * FROM kb.docs docs WHERE docs.tenant_id = $2::pg_catalog.text AND docs.owner_id = $3)"
	cases := []struct {
		sql   string
		frags int
		safe  bool
	}{
		{sql: "SELECT * FROM " + ok + " d JOIN lookup l ON true WHERE d.id = $1", frags: 1, safe: true},
		{sql: "WITH chunks AS (SELECT 1) SELECT * FROM chunks, " + ok + " d", frags: 1, safe: true},
		{sql: "SELECT * FROM (SELECT id FROM chunks WHERE false) c", frags: 1, safe: true},
		{sql: "SELECT * FROM chunks"},
		{sql: "SELECT * FROM \"CHUNKS\""},
		{sql: "SELECT * FROM other.docs"},
		{sql: "SELECT * FROM secrets"},
		{sql: "SELECT * FROM " + ok + " d", frags: 2},
		{sql: "SELECT * FROM (SELECT * FROM kb.docs docs WHERE docs.owner_id = $2) d", frags: 1},
		{sql: "SELECT * FROM (SELECT * FROM kb.docs docs WHERE docs.tenant_id = $1) d", frags: 1},
		{sql: "SELECT * FROM (SELECT * FROM kb.docs docs WHERE docs.tenant_id = $3) d", frags: 1},
		{sql: "SELECT * FROM (SELECT * FROM kb.docs docs WHERE docs.tenant_id = $2 OR true) d", frags: 1},
		{sql: "SELECT * FROM (SELECT * FROM kb.docs x WHERE docs.tenant_id = $2) d", frags: 1},
		{sql: "SELECT * FROM (SELECT * FROM kb.docs docs, lookup WHERE docs.tenant_id = $2) d", frags: 1},
		{sql: "WITH chunks AS (SELECT 1) SELECT * FROM (SELECT id FROM chunks chunks WHERE chunks.tenant_id = $2) c", frags: 1},
		{sql: "SELECT * FROM (SELECT chunks.contact_email FROM chunks chunks WHERE chunks.tenant_id = $2) c", frags: 1},
		{sql: "SELECT * FROM (SELECT * FROM chunks chunks WHERE chunks.tenant_id = $2) c", frags: 1},
		{sql: "WITH document_grants AS (SELECT 1) SELECT * FROM (SELECT id FROM chunks chunks WHERE chunks.tenant_id = $2 AND EXISTS (SELECT 1 FROM document_grants g)) c", frags: 1},
		{sql: "SELECT * FROM (SELECT id FROM chunks chunks WHERE chunks.tenant_id = $2 AND EXISTS (SELECT 1 FROM secrets g)) c", frags: 1},
		{sql: "SELECT * FROM lookup WHERE EXISTS (SELECT 1 FROM document_grants)"},
		{sql: "SELECT set_config('a', 'b', false) FROM lookup"},
		{sql: "SELECT pg_catalog.pg_sleep(1)"},
		{sql: "SELECT * FROM lookup WHERE id = $4"},
		{sql: "SELECT * FROM lookup WHERE id = $0"},
		{sql: "SELECT * FROM generate_series(1, 2)"},
		{sql: "SELECT * FROM lookup FOR UPDATE"},
		{sql: "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a"},
	}
	for _, tc := range cases {
		res := &rewrite.Result{SQL: tc.sql, Args: []any{fuzzTenant, fuzzUserID}, Fragments: make([]rewrite.Fragment, tc.frags)}
		problems := fzCheckOutput(res, 1)
		if tc.safe && len(problems) > 0 {
			t.Errorf("%s: flagged as %q", tc.sql, problems)
		}
		if !tc.safe && len(problems) == 0 {
			t.Errorf("%s: not flagged", tc.sql)
		}
		t.Logf("%s: %q", tc.sql, problems)
	}
}
