package policy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/policy"
)

const demoPath = "../internal/demo/policy.yaml"

func TestLoadDemo(t *testing.T) {
	set, err := policy.Load(demoPath)
	if err != nil {
		t.Fatalf("Load(%s): %v", demoPath, err)
	}
	if !slices.Equal(set.Files, []string{demoPath}) || !slices.Equal(set.Names, []string{"chunks"}) || len(set.Resources) != 1 {
		t.Fatalf("files %q, names %q", set.Files, set.Names)
	}
	if set.Location != time.UTC || len(set.Unfiltered) != 0 {
		t.Errorf("location %v, unfiltered %q", set.Location, set.Unfiltered)
	}
	wantSubject := map[string]policy.Type{"id": policy.Text, "tenant": policy.Text, "roles": policy.TextArray, "groups": policy.TextArray, "clearance": policy.Integer}
	if !mapsEqual(set.Subject, wantSubject) {
		t.Errorf("subject %v, want %v", set.Subject, wantSubject)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(set.Version()) {
		t.Errorf("version %q is not 16 hex digits", set.Version())
	}

	res := set.Resources["chunks"]
	at := func(line, col int) policy.Pos { return policy.Pos{File: demoPath, Line: line, Col: col} }
	if res.Name != "chunks" || res.Table != "chunks" || res.Tenant != "tenant_id" || res.ID != "id" || res.Content != "content" ||
		res.Embedding != "embedding" || res.Metadata != "metadata" || res.Pos != at(17, 3) {
		t.Errorf("resource %+v", res)
	}
	if want := []string{"id", "tenant_id", "document_id", "owner_id", "visibility", "acl_groups", "classification", "source", "content", "contact_email", "metadata", "created_at", "embedding"}; !slices.Equal(res.Columns, want) {
		t.Errorf("columns %q", res.Columns)
	}
	if want := []string{"source", "classification", "metadata.lang", "metadata.year", "metadata.topic"}; !slices.Equal(res.Filterable, want) {
		t.Errorf("filterable %q", res.Filterable)
	}
	rel := res.Relations["document_grants"]
	if len(res.Relations) != 1 || rel == nil || rel.Table != "document_grants" || rel.Tenant != "tenant_id" ||
		!slices.Equal(rel.Columns, []string{"tenant_id", "document_id", "user_id", "permission"}) || rel.Pos != at(29, 7) {
		t.Errorf("relations %v (document_grants %+v)", res.Relations, rel)
	}

	type ruleWant struct {
		name                               string
		line, col                          int
		subject, context, columns, related []string
	}
	checkRules := func(what string, got []*policy.Rule, effect policy.Effect, agent string, want []ruleWant) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d rules, want %d", what, len(got), len(want))
			return
		}
		for i, w := range want {
			r := got[i]
			c := r.When
			if r.Name != w.name || r.Effect != effect || r.Agent != agent || r.Pos != at(w.line, w.col) || c == nil {
				t.Errorf("%s[%d]: %s %s agent %q at %s, want %s at line %d", what, i, r.Effect, r.Name, r.Agent, r.Pos, w.name, w.line)
				continue
			}
			if !slices.Equal(c.Subject, w.subject) || !slices.Equal(c.Context, w.context) || !slices.Equal(c.Columns, w.columns) || !slices.Equal(c.Relations, w.related) {
				t.Errorf("%s %s uses subject %q context %q columns %q relations %q", what, r.Name, c.Subject, c.Context, c.Columns, c.Relations)
			}
		}
	}
	checkRules("allow", res.Allow, policy.Allow, "", []ruleWant{
		{"tenant-wide", 35, 9, nil, nil, []string{"visibility"}, nil},
		{"group-member", 37, 9, []string{"groups"}, nil, []string{"acl_groups", "visibility"}, nil},
		{"owner", 39, 9, []string{"id"}, nil, []string{"owner_id"}, nil},
		{"shared-with-me", 41, 9, []string{"id"}, nil, []string{"document_id"}, []string{"document_grants"}},
		{"tenant-admin", 45, 9, []string{"roles"}, nil, nil, nil},
	})
	checkRules("deny", res.Deny, policy.Deny, "", []ruleWant{
		{"above-clearance", 49, 9, []string{"clearance"}, nil, []string{"classification"}, nil},
	})
	if got := res.Allow[0].When.Text; got != "visibility = 'tenant'" {
		t.Errorf("tenant-wide text %q", got)
	}
	if got := res.Allow[3].When.Text; !strings.HasPrefix(got, "EXISTS (SELECT 1 FROM document_grants g") || !strings.HasSuffix(got, "g.user_id = subject.id)") {
		t.Errorf("shared-with-me text %q", got)
	}

	if len(res.Masks) != 1 {
		t.Fatalf("%d masks", len(res.Masks))
	}
	m := res.Masks[0]
	if m.Column != "contact_email" || m.Pos != at(53, 9) || m.Unless.Text != "'pii-reader' = ANY (subject.roles) OR owner_id = subject.id" ||
		!slices.Equal(m.Unless.Subject, []string{"id", "roles"}) || !slices.Equal(m.Unless.Columns, []string{"owner_id"}) {
		t.Errorf("mask %+v unless %+v", m, m.Unless)
	}

	g := res.Agents["summarizer"]
	if len(res.Agents) != 1 || g == nil || g.Agent != "summarizer" || g.Pos != at(60, 7) {
		t.Fatalf("agents %v", res.Agents)
	}
	checkRules("summarizer allow", g.Allow, policy.Allow, "summarizer", []ruleWant{{"docs-only", 62, 13, nil, nil, []string{"source"}, nil}})
	if len(g.Deny) != 0 || len(g.Approval) != 1 || g.Approval[0].TTL != 30*time.Minute {
		t.Fatalf("summarizer deny %v, approval %v", g.Deny, g.Approval)
	}
	checkRules("summarizer approval", []*policy.Rule{g.Approval[0].Rule}, policy.Approval, "summarizer",
		[]ruleWant{{"classified", 65, 13, nil, nil, []string{"classification"}, nil}})

	// The embedded copy is the same policy.
	embedded, err := policy.Parse(policy.Source{Name: "demo.yaml", Data: demo.Policy})
	if err != nil {
		t.Fatal(err)
	}
	if embedded.Version() != set.Version() {
		t.Errorf("embedded demo has version %s, the file %s", embedded.Version(), set.Version())
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// demoReformatted is the demo policy with other comments, key order, flow
// style, quoting and line breaks, and the default time zone left implicit.
const demoReformatted = `resources:
  chunks:
    # the chunk table
    tenant: tenant_id
    table: "chunks"
    embedding: embedding
    content: content
    metadata: metadata
    id: id
    columns:
      - id
      - tenant_id
      - document_id
      - owner_id
      - visibility
      - acl_groups
      - classification
      - source
      - content
      - contact_email
      - metadata
      - created_at
      - embedding
    filterable: ["source", 'classification', metadata.lang, metadata.year, metadata.topic]
    agents: {summarizer: {approval: [{ttl: 30m, name: classified, when: classification > 0}], allow: [{when: "source IN ('wiki', 'drive')", name: docs-only}]}}
    mask: [{unless: "'pii-reader' = ANY (subject.roles)   OR owner_id = subject.id", column: contact_email}]
    deny:
      - when: |
          classification > subject.clearance
        name: above-clearance
    allow:
      - {name: tenant-wide, when: "visibility = 'tenant'"}
      - name: group-member
        when: visibility = 'group'
          AND acl_groups && subject.groups
      - {name: owner, when: 'owner_id = subject.id'}
      - name: shared-with-me
        when: "EXISTS (SELECT 1 FROM document_grants g WHERE g.document_id = chunks.document_id AND g.user_id = subject.id)"
      - name: tenant-admin
        when: >
          'admin' = ANY (subject.roles)
    relations: {document_grants: {columns: [tenant_id, document_id, user_id, permission], tenant: tenant_id, table: document_grants}}
subject: {attributes: {clearance: integer}}
version: 1
`

func TestVersion(t *testing.T) {
	base := mustParse(t, policy.Source{Name: "demo.yaml", Data: demo.Policy}).Version()

	var doc yaml.Node
	if err := yaml.Unmarshal(demo.Policy, &doc); err != nil {
		t.Fatal(err)
	}
	stripComments(&doc)
	roundTrip, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	demoText := string(demo.Policy)
	cut := strings.Index(demoText, "resources:")
	same := map[string][]policy.Source{
		"reformatted":                 {{Name: "demo.yaml", Data: []byte(demoReformatted)}},
		"re-encoded without comments": {{Name: "demo.yaml", Data: roundTrip}},
		"CRLF line ends":              {{Name: "demo.yaml", Data: []byte(strings.ReplaceAll(demoText, "\n", "\r\n"))}},
		"split in two files":          {{Name: "resources.yaml", Data: []byte("version: 1\n" + demoText[cut:])}, {Name: "subject.yaml", Data: []byte(demoText[:cut] + "resources: {}\n")}},
	}
	for name, srcs := range same {
		if v := mustParse(t, srcs...).Version(); v != base {
			t.Errorf("%s: version %s, want %s", name, v, base)
		}
	}

	changes := []struct{ name, old, new string }{
		{"condition", "classification > 0", "classification > 1"},
		{"condition operator", "owner_id = subject.id\n", "owner_id <> subject.id\n"},
		{"rule name", "name: owner\n", "name: owners\n"},
		{"mask condition", "OR owner_id = subject.id\"", "AND owner_id = subject.id\""},
		{"agent rule", "source IN ('wiki', 'drive')", "source IN ('wiki')"},
		// Whitespace inside a literal is part of the value.
		{"spaces in a literal", "source IN ('wiki', 'drive')", "source IN ('wiki', 'drive  ')"},
		{"agent name", "summarizer:", "writer:"},
		{"subject attribute type", "clearance: integer", "clearance: text"},
		{"time zone", "timezone: UTC", "timezone: Europe/Berlin"},
		{"table", "table: chunks", "table: public.chunks"},
		{"relation tenant", "tenant: tenant_id\n        columns", "tenant: document_id\n        columns"},
		{"filterable", "metadata.topic]", "metadata.topics]"},
		{"unfiltered", "version: 1\n", "version: 1\nunfiltered: [audit_log]\n"},
	}
	seen := map[string]string{base: "the demo"}
	for _, c := range changes {
		if strings.Count(demoText, c.old) != 1 {
			t.Fatalf("%s: %q is not in the demo policy once", c.name, c.old)
		}
		v := mustParse(t, policy.Source{Name: "demo.yaml", Data: []byte(strings.Replace(demoText, c.old, c.new, 1))}).Version()
		if prev, dup := seen[v]; dup {
			t.Errorf("%s: version %s is the same as for %s", c.name, v, prev)
		}
		seen[v] = c.name
	}
}

func mustParse(t *testing.T, srcs ...policy.Source) *policy.Set {
	t.Helper()
	set, err := policy.Parse(srcs...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return set
}

func stripComments(n *yaml.Node) {
	n.HeadComment, n.LineComment, n.FootComment = "", "", ""
	for _, c := range n.Content {
		stripComments(c)
	}
}

// allowedFunctions is the tail of the message for a function not allowed.
var allowedFunctions = "allowed: " + strings.Join(policy.Functions, ", ")

// parseCases are broken policy sets and every error they must report, in
// order, as the full file:line:col: ... line, with its code.
var parseCases = []struct {
	name  string
	files []policy.Source
	want  []string
	codes []policy.Code
}{
	{
		name: "column typo",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, content, embedding, metadata]
    allow:
      - name: owner
        when: ownr_id = subject.id
`),
		want:  []string{`p.yaml:8:15: resource "chunks": rule "owner": chunks has no column "ownr_id" (did you mean "owner_id"?)`},
		codes: []policy.Code{policy.CodeUnknownName},
	},
	{
		name: "disallowed function",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    allow:
      - name: sneaky
        when: "length(pg_read_file('/etc/passwd')) > 0"
`),
		want:  []string{`p.yaml:7:23: resource "chunks": rule "sneaky": function pg_read_file is not allowed in a policy condition; ` + allowedFunctions},
		codes: []policy.Code{policy.CodeForbidden},
	},
	{
		name: "subqueries over undeclared tables",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    relations:
      document_grants: {tenant: tenant_id}
    allow:
      - name: shared
        when: EXISTS (SELECT 1 FROM document_grant g WHERE g.user_id = subject.id)
      - name: secret
        when: owner_id = (SELECT owner FROM secrets LIMIT 1)
`),
		want: []string{
			`p.yaml:9:37: resource "chunks": rule "shared": "document_grant" is not a declared relation of resource chunks (did you mean "document_grants"?); declare it under relations`,
			`p.yaml:11:26: resource "chunks": rule "secret": only EXISTS subqueries are allowed in a policy condition`,
		},
		codes: []policy.Code{policy.CodeUnknownName, policy.CodeForbidden},
	},
	{
		name: "resource without tenant column",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    table: public.chunks
    allow:
      - {name: all, when: "true"}
`),
		want:  []string{`p.yaml:3:3: resource "chunks": resource chunks needs "tenant"`},
		codes: []policy.Code{policy.CodeMissing},
	},
	{
		name: "unknown field",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    alow:
      - {name: all, when: "true"}
`),
		want:  []string{`p.yaml:5:5: resource "chunks": unknown field "alow" in resource chunks (did you mean "allow"?); allowed: table, tenant, id, content, embedding, metadata, document, columns, filterable, relations, allow, deny, mask, agents`},
		codes: []policy.Code{policy.CodeUnknownField},
	},
	{
		name: "unknown top-level field",
		files: src("p.yaml", `version: 1
resource:
  chunks: {tenant: tenant_id}
`),
		want: []string{
			`p.yaml:1:1: the policy file needs "resources"`,
			`p.yaml:2:1: unknown field "resource" in the policy file (did you mean "resources"?); allowed: version, subject, context, resources, unfiltered, guardrails`,
		},
		codes: []policy.Code{policy.CodeMissing, policy.CodeUnknownField},
	},
	{
		name: "bad attribute type",
		files: src("p.yaml", `version: 1
subject:
  attributes:
    clearance: int
    dept: text
resources:
  chunks:
    tenant: tenant_id
    allow:
      - name: dept
        when: subject.dept = 'eng' AND subject.clearance > 1
`),
		want: []string{
			`p.yaml:4:16: attribute "clearance" has type "int"; use one of text, text[], integer, boolean, timestamptz`,
			// An attribute whose declaration failed is not declared.
			`p.yaml:11:40: resource "chunks": rule "dept": unknown subject attribute "clearance"; declare it under subject.attributes`,
		},
		codes: []policy.Code{policy.CodeInvalid, policy.CodeUnknownName},
	},
	{
		name: "unknown subject attribute",
		files: src("p.yaml", `version: 1
subject:
  attributes:
    clearance: integer
resources:
  chunks:
    tenant: tenant_id
    deny:
      - name: above
        when: classification > subject.clearence
`),
		want:  []string{`p.yaml:10:32: resource "chunks": rule "above": unknown subject attribute "clearence" (did you mean "clearance"?); declare it under subject.attributes`},
		codes: []policy.Code{policy.CodeUnknownName},
	},
	{
		name: "duplicate rule name",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: owner
        when: "'admin' = ANY (subject.roles)"
    deny:
      - name: owner
        when: "false"
`),
		want:  []string{`p.yaml:8:15: resource "chunks": two allow rules are named "owner"`},
		codes: []policy.Code{policy.CodeDuplicate},
	},
	{
		name: "folded block scalar, error on its second line",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    columns: [id, tenant_id, document_id, content, embedding, metadata]
    relations:
      document_grants: {tenant: tenant_id, columns: [tenant_id, document_id, user_id]}
    allow:
      - name: shared-with-me
        when: >-
          EXISTS (SELECT 1 FROM document_grants g
                  WHERE g.document_id = chunks.document_id AND g.usr_id = subject.id)
`),
		want:  []string{`p.yaml:12:64: resource "chunks": rule "shared-with-me": relation document_grants has no column "usr_id" (did you mean "user_id"?)`},
		codes: []policy.Code{policy.CodeUnknownName},
	},
	{
		name: "syntax error at the end of a folded block scalar",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    allow:
      - name: open
        when: >-
          source = 'x' AND (
          owner_id = subject.id
`),
		want:  []string{`p.yaml:9:32: resource "chunks": rule "open": SQL syntax: syntax error at end of input`},
		codes: []policy.Code{policy.CodeSyntax},
	},
	{
		name: "positions in every scalar style",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    columns: [id, tenant_id, source, content, embedding, metadata]
    allow:
      - {name: plain, when: source = 'x' OR sorce1 = 'y'}
      - {name: double, when: "source = '\x41\u00e9' OR sorce2 = 'y'"}
      - {name: single, when: 'source = ''it''''s'' OR sorce3 = ''y'''}
      - {name: spaces, when: "   sorce4 = 'y'"}
      - name: multi-line plain
        when: source = 'x'
          OR
            sorce5 = 'y'
      - name: multi-line quoted
        when: "source = 'x' \
          OR sorce6 = 'y'"
      - name: literal
        when: |
          source = 'x'

            OR sorce7 = 'y'
      - name: folded with blank line
        when: >

          source = 'x'

          OR sorce8 = 'y'
      - name: explicit indentation
        when: |2-
             source = 'x' OR sorce9 = 'y'
      - {name: unicode, when: "source = 'äöü' OR sorce10 = 'y'"}
      - {name: unicode syntax, when: "source = 'äöü' OR OR source = 'y'"}
`),
		want: []string{
			`p.yaml:7:45: resource "chunks": rule "plain": chunks has no column "sorce1" (did you mean "source"?)`,
			`p.yaml:8:56: resource "chunks": rule "double": chunks has no column "sorce2" (did you mean "source"?)`,
			`p.yaml:9:55: resource "chunks": rule "single": chunks has no column "sorce3" (did you mean "source"?)`,
			`p.yaml:10:34: resource "chunks": rule "spaces": chunks has no column "sorce4" (did you mean "source"?)`,
			`p.yaml:14:13: resource "chunks": rule "multi-line plain": chunks has no column "sorce5" (did you mean "source"?)`,
			`p.yaml:17:14: resource "chunks": rule "multi-line quoted": chunks has no column "sorce6" (did you mean "source"?)`,
			`p.yaml:22:16: resource "chunks": rule "literal": chunks has no column "sorce7" (did you mean "source"?)`,
			`p.yaml:28:14: resource "chunks": rule "folded with blank line": chunks has no column "sorce8" (did you mean "source"?)`,
			`p.yaml:31:30: resource "chunks": rule "explicit indentation": chunks has no column "sorce9" (did you mean "source"?)`,
			`p.yaml:32:50: resource "chunks": rule "unicode": chunks has no column "sorce10"`,
			`p.yaml:33:57: resource "chunks": rule "unicode syntax": SQL syntax: syntax error at or near "OR"`,
		},
		codes: append(slices.Repeat([]policy.Code{policy.CodeUnknownName}, 10), policy.CodeSyntax),
	},
	{
		name: "forbidden SQL",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    relations:
      grants: {tenant: tenant_id}
    allow:
      - {name: param, when: owner_id = $1}
      - {name: clock, when: created_at > now()}
      - {name: sysvalue, when: current_user = owner_id}
      - {name: alias columns, when: "EXISTS (SELECT 1 FROM grants g(a, b) WHERE g.a = subject.id)"}
      - {name: system column, when: xmin = '1'}
      - {name: typmod, when: "classification::numeric(pg_read_file('x')) > 1"}
      - {name: nul, when: "true\0 AND owner_id = subject.id"}
      - {name: two statements, when: "true; DELETE FROM chunks"}
      - {name: collate, when: "source = 'x' COLLATE \"C\""}
`),
		want: []string{
			`p.yaml:8:40: resource "chunks": rule "param": parameters ($1) are not allowed: use subject.<attr> or context.<attr>`,
			`p.yaml:9:42: resource "chunks": rule "clock": function now is not allowed in a policy condition; ` + allowedFunctions,
			`p.yaml:10:32: resource "chunks": rule "sysvalue": CURRENT_* functions are not allowed: use context.time, which tests can fix`,
			`p.yaml:11:60: resource "chunks": rule "alias columns": column aliases are not allowed: write grants g and use its column names`,
			`p.yaml:12:37: resource "chunks": rule "system column": system column xmin is not allowed in a policy condition`,
			`p.yaml:13:55: resource "chunks": rule "typmod": a type modifier must be an integer constant, as in numeric(10, 2)`,
			`p.yaml:14:32: resource "chunks": rule "nul": SQL syntax: a condition may not contain a NUL character`,
			`p.yaml:15:39: resource "chunks": rule "two statements": a condition is one boolean expression, not a statement or a list`,
			`p.yaml:16:45: resource "chunks": rule "collate": COLLATE is not allowed in a policy condition`,
		},
		codes: []policy.Code{
			policy.CodeForbidden, policy.CodeForbidden, policy.CodeForbidden, policy.CodeForbidden, policy.CodeForbidden,
			policy.CodeForbidden, policy.CodeSyntax, policy.CodeForbidden, policy.CodeForbidden,
		},
	},
	{
		name: "masks and agents",
		files: src("p.yaml", `version: 1
resources:
  chunks:
    tenant: tenant_id
    allow:
      - {name: all, when: "true"}
    mask:
      - {column: tenant_id, unless: "false"}
      - {unless: "true"}
    agents:
      summarizer:
        deny: [{name: x, when: "true"}]
  docs:
    mask:
      - {unless: "true"}
    allow:
      - {name: all, when: "true"}
`),
		want: []string{
			`p.yaml:8:18: resource "chunks": the tenant column "tenant_id" cannot be masked`,
			`p.yaml:9:9: resource "chunks": mask needs "column"`,
			`p.yaml:11:7: resource "chunks": agent "summarizer" has no allow rules, so it would see nothing; remove it instead`,
			`p.yaml:13:3: resource "docs": resource docs needs "tenant"`,
			`p.yaml:15:9: resource "docs": mask needs "column"`,
		},
		codes: []policy.Code{policy.CodeInvalid, policy.CodeMissing, policy.CodeMissing, policy.CodeMissing, policy.CodeMissing},
	},
	{
		name: "list entries that are not strings",
		files: src("p.yaml", `version: 1
unfiltered: [{a: 1}, Audit]
resources:
  chunks:
    tenant: tenant_id
    columns: [id, tenant_id, content, embedding, metadata]
    filterable: [[x], source.lang, nope]
    allow:
      - {name: all, when: "true"}
`),
		want: []string{
			`p.yaml:2:14: unfiltered entry must be a string`,
			`p.yaml:2:22: unfiltered table "Audit" must be a lower-case SQL name, optionally schema-qualified`,
			`p.yaml:7:18: resource "chunks": filterable entry must be a string`,
			`p.yaml:7:23: resource "chunks": filterable "source.lang": only keys of the metadata column "metadata" may be dotted paths`,
			`p.yaml:7:36: resource "chunks": filterable column "nope" is not in the resource's columns`,
		},
		codes: []policy.Code{policy.CodeInvalid, policy.CodeInvalid, policy.CodeInvalid, policy.CodeInvalid, policy.CodeUnknownName},
	},
	{
		name: "file-level problems",
		files: []policy.Source{
			{Name: "empty.yaml", Data: []byte("# nothing yet\n")},
			{Name: "tabs.yaml", Data: []byte("version: 1\nresources:\n\tchunks: {}\n")},
			{Name: "version.yaml", Data: []byte("version: 2\nresources: {}\n")},
		},
		want: []string{
			`empty.yaml:1:1: empty policy file: it needs version: 1 and resources`,
			`tabs.yaml:3:1: invalid YAML: found character that cannot start any token`,
			`version.yaml:1:10: unsupported version "2": this ragfence reads version 1`,
		},
		codes: []policy.Code{policy.CodeMissing, policy.CodeYAML, policy.CodeInvalid},
	},
	{
		name: "errors of two files at once, sorted by file then line",
		files: []policy.Source{
			{Name: "b.yaml", Data: []byte(twoFilesB)},
			{Name: "a.yaml", Data: []byte(twoFilesA)},
		},
		want: twoFilesWant("a.yaml", "b.yaml", false),
		codes: []policy.Code{
			policy.CodeInvalid, policy.CodeUnknownName, policy.CodeUnknownName, policy.CodeDuplicate,
			policy.CodeInvalid, policy.CodeForbidden, policy.CodeInvalid,
		},
	},
}

