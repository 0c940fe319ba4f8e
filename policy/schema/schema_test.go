package schema_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/policy/schema"
)

const (
	// examplesDir holds example policies and their test files; it may be
	// empty or missing.
	examplesDir = "../../testdata/policies"
	demoPolicy  = "../../internal/demo/policy.yaml"
	// headerPrefix starts the first line of every example file, so editors
	// find the schema.
	headerPrefix = "# yaml-language-server: $schema="

	policySchemaFile = "policy.schema.json"
	testSchemaFile   = "policy-test.schema.json"
)

var compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	out := map[string]*jsonschema.Schema{}
	for name, data := range map[string][]byte{policySchemaFile: schema.Policy, testSchemaFile: schema.PolicyTest} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		if err := c.AddResource(name, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		sch, err := c.Compile(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = sch
	}
	return out, nil
})

func schemaFor(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	m, err := compiled()
	if err != nil {
		t.Fatalf("compiling the schemas: %v", err)
	}
	return m[name]
}

// schemaFileOf is the schema a YAML file is written against, by its name.
func schemaFileOf(path string) string {
	if strings.HasSuffix(path, policy.TestFileSuffix) {
		return testSchemaFile
	}
	return policySchemaFile
}

// yamlValue decodes a YAML document into the JSON data model the validator
// expects: map[string]any, []any, json.Number, string, bool and nil.
func yamlValue(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(stringKeys(v))
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// stringKeys turns the map[any]any yaml.v3 makes of a mapping with a
// non-string key into a map[string]any, as the loaders see keys as text.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = stringKeys(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			key := "null"
			if k != nil {
				key = fmt.Sprint(k)
			}
			out[key] = stringKeys(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stringKeys(e)
		}
		return out
	}
	return v
}

func validate(t *testing.T, schemaFile string, data []byte) error {
	t.Helper()
	v, err := yamlValue(data)
	if err != nil {
		return err
	}
	return schemaFor(t, schemaFile).Validate(v)
}

// exampleFiles lists the YAML files under dir; none when it does not
// exist (yet).
func exampleFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	if len(files) == 0 {
		t.Logf("no example files in %s", dir)
	}
	return files
}

func TestSchemasCompile(t *testing.T) {
	if _, err := compiled(); err != nil {
		t.Fatal(err)
	}
}

// TestDescriptions makes sure every property has hover help.
func TestDescriptions(t *testing.T) {
	for name, data := range map[string][]byte{policySchemaFile: schema.Policy, testSchemaFile: schema.PolicyTest} {
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch x := v.(type) {
			case map[string]any:
				if props, ok := x["properties"].(map[string]any); ok {
					for p, s := range props {
						if d, _ := s.(map[string]any)["description"].(string); d == "" {
							t.Errorf("%s: %s/properties/%s has no description", name, path, p)
						}
					}
				}
				for k, e := range x {
					if k != "examples" {
						walk(path+"/"+k, e)
					}
				}
			case []any:
				for i, e := range x {
					walk(fmt.Sprintf("%s/%d", path, i), e)
				}
			}
		}
		walk("#", doc)
	}
}

