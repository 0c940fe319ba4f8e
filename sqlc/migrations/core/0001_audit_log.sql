-- ragfence's own tables live in the ragfence schema only: applying these
-- never creates or changes a table of the user's.

-- One row per authorization decision, allowed or refused.
CREATE TABLE ragfence.audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decided_at     timestamptz NOT NULL,
    decision_id    text        NOT NULL,
    subject        text        NOT NULL,
    tenant         text        NOT NULL,
    agent          text,
    resource       text        NOT NULL,
    policy_version text        NOT NULL,
    rules          text[]      NOT NULL DEFAULT '{}',
    row_count      integer     NOT NULL DEFAULT 0,
    row_ids        text[]      NOT NULL DEFAULT '{}',
    client_addr    inet,
    latency_ms     double precision NOT NULL DEFAULT 0,
    outcome        text        NOT NULL,
    detail         jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_decided_at_idx ON ragfence.audit_log (decided_at);
CREATE INDEX audit_log_tenant_decided_at_idx ON ragfence.audit_log (tenant, decided_at);
CREATE UNIQUE INDEX audit_log_decision_id_idx ON ragfence.audit_log (decision_id);