func src(name, data string) []policy.Source { return []policy.Source{{Name: name, Data: []byte(data)}} }

const twoFilesA = `version: 1
subject:
  attributes:
    clearance: int
resources:
  chunks:
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, content, embedding, metadata]
    allow:
      - name: owner
        when: ownr_id = subject.id
      - name: admin
        when: "'admin' = ANY (subject.rols)"
  docs:
    tenant: org_id
    allow: [{name: all, when: "true"}]
`

// b.yaml's problems are found in another order than they are reported:
// subject and context sections are read for every file before resources.
const twoFilesB = `version: 2
resources:
  docs:
    tenant: org_id
    allow:
      - name: all
        when: pg_sleep(1) IS NULL
context:
  timezone: Mars/Olympus
`

// twoFilesWant is what a set of a.yaml and b.yaml reports: the resource both
// define is read from the file loaded first, and reported in the other.
func twoFilesWant(a, b string, aFirst bool) []string {
	want := []string{
		a + `:4:16: attribute "clearance" has type "int"; use one of text, text[], integer, boolean, timestamptz`,
		a + `:11:15: resource "chunks": rule "owner": chunks has no column "ownr_id" (did you mean "owner_id"?)`,
		a + `:13:31: resource "chunks": rule "admin": unknown subject attribute "rols" (did you mean "roles"?); declare it under subject.attributes`,
		a + `:14:3: resource "docs" is already defined at ` + b + `:3:3`,
		b + `:1:10: unsupported version "2": this ragfence reads version 1`,
		b + `:7:15: resource "docs": rule "all": function pg_sleep is not allowed in a policy condition; ` + allowedFunctions,
		b + `:9:13: unknown time zone "Mars/Olympus": use an IANA name such as Europe/Berlin`,
	}
	if aFirst {
		want[3] = b + `:3:3: resource "docs" is already defined at ` + a + `:14:3`
		want = slices.Delete(want, 5, 6)
		want[3], want[4] = want[4], want[3]
	}
	return want
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := policy.Parse(tc.files...)
			checkErrors(t, set, err, tc.want, tc.codes)
		})
	}
}