func TestExamples(t *testing.T) {
	for _, f := range exampleFiles(t, examplesDir) {
		t.Run(filepath.ToSlash(strings.TrimPrefix(f, examplesDir+string(filepath.Separator))), func(t *testing.T) {
			if err := checkFile(t, f); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDemoPolicy(t *testing.T) {
	if err := checkFile(t, demoPolicy); err != nil {
		t.Error(err)
	}
}

// TestExampleHeaders checks that every example file names its schema on its
// first line, by a relative path that reaches the right file.
func TestExampleHeaders(t *testing.T) {
	for _, f := range exampleFiles(t, examplesDir) {
		if err := checkHeader(f); err != nil {
			t.Error(err)
		}
	}
}

// TestCheckers makes sure the example checks fail on bad files, so an
// examples folder that passes proves something.
func TestCheckers(t *testing.T) {
	dir := t.TempDir()
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, here)
	if err != nil {
		t.Fatal(err)
	}
	ref := func(name string) string {
		return headerPrefix + filepath.ToSlash(filepath.Join(rel, name)) + "\n"
	}
	files := []struct {
		name, content    string
		fileOK, headerOK bool
	}{
		{"good.yaml", ref(policySchemaFile) + policyDoc(""), true, true},
		{"good_test.yaml", ref(testSchemaFile) + "cases: [{name: a, see: []}]\n", true, true},
		{"unknown-key.yaml", ref(policySchemaFile) + policyDoc("    owner: owner_id\n"), false, true},
		{"neither_test.yaml", ref(testSchemaFile) + "cases: [{name: a}]\n", false, true},
		{"test-as-policy.yml", ref(policySchemaFile) + "cases: [{name: a, see: []}]\n", false, true},
		{"no-header.yaml", policyDoc(""), true, false},
		{"header-second.yaml", "# policy\n" + ref(policySchemaFile) + policyDoc(""), true, false},
		{"wrong-schema.yaml", ref(testSchemaFile) + policyDoc(""), true, false},
		{"wrong-schema_test.yaml", ref(policySchemaFile) + "cases: [{name: a, see: []}]\n", true, false},
		{"missing-schema.yaml", headerPrefix + "policy.schema.json\n" + policyDoc(""), true, false},
		{"absolute.yaml", headerPrefix + filepath.ToSlash(filepath.Join(here, policySchemaFile)) + "\n" + policyDoc(""), true, false},
		{"url.yaml", headerPrefix + "https://example.com/policy.schema.json\n" + policyDoc(""), true, false},
		{"empty.yaml", "", false, false},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(exampleFiles(t, dir)); got != len(files) {
		t.Errorf("found %d files in %s, want %d", got, dir, len(files))
	}
	if got := exampleFiles(t, filepath.Join(dir, "missing")); len(got) != 0 {
		t.Errorf("found %v in a missing folder", got)
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := checkFile(t, path); (err == nil) != f.fileOK {
			t.Errorf("%s: checkFile = %v, want ok %v", f.name, err, f.fileOK)
		}
		if err := checkHeader(path); (err == nil) != f.headerOK {
			t.Errorf("%s: checkHeader = %v, want ok %v", f.name, err, f.headerOK)
		} else if err != nil {
			t.Logf("checkHeader: %v", err)
		}
	}
}

// checkFile validates a YAML file against the schema its name calls for.
func checkFile(t *testing.T, path string) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := validate(t, schemaFileOf(path), data); err != nil {
		return fmt.Errorf("%s does not match %s:\n%v", path, schemaFileOf(path), err)
	}
	return nil
}

// checkHeader checks that a file's first line points editors at the schema
// its name calls for, by a path relative to the file.
func checkHeader(path string) error {
	want := schemaFileOf(path)
	wantInfo, err := os.Stat(want)
	if err != nil {
		return err
	}
	wantAbs, err := filepath.Abs(want)
	if err != nil {
		return err
	}
	dirAbs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return err
	}
	wantRef := want
	if rel, err := filepath.Rel(dirAbs, wantAbs); err == nil {
		wantRef = filepath.ToSlash(rel)
	}
	first, err := firstLine(path)
	if err != nil {
		return fmt.Errorf("%s: %v; the first line must be %s%s", path, err, headerPrefix, wantRef)
	}
	ref, ok := strings.CutPrefix(first, headerPrefix)
	if !ok {
		return fmt.Errorf("%s: the first line must be %s%s, not %q", path, headerPrefix, wantRef, first)
	}
	ref = strings.TrimSpace(ref)
	if ref == "" || filepath.IsAbs(ref) || strings.HasPrefix(ref, "/") || strings.Contains(ref, "://") {
		return fmt.Errorf("%s: $schema=%s must be a path relative to the file: %s", path, ref, wantRef)
	}
	resolved := filepath.Join(filepath.Dir(path), filepath.FromSlash(ref))
	info, err := os.Stat(resolved)
	if err != nil {
		return fmt.Errorf("%s: $schema=%s does not exist (%v); use %s", path, ref, err, wantRef)
	}
	if !os.SameFile(info, wantInfo) {
		return fmt.Errorf("%s: $schema=%s is not %s; use %s", path, ref, want, wantRef)
	}
	return nil
}

func firstLine(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	s := bufio.NewScanner(fh)
	if !s.Scan() {
		if err := s.Err(); err != nil {
			return "", err
		}
		return "", errors.New("empty file")
	}
	return strings.TrimSuffix(s.Text(), "\r"), nil
}

// fullPolicy uses every key of the policy format.
const fullPolicy = `
version: 1
subject:
  attributes:
    clearance: integer
    department: text
    projects: text[]
    contractor: boolean
    hired_at: timestamptz
    $legacy: text
context:
  timezone: Europe/Berlin
unfiltered: [countries, public.currencies]
resources:
  docs:
    table: public.docs
    tenant: tenant_id
    id: doc_id
    content: body
    embedding: vec
    metadata: meta
    document: doc_id
    columns: [doc_id, tenant_id, owner_id, body, vec, meta, source, classification, email, created_at]
    filterable: [source, meta.lang, meta.a.b]
    relations:
      grants:
        table: public.grants
        tenant: tenant_id
        columns: [tenant_id, doc_id, user_id]
      teams: {tenant: tenant_id}
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: granted
        when: >-
          EXISTS (SELECT 1 FROM grants g
                  WHERE g.doc_id = docs.doc_id AND g.user_id = subject.id)
      - name: office-hours
        when: context.hour BETWEEN 8 AND 18 AND NOT subject.contractor AND created_at > subject.hired_at
    deny:
      - name: above-clearance
        when: classification > subject.clearance
    mask:
      - column: email
        unless: "'hr' = ANY (subject.roles) OR subject.department = 'hr'"
    agents:
      summarizer:
        allow: [{name: wiki, when: "source = 'wiki'"}]
        deny: [{name: classified, when: classification > 0}]
      "Bot 2":
        allow: []
  notes:
    tenant: org
guardrails:
  - name: bulk
    who: agents
    collections: [docs]
    when: context.hour NOT BETWEEN 7 AND 19
    window: 1m
    max_rows: 500
    max_requests: 120
    max_documents: 200
    baseline: {windows: 60, factor: 5, min_rows: 100}
    action: cap
    cap_k: 3
  - {name: crawler, who: {agent: crawler}, window: 10m, max_rows: 50, action: suspend, suspend_for: 30m}
`

// policyDoc is a small valid policy with extra text spliced into the docs
// resource.
func policyDoc(resourceExtra string) string {
	return "version: 1\nresources:\n  docs:\n    tenant: tenant_id\n    allow:\n      - {name: all, when: \"true\"}\n" + resourceExtra
}

func TestPolicyDocuments(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		// schemaOK and loaderOK are the verdicts of the schema and of
		// policy.Parse; they differ only where the schema cannot follow the
		// loader (documented in the case name).
		schemaOK, loaderOK bool
	}{
		{"minimal", "version: 1\nresources: {}\n", true, true},
		{"small", policyDoc(""), true, true},
		{"every key", fullPolicy, true, true},
		{"boolean literal condition", policyDoc("    deny: [{name: never, when: false}]\n"), true, true},
		{"quoted version", "version: \"1\"\nresources: {}\n", true, true},
		{"empty sections", "version: 1\nsubject: {}\ncontext: {}\nunfiltered: []\nresources: {}\n", true, true},

		{"empty file", "", false, false},
		{"not a mapping", "- version: 1\n", false, false},
		{"unknown top-level key", "version: 1\nresources: {}\npolicies: {}\n", false, false},
		{"version 2", "version: 2\nresources: {}\n", false, false},
		{"no version", "resources: {}\n", false, false},
		{"no resources", "version: 1\n", false, false},
		{"null subject", "version: 1\nsubject:\nresources: {}\n", false, false},
		{"unknown subject key", "version: 1\nsubject: {attrs: {}}\nresources: {}\n", false, false},
		{"bad attribute type", "version: 1\nsubject: {attributes: {clearance: int}}\nresources: {}\n", false, false},
		{"built-in attribute", "version: 1\nsubject: {attributes: {roles: \"text[]\"}}\nresources: {}\n", false, false},
		{"upper-case attribute", "version: 1\nsubject: {attributes: {Clearance: integer}}\nresources: {}\n", false, false},
		{"unknown context key", "version: 1\ncontext: {tz: UTC}\nresources: {}\n", false, false},
		{"upper-case unfiltered table", "version: 1\nunfiltered: [Countries]\nresources: {}\n", false, false},
		{"three-part unfiltered table", "version: 1\nunfiltered: [a.b.c]\nresources: {}\n", false, false},
		{"upper-case resource name", "version: 1\nresources:\n  Docs: {tenant: tenant_id}\n", false, false},
		{"resource name starting with a digit", "version: 1\nresources:\n  1docs: {tenant: tenant_id}\n", false, false},
		{"resource name of 64 characters", "version: 1\nresources:\n  " + strings.Repeat("a", 64) + ": {tenant: tenant_id}\n", false, false},
		{"resource without tenant", "version: 1\nresources:\n  docs: {id: id}\n", false, false},
		{"unknown resource key", policyDoc("    tenant_column: tenant_id\n"), false, false},
		{"qualified tenant column", "version: 1\nresources:\n  docs: {tenant: public.tenant_id}\n", false, false},
		{"rule without when", policyDoc("    deny: [{name: nothing}]\n"), false, false},
		{"rule without name", policyDoc("    deny: [{when: \"true\"}]\n"), false, false},
		{"rule with unknown key", policyDoc("    deny: [{name: x, when: \"true\", unless: \"false\"}]\n"), false, false},
		{"blank condition", policyDoc("    deny: [{name: x, when: \"  \"}]\n"), false, false},
		{"rules not a list", policyDoc("    deny: {name: x, when: \"true\"}\n"), false, false},
		{"agent without allow", policyDoc("    agents:\n      bot: {deny: [{name: x, when: \"true\"}]}\n"), false, false},
		{"agent with unknown key", policyDoc("    agents:\n      bot: {allow: [], when: \"true\"}\n"), false, false},
		{"mask without unless", policyDoc("    mask: [{column: email}]\n"), false, false},
		{"relation without tenant", policyDoc("    relations: {grants: {table: grants}}\n"), false, false},
		{"relation named subject", policyDoc("    relations: {subject: {tenant: tenant_id}}\n"), false, false},
		{"relation with unknown key", policyDoc("    relations: {grants: {tenant: tenant_id, id: id}}\n"), false, false},
		{"filterable path without key", policyDoc("    filterable: [metadata.]\n"), false, false},

		// Where the schema is stricter than the loader, or cannot see
		// what the loader sees.
		{"empty tenant column", "version: 1\nresources:\n  docs: {tenant: \"\"}\n", false, false},
		{"empty rule name", policyDoc("    deny: [{name: \"\", when: \"true\"}]\n"), false, false},
		{"version 1.0 (the schema sees the number 1)", "version: 1.0\nresources: {}\n", true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, policySchemaFile, []byte(c.doc))
			if c.schemaOK && err != nil {
				t.Errorf("the schema rejects it:\n%v", err)
			}
			if !c.schemaOK && err == nil {
				t.Errorf("the schema accepts it")
			}
			if err != nil {
				t.Logf("schema: %v", err)
			}
			_, err = policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(c.doc)})
			if c.loaderOK && err != nil {
				t.Errorf("the loader rejects it:\n%v", err)
			}
			if !c.loaderOK && err == nil {
				t.Errorf("the loader accepts it")
			}
		})
	}
}

