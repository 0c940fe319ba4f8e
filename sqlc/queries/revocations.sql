-- name: InsertRevocation :one
INSERT INTO ragfence.revocations (
    tenant, kind, token_id, subject, agent, reason, created_by, ends_at, token_expires_at
) VALUES (
    $1, $2, $3, $4, $5, $6, $7,
    -- The end is reckoned on the database's clock, as every check is.
    now() + make_interval(secs => sqlc.narg('for_seconds')::float8),
    sqlc.narg('token_expires_at')
)
RETURNING *;

-- name: RevocationByID :one
SELECT * FROM ragfence.revocations WHERE id = $1;

-- name: RevocationsInForce :many
-- Those not lifted and not ended, of one tenant or (tenant NULL) all.
SELECT * FROM ragfence.revocations
WHERE lifted_at IS NULL
  AND (ends_at IS NULL OR ends_at > now())
  AND (sqlc.narg('tenant')::text IS NULL OR tenant = sqlc.narg('tenant')::text)
ORDER BY id;

-- name: LiftRevocation :one
UPDATE ragfence.revocations
SET lifted_at = now(), lifted_by = $2
WHERE id = $1 AND lifted_at IS NULL
RETURNING *;

-- name: DeleteExpiredTokenRevocations :execrows
DELETE FROM ragfence.revocations
WHERE kind = 'token' AND token_expires_at IS NOT NULL AND token_expires_at < now();