func checkErrors(t *testing.T, set *policy.Set, err error, want []string, codes []policy.Code) {
	t.Helper()
	var list policy.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got set %v, error %v; want an ErrorList", set, err)
	}
	if set != nil {
		t.Errorf("a set came back with the errors")
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var gotCodes []policy.Code
	for _, e := range list {
		gotCodes = append(gotCodes, e.Code)
	}
	if !slices.Equal(gotCodes, codes) {
		t.Errorf("codes %q, want %q", gotCodes, codes)
	}
}

func TestLoadFolder(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "more")
	write := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "a.yaml"), twoFilesA)
	write(filepath.Join(sub, "b.yml"), twoFilesB)
	write(filepath.Join(dir, "a_test.yaml"), "this: [is not a policy")     // a policy test file: skipped
	write(filepath.Join(dir, "README.md"), "# not YAML at all: [")         // not *.yaml
	write(filepath.Join(dir, "empty", "notes.txt"), "nothing to see here") // no policy files below

	_, err := policy.Load(dir)
	checkErrors(t, nil, err, twoFilesWant(filepath.Join(dir, "a.yaml"), filepath.Join(sub, "b.yml"), true), []policy.Code{
		policy.CodeInvalid, policy.CodeUnknownName, policy.CodeUnknownName, policy.CodeInvalid, policy.CodeDuplicate, policy.CodeInvalid,
	})

	// Files and folders mix; the set lists files in load order.
	write(filepath.Join(sub, "b.yml"), "version: 1\nresources: {docs2: {tenant: org_id, allow: [{name: all, when: 'true'}]}}\n")
	write(filepath.Join(dir, "a.yaml"), strings.Replace(twoFilesA, "clearance: int\n", "clearance: integer\n", 1))
	set, err := policy.Load(filepath.Join(dir, "a.yaml"), sub)
	if err == nil {
		t.Fatalf("a.yaml still has rule errors, got set %v", set.Names)
	}
	write(filepath.Join(dir, "a.yaml"), "version: 1\nresources: {chunks: {tenant: tenant_id, allow: [{name: all, when: 'true'}]}}\n")
	set, err = policy.Load(filepath.Join(dir, "a.yaml"), sub)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "a.yaml"), filepath.Join(sub, "b.yml")}; !slices.Equal(set.Files, want) || !slices.Equal(set.Names, []string{"chunks", "docs2"}) {
		t.Errorf("files %q names %q", set.Files, set.Names)
	}

	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{nil, "policy: no policy files given"},
		{[]string{filepath.Join(dir, "missing.yaml")}, "policy: stat " + filepath.Join(dir, "missing.yaml") + ": no such file or directory"},
		{[]string{filepath.Join(dir, "empty")}, "policy: no *.yaml files in " + filepath.Join(dir, "empty")},
	} {
		if _, err := policy.Load(tc.paths...); err == nil || err.Error() != tc.want {
			t.Errorf("Load(%q): %v, want %s", tc.paths, err, tc.want)
		}
	}
}

