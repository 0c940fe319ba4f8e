-- Created by the migration runner itself, before any numbered migration,
-- while it holds the migration advisory lock. Kept here so sqlc knows the table.
CREATE SCHEMA IF NOT EXISTS ragfence;

CREATE TABLE IF NOT EXISTS ragfence.schema_migrations (
    migration_set text        NOT NULL,
    version       integer     NOT NULL,
    name          text        NOT NULL,
    checksum      text        NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_set, version)
);
