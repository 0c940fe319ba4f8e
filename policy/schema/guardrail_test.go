package schema_test

import (
	"testing"

	"github.com/ragfence/ragfence/policy"
)

// guardrailDoc is a valid policy with one resource (with a document
// column) and the given guardrails section.
func guardrailDoc(guardrails string) string {
	return "version: 1\nresources:\n  docs:\n    tenant: tenant_id\n    document: doc_id\n    allow:\n      - {name: all, when: \"true\"}\nguardrails:\n" + guardrails
}

// The schema and the loader agree on guardrails, except where the schema
// cannot see what the loader sees (noted in the case name).
func TestGuardrailDocuments(t *testing.T) {
	cases := []struct {
		name               string
		doc                string
		schemaOK, loaderOK bool
	}{
		{"every key", guardrailDoc(`  - name: bulk
    who: agents
    collections: [docs]
    when: context.hour NOT BETWEEN 7 AND 19 AND 'staff' <> ALL (subject.roles)
    window: 1m
    max_rows: 500
    max_requests: 120
    max_documents: 200
    baseline: {windows: 60, factor: 5, min_rows: 100}
    action: cap
    cap_k: 3
  - {name: one-agent, who: {agent: crawler}, window: 10m, max_rows: 5, action: suspend, suspend_for: 30m}
  - {name: people, who: subjects, window: 1h, max_requests: 9, action: alert, when: true}
`), true, true},
		{"empty list", guardrailDoc("  []\n"), true, true},

		{"no budget", guardrailDoc("  - {name: a, who: agents, window: 1m, action: alert}\n"), false, false},
		{"no action", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 1}\n"), false, false},
		{"unknown key", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 1, action: alert, limit: 2}\n"), false, false},
		{"unknown who", guardrailDoc("  - {name: a, who: bots, window: 1m, max_rows: 1, action: alert}\n"), false, false},
		{"who with unknown key", guardrailDoc("  - {name: a, who: {agnt: x}, window: 1m, max_rows: 1, action: alert}\n"), false, false},
		{"cap without cap_k", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 1, action: cap}\n"), false, false},
		{"cap_k without cap", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 1, action: throttle, cap_k: 2}\n"), false, false},
		{"suspend without suspend_for", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 1, action: suspend}\n"), false, false},
		{"zero max_rows", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 0, action: alert}\n"), false, false},
		{"window without unit", guardrailDoc("  - {name: a, who: agents, window: 60, max_rows: 1, action: alert}\n"), false, false},
		{"baseline without min_rows", guardrailDoc("  - {name: a, who: agents, window: 1m, baseline: {windows: 2, factor: 2}, action: alert}\n"), false, false},
		{"upper-case name", guardrailDoc("  - {name: Bulk, who: agents, window: 1m, max_rows: 1, action: alert}\n"), false, false},
		{"empty collections", guardrailDoc("  - {name: a, who: agents, collections: [], window: 1m, max_rows: 1, action: alert}\n"), false, false},
		{"upper-case document column", "version: 1\nresources:\n  docs: {tenant: tenant_id, document: Doc}\n", false, false},

		// Where the schema cannot follow the loader.
		{"unknown collection (the schema cannot see resources)", guardrailDoc("  - {name: a, who: agents, collections: [notes], window: 1m, max_rows: 1, action: alert}\n"), true, false},
		{"a when on a column (the schema cannot read SQL)", guardrailDoc("  - {name: a, who: agents, when: owner = 'x', window: 1m, max_rows: 1, action: alert}\n"), true, false},
		{"a fractional window (the schema cannot compute)", guardrailDoc("  - {name: a, who: agents, window: 1.5s, max_rows: 1, action: alert}\n"), true, false},
		{"duplicate names (the schema cannot compare items' fields)", guardrailDoc("  - {name: a, who: agents, window: 1m, max_rows: 1, action: alert}\n  - {name: a, who: agents, window: 1m, max_rows: 1, action: alert}\n"), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, policySchemaFile, []byte(c.doc))
			if c.schemaOK != (err == nil) {
				t.Errorf("schema: ok %v, want %v (%v)", err == nil, c.schemaOK, err)
			}
			_, err = policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(c.doc)})
			if c.loaderOK != (err == nil) {
				t.Errorf("loader: ok %v, want %v (%v)", err == nil, c.loaderOK, err)
			}
		})
	}
}