// subjectPolicy declares one attribute of every type.
const subjectPolicy = `version: 1
subject:
  attributes:
    clearance: integer
    dept: text
    projects: text[]
    contractor: boolean
    hired: timestamptz
resources:
  chunks:
    tenant: tenant_id
    allow: [{name: all, when: "true"}]
`

func TestCheckSubject(t *testing.T) {
	set := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(subjectPolicy)})
	hired := time.Date(2024, 3, 1, 9, 30, 0, 0, time.FixedZone("", 3600))
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		want  map[string]any
		err   string
	}{
		{name: "none", attrs: nil, want: map[string]any{}},
		{
			name: "every type, as JSON decodes them",
			attrs: map[string]any{
				"clearance": json.Number("3"), "dept": "eng", "projects": []any{"a", "b"},
				"contractor": false, "hired": "2024-03-01T09:30:00+01:00",
			},
			want: map[string]any{"clearance": int64(3), "dept": "eng", "projects": []string{"a", "b"}, "contractor": false, "hired": hired},
		},
		{
			name:  "Go values from an authentication layer",
			attrs: map[string]any{"clearance": 2, "projects": []string{"x"}, "hired": hired, "dept": nil},
			want:  map[string]any{"clearance": int64(2), "projects": []string{"x"}, "hired": hired},
		},
		{name: "whole float", attrs: map[string]any{"clearance": 4.0}, want: map[string]any{"clearance": int64(4)}},
		{name: "null is absent", attrs: map[string]any{"clearance": nil}, want: map[string]any{}},
		{name: "string for integer", attrs: map[string]any{"clearance": "3"}, err: `subject attribute "clearance": want an integer, got 3`},
		{name: "fraction", attrs: map[string]any{"clearance": json.Number("1.5")}, err: `subject attribute "clearance": strconv.ParseInt: parsing "1.5": invalid syntax`},
		{name: "number for text", attrs: map[string]any{"dept": json.Number("7")}, err: `subject attribute "dept": want text, got json.Number`},
		{name: "string for boolean", attrs: map[string]any{"contractor": "true"}, err: `subject attribute "contractor": want boolean, got string`},
		{name: "string for text[]", attrs: map[string]any{"projects": "a"}, err: `subject attribute "projects": want a list of strings, got string`},
		{name: "number in text[]", attrs: map[string]any{"projects": []any{"a", json.Number("1")}}, err: `subject attribute "projects": want a list of strings, got json.Number in it`},
		{name: "bad time", attrs: map[string]any{"hired": "2024-03-01"}, err: `subject attribute "hired": want an RFC 3339 time: parsing time "2024-03-01" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"`},
		{name: "undeclared", attrs: map[string]any{"clearence": 1}, err: `subject attribute "clearence" is not declared in the policy's subject.attributes`},
		{name: "built-in as attribute", attrs: map[string]any{"roles": []any{"admin"}}, err: `subject attribute "roles" is a top-level field, not an attribute`},
		{name: "first error by name", attrs: map[string]any{"zeta": 1, "alpha": 1}, err: `subject attribute "alpha" is not declared in the policy's subject.attributes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"editor"}, Attributes: tc.attrs}
			before := fmt.Sprint(tc.attrs)
			got, err := set.CheckSubject(in)
			if after := fmt.Sprint(in.Attributes); after != before {
				t.Errorf("the input's attributes changed from %s to %s", before, after)
			}
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != "alice" || got.Tenant != "acme" || !slices.Equal(got.Roles, []string{"editor"}) {
				t.Errorf("built-in fields changed: %+v", got)
			}
			gotJSON, _ := json.Marshal(got.Attributes)
			wantJSON, _ := json.Marshal(tc.want)
			if string(gotJSON) != string(wantJSON) || len(got.Attributes) != len(tc.want) {
				t.Errorf("attributes %s, want %s", gotJSON, wantJSON)
			}
			for k, v := range tc.want {
				if g := got.Attributes[k]; !sameValue(g, v) {
					t.Errorf("%s = %#v (%T), want %#v (%T)", k, g, g, v, v)
				}
			}
		})
	}
}

func sameValue(a, b any) bool {
	switch x := a.(type) {
	case []string:
		y, ok := b.([]string)
		return ok && slices.Equal(x, y)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return a == b
}

func TestReadSubjectAndContext(t *testing.T) {
	dir := t.TempDir()
	file := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	set := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(subjectPolicy)})

	p := file("alice.json", `{"id": "alice", "tenant": "acme", "roles": ["editor"], "groups": ["eng"],
		"attributes": {"clearance": 2, "projects": ["x"], "hired": "2024-03-01T09:30:00Z", "dept": null}}`)
	s, err := policy.ReadSubject(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "alice" || s.Tenant != "acme" || !slices.Equal(s.Roles, []string{"editor"}) || !slices.Equal(s.Groups, []string{"eng"}) {
		t.Errorf("subject %+v", s)
	}
	if n, ok := s.Attributes["clearance"].(json.Number); !ok || n != "2" {
		t.Errorf("clearance read as %#v, want json.Number 2 (numbers stay exact)", s.Attributes["clearance"])
	}
	checked, err := set.CheckSubject(s)
	if err != nil {
		t.Fatal(err)
	}
	if checked.Attributes["clearance"] != int64(2) || len(checked.Attributes) != 3 {
		t.Errorf("checked attributes %v", checked.Attributes)
	}
	if v, ok := checked.Attr("dept"); ok {
		t.Errorf("null dept is carried: %v", v)
	}

	for _, tc := range []struct{ name, data, err string }{
		{"unknown field.json", `{"id": "a", "role": ["admin"]}`, `invalid JSON: unknown field "role" (did you mean "roles"?); allowed: id, tenant, roles, groups, attributes`},
		{"wrong type.json", `{"id": "a", "roles": "admin"}`, `invalid JSON: json: cannot unmarshal string into Go struct field Subject.roles of type []string`},
		{"number id.json", `{"id": 7}`, `invalid JSON: json: cannot unmarshal number into Go struct field Subject.id of type string`},
		{"array.json", `[]`, `invalid JSON: want a JSON object`},
		{"empty.json", ``, `invalid JSON: want a JSON object`},
		{"truncated.json", `{"id": "a"`, `invalid JSON: unexpected end of input`},
	} {
		p := file(tc.name, tc.data)
		if _, err := policy.ReadSubject(p); err == nil || err.Error() != "subject "+p+": "+tc.err {
			t.Errorf("%s: %v, want subject %s: %s", tc.name, err, p, tc.err)
		}
	}
	// The file may be read strictly, but the policy still decides the types.
	s, err = policy.ReadSubject(file("undeclared.json", `{"id": "a", "attributes": {"level": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.CheckSubject(s); err == nil || err.Error() != `subject attribute "level" is not declared in the policy's subject.attributes` {
		t.Errorf("undeclared attribute: %v", err)
	}
	missing := filepath.Join(dir, "missing.json")
	if _, err := policy.ReadSubject(missing); err == nil || err.Error() != "subject: open "+missing+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}

	c, err := policy.ReadContext(file("ctx.json", `{"time": "2026-11-23T10:00:00+01:00", "ip": "10.1.2.3"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Time.Equal(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)) || c.IP.String() != "10.1.2.3" {
		t.Errorf("context %+v", c)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		name string
		want any
	}{{"time", c.Time}, {"hour", int64(10)}, {"weekday", int64(1)}, {"agent", "summarizer"}} {
		if v, ok := c.Attr(a.name, "summarizer", berlin); !ok || !sameValue(v, a.want) {
			t.Errorf("context.%s = %v %v, want %v", a.name, v, ok, a.want)
		}
	}
	if _, ok := (policy.Context{}).Attr("time", "", time.UTC); ok {
		t.Errorf("an empty context carries a time")
	}
	for _, tc := range []struct{ name, data, err string }{
		{"agent.json", `{"time": "2026-11-23T10:00:00Z", "agent": "x"}`, `invalid JSON: unknown field "agent"; allowed: time, ip`},
		{"case.json", `{"Time": "2026-11-23T10:00:00Z"}`, `invalid JSON: unknown field "Time" (did you mean "time"?); allowed: time, ip`},
		{"twice.json", `{"ip": "10.0.0.1", "ip": "10.0.0.2"}`, `invalid JSON: field "ip" appears twice`},
		{"trailing.json", `{"ip": "10.0.0.1"} {}`, `invalid JSON: unexpected data after the JSON object`},
		{"null.json", `null`, `invalid JSON: want a JSON object`},
		{"local time.json", `{"time": "2026-11-23 10:00:00"}`, `invalid JSON: parsing time "2026-11-23 10:00:00" as "2006-01-02T15:04:05Z07:00": cannot parse " 10:00:00" as "T"`},
		{"bad ip.json", `{"ip": "10.0.0.300"}`, `invalid JSON: ParseAddr("10.0.0.300"): IPv4 field has value >255`},
	} {
		p := file(tc.name, tc.data)
		if _, err := policy.ReadContext(p); err == nil || err.Error() != "context "+p+": "+tc.err {
			t.Errorf("%s: %v, want context %s: %s", tc.name, err, p, tc.err)
		}
	}
}

// FuzzParse feeds whole policy files to Parse: it must never panic, and
// what it reports must be well formed.
func FuzzParse(f *testing.F) {
	f.Add(string(demo.Policy))
	f.Add(demoReformatted)
	f.Add(subjectPolicy)
	f.Add(twoFilesA)
	f.Add(twoFilesB)
	for _, tc := range parseCases {
		for _, s := range tc.files {
			f.Add(string(s.Data))
		}
	}
	f.Fuzz(func(t *testing.T, data string) {
		set, err := policy.Parse(policy.Source{Name: "f.yaml", Data: []byte(data)})
		if err == nil {
			again, err := policy.Parse(policy.Source{Name: "g.yaml", Data: []byte(data)})
			if err != nil || again.Version() != set.Version() {
				t.Fatalf("parsing again: %v, version %s then %s", err, set.Version(), again.Version())
			}
			return
		}
		var list policy.ErrorList
		if !errors.As(err, &list) || len(list) == 0 || set != nil {
			t.Fatalf("error %T %v", err, err)
		}
		// yaml.v3 also breaks lines at a lone CR, NEL, LS and PS.
		lines := 1 + strings.Count(data, "\n") + strings.Count(data, "\r") + strings.Count(data, "\u0085") +
			strings.Count(data, "\u2028") + strings.Count(data, "\u2029")
		for i, e := range list {
			if e.File != "f.yaml" || e.Line < 1 || e.Line > lines || e.Col < 1 || e.Code == "" || e.Msg == "" {
				t.Fatalf("malformed error %q (code %q) for a %d-line file", e.Error(), e.Code, lines)
			}
			if i > 0 && (list[i-1].Line > e.Line || list[i-1].Line == e.Line && list[i-1].Col > e.Col) {
				t.Fatalf("errors out of order:\n%v", err)
			}
		}
	})
}