const fullTest = `
schema: |
  CREATE TABLE docs (id int PRIMARY KEY, tenant_id text, owner_id text, body text);
fixtures:
  docs:
    - {id: 1, tenant_id: acme, owner_id: alice, body: hello}
    - {id: 2, tenant_id: acme, owner_id: bob, body: null}
  empty: []
subjects:
  alice: {id: alice, tenant: acme, roles: [editor], groups: [eng], attributes: {clearance: 1, since: 2024-01-01}}
  nobody: {}
cases:
  - name: alice sees her own document
    resource: docs
    subject: alice
    agent: summarizer
    context: {time: "2026-11-23T10:00:00Z", ip: 10.1.2.3}
    see: [1, "doc-2"]
    masked:
      body: []
  - name: inline subject, unquoted time, IPv6
    subject: {id: bob, tenant: acme}
    context: {time: 2026-11-23T10:00:00+01:00, ip: "::1"}
    see: []
  - name: an agent without a grant is refused
    subject: alice
    agent: unknown-bot
    error: agent_not_granted
  - name: no subject
    error: no_subject
`

func TestPolicyTestDocuments(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		ok   bool
	}{
		{"minimal", "cases: [{name: a, see: []}]\n", true},
		{"every key", fullTest, true},
		{"every error code", "cases:\n" +
			"  - {name: a, error: unknown_resource}\n  - {name: b, error: no_subject}\n  - {name: c, error: invalid_subject}\n" +
			"  - {name: d, error: agent_not_granted}\n  - {name: e, error: invalid_alias}\n", true},

		{"empty file", "", false},
		{"no cases", "schema: SELECT 1\n", false},
		{"empty cases", "cases: []\n", false},
		{"unknown top-level key", "cases: [{name: a, see: []}]\nsetup: SELECT 1\n", false},
		{"case with see and error", "cases: [{name: a, see: [], error: no_subject}]\n", false},
		{"case with neither see nor error", "cases: [{name: a, subject: alice}]\n", false},
		{"case without name", "cases: [{see: [1]}]\n", false},
		{"case with empty name", "cases: [{name: \"\", see: [1]}]\n", false},
		{"unknown case key", "cases: [{name: a, see: [], expect: [1]}]\n", false},
		{"unknown error code", "cases: [{name: a, error: denied}]\n", false},
		{"fractional id", "cases: [{name: a, see: [1.5]}]\n", false},
		{"masked not a list", "cases: [{name: a, see: [], masked: {body: 1}}]\n", false},
		{"unknown context key", "cases: [{name: a, see: [], context: {agent: bot}}]\n", false},
		{"bad context time", "cases: [{name: a, see: [], context: {time: yesterday}}]\n", false},
		{"bad context ip", "cases: [{name: a, see: [], context: {ip: localhost}}]\n", false},
		{"inline subject with unknown key", "cases: [{name: a, see: [], subject: {id: x, role: admin}}]\n", false},
		{"named subject with unknown key", "subjects: {x: {id: x, tenant_id: acme}}\ncases: [{name: a, see: [], subject: x}]\n", false},
		{"roles not a list", "subjects: {x: {roles: admin}}\ncases: [{name: a, see: []}]\n", false},
		{"fixture row not a mapping", "fixtures: {docs: [[1, acme]]}\ncases: [{name: a, see: []}]\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, testSchemaFile, []byte(c.doc))
			if c.ok && err != nil {
				t.Errorf("the schema rejects it:\n%v", err)
			}
			if !c.ok && err == nil {
				t.Errorf("the schema accepts it")
			}
			if err != nil {
				t.Logf("schema: %v", err)
			}
		})
	}
}

func TestYAMLValue(t *testing.T) {
	v, err := yamlValue([]byte("a: 1\nb: [true, 1.5, x]\n1: {2: 3}\nc:\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"1":{"2":3},"a":1,"b":[true,1.5,"x"],"c":null}`
	if string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := yamlValue([]byte("a: .inf\n")); err == nil {
		t.Errorf("an infinite number converts to JSON")
	}
}
