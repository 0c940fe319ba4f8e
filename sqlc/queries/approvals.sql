-- name: RequestApproval :one
INSERT INTO ragfence.approvals (
    tenant, subject, agent, resource, rule, reason, status, requested_by, request_expires_at, ttl_seconds
) VALUES (
    $1, $2, $3, $4, $5, $6, 'pending', $7,
    now() + make_interval(secs => sqlc.arg('pending_seconds')::float8), sqlc.arg('ttl_seconds')
)
RETURNING *;

-- name: GrantApproval :one
-- An operator's approval for a window, without a request.
INSERT INTO ragfence.approvals (
    tenant, subject, agent, resource, rule, reason, status, requested_by, decided_at, decided_by, valid_from, valid_until
) VALUES (
    $1, $2, $3, $4, $5, $6, 'approved', $7, now(), $7, sqlc.arg('valid_from'), sqlc.arg('valid_until')
)
RETURNING *;

-- name: DecideApproval :one
-- Approves (valid from now for its ttl, or max_ttl_seconds if shorter)
-- or denies a pending, unexpired request. subject, when given, must be the
-- request's user.
UPDATE ragfence.approvals
SET status = sqlc.arg('status'), decided_at = now(), decided_by = sqlc.arg('decided_by'),
    valid_from = CASE WHEN sqlc.arg('status') = 'approved' THEN now() END,
    valid_until = CASE WHEN sqlc.arg('status') = 'approved'
        THEN now() + make_interval(secs => LEAST(ttl_seconds, COALESCE(sqlc.narg('max_ttl_seconds')::float8, ttl_seconds))) END
WHERE id = sqlc.arg('id') AND status = 'pending' AND request_expires_at > now()
  AND (sqlc.narg('tenant')::text IS NULL OR tenant = sqlc.narg('tenant')::text)
  AND (sqlc.narg('subject')::text IS NULL OR subject = sqlc.narg('subject')::text)
RETURNING *;

-- name: ApprovalByID :one
SELECT * FROM ragfence.approvals WHERE id = $1;

-- name: ApprovalsInForce :many
SELECT * FROM ragfence.approvals WHERE status = 'approved' AND valid_until > now() ORDER BY requested_at;

-- name: ApprovalsOfSubject :many
-- A user's requests and approvals, newest first: pending, and decided
-- within the last day.
SELECT * FROM ragfence.approvals
WHERE tenant = $1 AND subject = $2
  AND (status = 'pending' OR valid_until > now() OR decided_at > now() - interval '1 day')
ORDER BY requested_at DESC
LIMIT 200;

-- name: ApprovalsInForceFor :many
SELECT * FROM ragfence.approvals
WHERE tenant = $1 AND subject = $2 AND agent = $3 AND status = 'approved'
  AND valid_from <= now() AND valid_until > now();

-- name: ClaimExpiredApprovals :many
-- Marks the requests and approvals that have expired since the last
-- sweep and returns them; concurrent sweepers each get different rows.
UPDATE ragfence.approvals SET expiry_recorded_at = now()
WHERE id IN (
    SELECT id FROM ragfence.approvals
    WHERE expiry_recorded_at IS NULL
      AND ((status = 'approved' AND valid_until <= now()) OR (status = 'pending' AND request_expires_at <= now()))
    ORDER BY id
    LIMIT 500
    FOR UPDATE SKIP LOCKED
)
RETURNING *;
