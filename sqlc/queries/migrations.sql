-- name: AppliedMigrations :many
SELECT version, name, checksum
FROM ragfence.schema_migrations
WHERE migration_set = $1
ORDER BY version;

-- name: RecordMigration :exec
INSERT INTO ragfence.schema_migrations (migration_set, version, name, checksum)
VALUES ($1, $2, $3, $4);
