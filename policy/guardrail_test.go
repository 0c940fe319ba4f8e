package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/policy"
)

// guardrailPolicy is the example, with the resources it names.
const guardrailPolicy = `version: 1
context:
  timezone: Europe/Berlin
resources:
  chunks:
    tenant: tenant_id
    document: document_id
    columns: [id, tenant_id, document_id, content]
    allow: [{name: all, when: "true"}]
  notes:
    tenant: tenant_id
    allow: [{name: all, when: "true"}]
guardrails:
  - name: agent-bulk-read
    who: agents
    collections: [chunks]
    window: 1m
    max_rows: 500
    max_requests: 120
    max_documents: 200
    action: cap
    cap_k: 3
  - name: off-hours-agents
    who: agents
    when: context.hour NOT BETWEEN 7 AND 19
    window: 10m
    max_rows: 50
    action: throttle
  - name: spike
    who: {agent: crawler}
    window: 1m
    baseline: {windows: 60, factor: 5, min_rows: 100}
    action: suspend
    suspend_for: 30m
  - name: people
    who: subjects
    window: 1h
    max_requests: 1000
    action: alert
`

func TestLoadGuardrails(t *testing.T) {
	set := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(guardrailPolicy)})
	if got := set.Resources["chunks"].Document; got != "document_id" {
		t.Errorf("chunks document %q", got)
	}
	if len(set.Guardrails) != 4 {
		t.Fatalf("%d guardrails", len(set.Guardrails))
	}
	bulk, off, spike, people := set.Guardrails[0], set.Guardrails[1], set.Guardrails[2], set.Guardrails[3]
	if bulk.Name != "agent-bulk-read" || bulk.Who != policy.AudienceAgents || strings.Join(bulk.Collections, ",") != "chunks" ||
		bulk.Window != time.Minute || bulk.MaxRows != 500 || bulk.MaxRequests != 120 || bulk.MaxDocuments != 200 ||
		bulk.Action != policy.ActionCap || bulk.CapK != 3 || bulk.When != nil || bulk.Pos != (policy.Pos{File: "p.yaml", Line: 14, Col: 5}) {
		t.Errorf("bulk %+v", bulk)
	}
	if off.When == nil || off.When.Text != "context.hour NOT BETWEEN 7 AND 19" || strings.Join(off.When.Context, ",") != "hour" ||
		off.Collections != nil || off.Window != 10*time.Minute || off.Action != policy.ActionThrottle {
		t.Errorf("off-hours %+v", off)
	}
	if spike.Who != policy.AudienceAgent || spike.Agent != "crawler" || spike.Baseline == nil ||
		*spike.Baseline != (policy.Baseline{Windows: 60, Factor: 5, MinRows: 100}) || spike.SuspendFor != 30*time.Minute {
		t.Errorf("spike %+v", spike)
	}
	if people.Who != policy.AudienceSubjects || people.Action != policy.ActionAlert || set.Guardrail("people") != people || set.Guardrail("nope") != nil {
		t.Errorf("people %+v", people)
	}
}

func TestGuardrailCounts(t *testing.T) {
	set := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(guardrailPolicy)})
	bulk, spike, people := set.Guardrail("agent-bulk-read"), set.Guardrail("spike"), set.Guardrail("people")
	for _, tc := range []struct {
		g                 *policy.Guardrail
		agent, collection string
		want              bool
	}{
		{bulk, "summarizer", "chunks", true},
		{bulk, "summarizer", "notes", false},
		{bulk, "", "chunks", false},
		{spike, "crawler", "notes", true},
		{spike, "summarizer", "chunks", false},
		{people, "", "notes", true},
		{people, "crawler", "notes", false},
	} {
		if got := tc.g.Counts(tc.agent, tc.collection); got != tc.want {
			t.Errorf("%s counts agent %q on %s: %v, want %v", tc.g.Name, tc.agent, tc.collection, got, tc.want)
		}
	}
}

