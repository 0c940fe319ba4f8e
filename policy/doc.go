// Package policy loads and validates ragfence policy files: the row-level
// rules data teams write in YAML, with SQL boolean conditions over a
// protected table's columns, the request's subject and its context.
//
// # Policy files
//
// A policy set is one or more YAML files (Load takes files and folders).
// Each file looks like this:
//
//	# yaml-language-server: $schema=policy.schema.json
//	version: 1
//	subject:
//	  attributes:              # typed attributes beyond id, tenant, roles, groups
//	    clearance: integer     # text, text[], integer, boolean or timestamptz
//	context:
//	  timezone: Europe/Berlin  # for context.hour and context.weekday (default UTC)
//	resources:
//	  chunks:                  # the resource name requests use
//	    table: public.chunks   # schema-qualified allowed; default: the resource name
//	    tenant: tenant_id      # required: every query is restricted to it
//	    id: id                 # the columns the retriever needs (these are the defaults)
//	    content: content
//	    embedding: embedding
//	    metadata: metadata
//	    document: document_id  # optional: the document a row belongs to (guardrails' max_documents)
//	    columns: [...]         # optional: the columns conditions may use
//	    filterable: [source, metadata.lang]  # what retrieve requests may filter on
//	    relations:             # other tables conditions may look into
//	      document_grants: {table: document_grants, tenant: tenant_id}
//	    allow:
//	      - name: owner
//	        when: owner_id = subject.id
//	    deny:
//	      - name: above-clearance
//	        when: classification > subject.clearance
//	    mask:
//	      - column: contact_email
//	        unless: "'pii-reader' = ANY (subject.roles)"
//	    agents:                # grants for AI agents acting for a user
//	      summarizer:
//	        allow: [{name: wiki, when: "source = 'wiki'"}]
//	guardrails:                # behavioural budgets, enforced by package guardrail
//	  - name: agent-bulk-read
//	    who: agents            # agents | subjects | everyone | {agent: <id>}
//	    collections: [chunks]  # default: every resource, sharing one budget
//	    when: context.hour NOT BETWEEN 7 AND 19  # optional: subject.* and context.* only
//	    window: 1m             # fixed windows, whole seconds, 1s to 24h
//	    max_rows: 500          # per window and (tenant, subject, agent); also
//	    max_requests: 120      #   max_documents, and baseline: {windows, factor, min_rows}
//	    action: cap            # throttle | cap (cap_k) | suspend (suspend_for) | alert
//	    cap_k: 3
//
// A row of a resource is visible to a request when
//
//	tenant column = subject.tenant
//	AND (some allow rule holds)
//	AND NOT (some deny rule holds)
//	AND, for a request made by an agent, the same two tests for its grant.
//
// No allow rule means no access. A condition that evaluates to NULL grants
// nothing and, in a deny rule, denies. A rule that uses a subject or context
// attribute the request does not carry grants nothing (allow) or denies
// everything (deny). An agent without a grant on a resource sees nothing, and
// callers can tell that apart from an empty result (see filter.ErrAgentNotGranted).
//
// # Conditions
//
// A condition (when, unless) is a SQL boolean expression as written in a
// PostgreSQL row-level security USING clause. It may use:
//   - the resource's columns, bare or qualified with the resource name
//     (chunks.owner_id); with a database or a columns list, names are checked;
//   - subject.id, subject.tenant, subject.roles, subject.groups and the
//     declared subject attributes; context.time, context.hour, context.weekday
//     (0 = Sunday), context.ip (an IPv4-mapped IPv6 address counts as its IPv4
//     address) and context.agent;
//   - literals, comparisons, AND/OR/NOT, IN, BETWEEN, LIKE/ILIKE, IS [NOT]
//     NULL, IS [NOT] DISTINCT FROM, ANY/ALL, array operators (&&, @>, <@),
//     jsonb operators (->, ->>, @>, ?, ?|, ?&), arithmetic, CASE, COALESCE,
//     casts to built-in types, and the functions listed in Functions;
//   - EXISTS subqueries over the resource's declared relations, which are
//     restricted to the subject's tenant too.
//
// Everything else is rejected when the policy loads, with every error of the
// set reported at once as file:line:col: resource "r": rule "name": message.
// Subject and context values are always bound as query arguments, never
// written into SQL text.
//
// # Guardrails
//
// A guardrail's when is evaluated by ragfence itself, before the query, so
// it may use only subject and context attributes (not context.ip, nor any
// column or relation) and a subset of SQL that ragfence evaluates exactly
// as PostgreSQL does: literals, comparisons (text only with = and <>, as
// its order depends on the collation), [NOT] BETWEEN [SYMMETRIC], [NOT]
// IN (...), = ANY / <> ALL over a text[] attribute, IS [NOT] NULL, IS [NOT]
// TRUE/FALSE/UNKNOWN, IS [NOT] DISTINCT FROM, AND, OR and NOT. A guardrail
// applies unless its when is false: one that cannot be decided because an
// attribute is missing applies (a guardrail restricts, so it fails closed).
// Whoever wants requests without an attribute exempt writes IS NULL.
package policy
