// Package policytest runs policy unit tests: YAML files that hold fixture
// rows, subjects, and for each subject the ids it must see. They run against
// the real database, inside one transaction in a scratch schema that is
// rolled back, so nothing a test does is ever left behind. This is how a
// data team proves a policy before deploying it (`ragfence policy test`).
//
// # Test files
//
//	# yaml-language-server: $schema=../../policy/schema/policy-test.schema.json
//	# Optional SQL run first in the scratch schema (first on the search_path):
//	# create the tables the fixtures fill. A fixture table it does not create
//	# is created as LIKE the table of that name the connection already sees.
//	schema: |
//	  CREATE TABLE docs (id int PRIMARY KEY, tenant_id text, owner_id text, body text);
//	fixtures:                  # table -> rows; keys are column names
//	  docs:
//	    - {id: 1, tenant_id: acme, owner_id: alice, body: hello}
//	    - {id: 2, tenant_id: acme, owner_id: bob, body: hi}
//	subjects:                  # named subjects the cases refer to
//	  alice: {id: alice, tenant: acme, roles: [editor], groups: [eng], attributes: {clearance: 1}}
//	cases:
//	  - name: alice sees her own document
//	    resource: docs         # may be omitted when the policy has one resource
//	    subject: alice         # a name from subjects, or an inline subject
//	    agent: summarizer      # optional: the request is made by this agent
//	    context: {time: "2026-11-23T10:00:00Z", ip: 10.1.2.3}  # optional
//	    see: [1]               # exactly the ids visible, in any order
//	    masked:                # optional: column -> ids whose value reads NULL
//	      body: []
//	  - name: an agent without a grant is refused
//	    subject: alice
//	    agent: unknown-bot
//	    error: agent_not_granted  # a filter.Code, instead of see
//
// A case without a context runs at the clock's time (the runner's Now, so
// tests can fix it) with no client IP.
package policytest
