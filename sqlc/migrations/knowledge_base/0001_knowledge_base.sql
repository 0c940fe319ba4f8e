-- The example knowledge base: created only by `ragfence demo` or
-- `ragfence migrate --knowledge-base`, never by a plain `ragfence migrate`.
-- vector(384) is the default dimension; the runner substitutes the one chosen
-- with --dim at first migrate (see migrations.go).
--
-- Chunks carry denormalised copies of their document's access attributes, so
-- a policy filters chunks with indexed columns and no join.

CREATE TABLE tenants (
    id   text PRIMARY KEY,
    name text NOT NULL
);

-- Demo principals: in production these come from the identity provider's
-- tokens; the demo keeps them so `ragfence token` can mint matching ones.
CREATE TABLE users (
    id        text PRIMARY KEY,
    tenant_id text    NOT NULL REFERENCES tenants (id),
    name      text    NOT NULL,
    roles     text[]  NOT NULL DEFAULT '{}',
    groups    text[]  NOT NULL DEFAULT '{}',
    clearance integer NOT NULL DEFAULT 0
);

CREATE TABLE documents (
    id             bigint      PRIMARY KEY,
    tenant_id      text        NOT NULL REFERENCES tenants (id),
    owner_id       text        NOT NULL,
    title          text        NOT NULL,
    source         text        NOT NULL,
    visibility     text        NOT NULL CHECK (visibility IN ('private', 'group', 'tenant')),
    acl_groups     text[]      NOT NULL DEFAULT '{}',
    classification integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}'
);

-- Relationship-based access: a private document shared with named users.
CREATE TABLE document_grants (
    tenant_id   text   NOT NULL REFERENCES tenants (id),
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id     text   NOT NULL,
    permission  text   NOT NULL DEFAULT 'read',
    PRIMARY KEY (document_id, user_id, permission)
);

CREATE TABLE chunks (
    id             bigint      PRIMARY KEY,
    tenant_id      text        NOT NULL REFERENCES tenants (id),
    document_id    bigint      NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    owner_id       text        NOT NULL,
    visibility     text        NOT NULL CHECK (visibility IN ('private', 'group', 'tenant')),
    acl_groups     text[]      NOT NULL DEFAULT '{}',
    classification integer     NOT NULL DEFAULT 0,
    source         text        NOT NULL,
    content        text        NOT NULL,
    contact_email  text,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    embedding      vector(384) NOT NULL
);

-- Indexes on the columns policies filter by, so a selective policy can be
-- answered from them instead of a walk of the vector index.
CREATE INDEX chunks_tenant_idx ON chunks (tenant_id);
CREATE INDEX chunks_tenant_owner_idx ON chunks (tenant_id, owner_id);
CREATE INDEX chunks_acl_groups_idx ON chunks USING gin (acl_groups);
CREATE INDEX chunks_document_idx ON chunks (document_id);
CREATE INDEX document_grants_user_idx ON document_grants (tenant_id, user_id);

-- pgvector 0.8.0 can overflow a buffer in parallel HNSW builds (pgvector
-- issue #959, fixed in 0.8.2): build serially.
SET LOCAL max_parallel_maintenance_workers = 0;
CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops);
