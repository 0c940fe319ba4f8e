-- name: InsertAuditRecords :copyfrom
INSERT INTO ragfence.audit_log (
    decided_at, decision_id, subject, tenant, agent, resource, policy_version,
    rules, row_count, row_ids, client_addr, latency_ms, outcome, detail
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
);

-- name: AuditRecordByDecision :one
SELECT * FROM ragfence.audit_log WHERE decision_id = $1;