// A guardrail's when applies it unless it is false: one that cannot be
// decided for lack of an attribute restricts.
func TestGuardrailWhenFailsClosed(t *testing.T) {
	set := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(`version: 1
subject:
  attributes: {contractor: boolean, clearance: integer}
context: {timezone: Europe/Berlin}
resources: {}
guardrails:
  - {name: night, who: agents, when: "context.hour NOT BETWEEN 7 AND 19", window: 1m, max_rows: 5, action: throttle}
  - {name: contractors, who: everyone, when: "subject.contractor AND 'staff' <> ALL (subject.roles)", window: 1m, max_rows: 5, action: throttle}
  - {name: unknown-ok, who: everyone, when: "subject.clearance IS NOT NULL AND subject.clearance < 2", window: 1m, max_rows: 5, action: throttle}
`)})
	night, contractors, exempt := set.Guardrails[0].When, set.Guardrails[1].When, set.Guardrails[2].When
	berlin := func(h int) policy.Context {
		loc, _ := time.LoadLocation("Europe/Berlin")
		return policy.Context{Time: time.Date(2026, 1, 15, h, 30, 0, 0, loc)}
	}
	alice := &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"staff"}, Attributes: map[string]any{"contractor": true}}
	bob := &policy.Subject{ID: "bob", Tenant: "acme", Attributes: map[string]any{"contractor": true, "clearance": int64(3)}}
	for _, tc := range []struct {
		name        string
		c           *policy.GuardrailCondition
		s           *policy.Subject
		ctx         policy.Context
		holds, know bool
		applies     bool
	}{
		{"night at 23:30 Berlin", night, alice, berlin(23), true, true, true},
		{"night at 12:30 Berlin", night, alice, berlin(12), false, true, false},
		{"night without a time", night, alice, policy.Context{}, false, false, true},
		{"staff contractor", contractors, alice, berlin(12), false, true, false},
		{"contractor", contractors, bob, berlin(12), true, true, true},
		{"no subject", contractors, nil, berlin(12), false, false, true},
		{"attribute of the wrong type", contractors, &policy.Subject{Attributes: map[string]any{"contractor": "yes"}}, berlin(12), false, false, true},
		{"missing attribute tested with IS NULL", exempt, alice, berlin(12), false, true, false},
		{"clearance 3", exempt, bob, berlin(12), false, true, false},
		{"clearance 1", exempt, &policy.Subject{Attributes: map[string]any{"clearance": 1}}, berlin(12), true, true, true},
	} {
		holds, known := tc.c.Eval(tc.s, tc.ctx, "bot")
		if holds != tc.holds || known != tc.know || tc.c.Applies(tc.s, tc.ctx, "bot") != tc.applies {
			t.Errorf("%s: Eval = %v, %v; Applies %v; want %v, %v; %v", tc.name, holds, known, !holds && known, tc.holds, tc.know, tc.applies)
		}
	}
}

func TestGuardrailErrors(t *testing.T) {
	doc := `version: 1
resources:
  chunks: {tenant: tenant_id, allow: [{name: all, when: "true"}]}
guardrails:
  - name: Bad Name
    who: agent
    collections: [chunk, chunks, chunks]
    window: 1.5s
    max_rowz: 4
    action: throttl
  - name: ok
    who: {agent: ""}
    window: 0s
    max_rows: "10"
    max_documents: 5
    action: cap
    suspend_for: 1m
  - name: ok
    who: everyone
    collections: []
    window: 25h
    action: suspend
    cap_k: 2
  - name: conditions
    who: everyone
    when: owner_id = subject.idd AND context.ip = '10.0.0.1' AND subject.id < 'm' AND lower(subject.id) = 'x'
    window: 1m
    baseline: {windows: 0, factor: 0.5}
    action: alert
  - name: syntax
    who: everyone
    when: context.hour BETWEEN 7 AND
    window: 1m
    max_rows: 1
    action: alert
  - who: everyone
    window: 1m
    max_rows: 1
    action: alert
`
	_, err := policy.Parse(policy.Source{Name: "g.yaml", Data: []byte(doc)})
	want := []string{
		`g.yaml:5:5: guardrail "Bad Name" needs a budget: max_rows, max_requests, max_documents or baseline`,
		`g.yaml:5:11: guardrail "Bad Name": the name must be lower-case letters, digits, - and _ (at most 63 characters)`,
		`g.yaml:6:10: guardrail "Bad Name": who "agent" must be agents, subjects, everyone or {agent: <id>} (did you mean "agents"?)`,
		`g.yaml:7:19: guardrail "Bad Name": collection "chunk" is not a resource of the policy (did you mean "chunks"?)`,
		`g.yaml:7:34: guardrail "Bad Name": collection "chunks" is listed twice`,
		`g.yaml:8:13: guardrail "Bad Name": window 1.5s must be a whole number of seconds`,
		`g.yaml:9:5: unknown field "max_rowz" in guardrail "Bad Name" (did you mean "max_rows"?); allowed: name, who, collections, when, window, max_rows, max_requests, max_documents, baseline, action, cap_k, suspend_for`,
		`g.yaml:10:13: guardrail "Bad Name": action "throttl" must be one of throttle, cap, suspend, alert (did you mean "throttle"?)`,
		`g.yaml:12:18: guardrail "ok": agent must not be empty`,
		`g.yaml:13:13: guardrail "ok": window must be positive`,
		`g.yaml:14:15: guardrail "ok": max_rows must be a whole number from 1 to 9223372036854775807`,
		`g.yaml:15:20: guardrail "ok": max_documents counts the distinct documents rows belong to, so every resource it counts needs a document column; add document: <column> to chunks`,
		`g.yaml:16:13: guardrail "ok": action cap needs cap_k`,
		`g.yaml:17:18: guardrail "ok": suspend_for applies only to action suspend`,
		`g.yaml:18:5: guardrail "ok" needs a budget: max_rows, max_requests, max_documents or baseline`,
		`g.yaml:18:5: guardrail "ok" is already defined at g.yaml:11:5`,
		`g.yaml:20:18: guardrail "ok": collections is empty; leave it out to count every collection`,
		`g.yaml:21:13: guardrail "ok": window 25h0m0s is out of range: from 1s to 24h0m0s`,
		`g.yaml:22:13: guardrail "ok": action suspend needs suspend_for`,
		`g.yaml:23:12: guardrail "ok": cap_k applies only to action cap`,
		`g.yaml:26:11: guardrail "conditions": when: "owner_id" is not an attribute: a guardrail's when may use only subject.<attr> and context.<attr>, never a table's columns`,
		`g.yaml:26:22: guardrail "conditions": when: unknown subject attribute "idd" (did you mean "id"?); declare it under subject.attributes`,
		`g.yaml:26:38: guardrail "conditions": when: context.ip cannot be used in a guardrail's when: its network comparisons are evaluated only by PostgreSQL`,
		`g.yaml:26:77: guardrail "conditions": when: text values are compared only with = and <> here (the order of text depends on the database's collation)`,
		`g.yaml:26:87: guardrail "conditions": when: function calls are not allowed here: compare attributes with literals`,
		`g.yaml:28:15: guardrail "conditions" baseline needs "min_rows"`,
		`g.yaml:28:25: guardrail "conditions": baseline windows must be a whole number from 1 to 1000`,
		`g.yaml:28:36: guardrail "conditions": baseline factor must be a number from 1 to 1000000: a spike is more than the average`,
		`g.yaml:32:37: guardrail "syntax": SQL syntax: syntax error at end of input`,
		`g.yaml:36:5: guardrail needs "name"`,
	}
	codes := []policy.Code{
		policy.CodeMissing, policy.CodeInvalid, policy.CodeInvalid, policy.CodeUnknownName, policy.CodeDuplicate, policy.CodeInvalid,
		policy.CodeUnknownField, policy.CodeInvalid,
		policy.CodeInvalid, policy.CodeInvalid, policy.CodeInvalid, policy.CodeMissing, policy.CodeMissing, policy.CodeInvalid,
		policy.CodeMissing, policy.CodeDuplicate, policy.CodeInvalid, policy.CodeInvalid, policy.CodeMissing, policy.CodeInvalid,
		policy.CodeUnknownName, policy.CodeUnknownName, policy.CodeUnknownName, policy.CodeForbidden, policy.CodeForbidden,
		policy.CodeMissing, policy.CodeInvalid, policy.CodeInvalid,
		policy.CodeSyntax, policy.CodeMissing,
	}
	checkErrors(t, nil, err, want, codes)
}

// The document column is checked like the resource's other named columns.
func TestDocumentColumn(t *testing.T) {
	_, err := policy.Parse(policy.Source{Name: "d.yaml", Data: []byte(`version: 1
resources:
  chunks:
    tenant: tenant_id
    document: doc_id
    columns: [id, tenant_id, document_id]
  notes:
    tenant: tenant_id
    document: Doc
`)})
	checkErrors(t, nil, err, []string{
		`d.yaml:5:15: resource "chunks": document column "doc_id" is not in the resource's columns list`,
		`d.yaml:9:15: resource "notes": document column "Doc" must be a lower-case SQL name (letters, digits, _)`,
	}, []policy.Code{policy.CodeUnknownName, policy.CodeInvalid})
}

// Guardrails are part of what a set means: editing one changes its
// version, but a set without guardrails keeps the version it had.
func TestGuardrailVersion(t *testing.T) {
	base := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(guardrailPolicy)}).Version()
	for _, edit := range [][2]string{
		{"max_rows: 500", "max_rows: 501"},
		{"NOT BETWEEN 7 AND 19", "NOT BETWEEN 7 AND 20"},
		{"factor: 5", "factor: 5.5"},
		{"cap_k: 3", "cap_k: 4"},
		{"document: document_id", "document: id"},
	} {
		edited := strings.Replace(guardrailPolicy, edit[0], edit[1], 1)
		if v := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(edited)}).Version(); v == base {
			t.Errorf("%s -> %s keeps version %s", edit[0], edit[1], v)
		}
	}
	relaid := strings.Replace(guardrailPolicy, "context.hour NOT BETWEEN 7 AND 19", "(context.hour   NOT BETWEEN 7 AND 19)", 1)
	if v := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte(relaid)}).Version(); v != base {
		t.Errorf("layout of a when changed the version")
	}
}

func TestParseGuardrailCondition(t *testing.T) {
	set := mustParse(t, policy.Source{Name: "p.yaml", Data: []byte("version: 1\nresources: {}\n")})
	c, err := policy.ParseGuardrailCondition("'admin' = ANY (subject.roles) OR context.weekday IN (0, 6)", set)
	if err != nil || strings.Join(c.Subject, ",") != "roles" || strings.Join(c.Context, ",") != "weekday" {
		t.Fatalf("condition %+v, %v", c, err)
	}
	_, err = policy.ParseGuardrailCondition("EXISTS (SELECT 1 FROM grants)", set)
	if policy.CodeOf(err) != policy.CodeForbidden || !strings.Contains(err.Error(), "<condition>:1:1: when: a subquery is not allowed") {
		t.Fatalf("a subquery: %v", err)
	}
}
