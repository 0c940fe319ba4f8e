-- The example knowledge base partitioned by tenant: applied in place of
-- knowledge_base/0001_knowledge_base.sql by `ragfence migrate --knowledge-base
-- --partition-by-tenant` and `ragfence demo --partition-by-tenant`, when the
-- knowledge base is first created. Later knowledge-base migrations apply to
-- both layouts: the tables, columns and index names are the same.
--
-- chunks (the resource) and document_grants (the relation its policy reads)
-- are partitioned by LIST (tenant_id). Every statement ragfence sends
-- compares tenant_id with one bound value, so PostgreSQL reads one
-- partition and walks that partition's own HNSW index, whose graph holds
-- only the tenant's rows. A tenant without a partition of its own is kept
-- in the DEFAULT partition; add_tenant_partitions(tenant) below gives it
-- one. tenants, users and documents stay unpartitioned: the policy never
-- reads them, and chunks and grants reference documents by id alone.
--
-- A primary key of a partitioned table must hold the partition key, so ids
-- are unique per tenant here, not across the table.

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
-- The key leads with the tenant, then the columns the policy's EXISTS
-- compares.
CREATE TABLE document_grants (
    tenant_id   text   NOT NULL REFERENCES tenants (id),
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id     text   NOT NULL,
    permission  text   NOT NULL DEFAULT 'read',
    PRIMARY KEY (tenant_id, document_id, user_id, permission)
) PARTITION BY LIST (tenant_id);

CREATE TABLE chunks (
    id             bigint      NOT NULL,
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
    embedding      vector(384) NOT NULL,
    PRIMARY KEY (tenant_id, id)
) PARTITION BY LIST (tenant_id);

-- Rows of a tenant without a partition of its own land here rather than
-- fail. The double underscore keeps the name apart from any tenant's
-- partition (see add_tenant_partitions).
CREATE TABLE chunks__default PARTITION OF chunks DEFAULT;
CREATE TABLE document_grants__default PARTITION OF document_grants DEFAULT;

-- Indexes on a partitioned table are created on every partition, present
-- and future. The same indexes as the unpartitioned layout, but for
-- chunks (tenant_id), which the primary key already leads with.
CREATE INDEX chunks_tenant_owner_idx ON chunks (tenant_id, owner_id);
CREATE INDEX chunks_acl_groups_idx ON chunks USING gin (acl_groups);
CREATE INDEX chunks_document_idx ON chunks (document_id);
CREATE INDEX document_grants_user_idx ON document_grants (tenant_id, user_id);

-- pgvector 0.8.0 can overflow a buffer in parallel HNSW builds (pgvector
-- issue #959, fixed in 0.8.2): build serially. One HNSW graph per
-- partition.
SET LOCAL max_parallel_maintenance_workers = 0;
CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops);

-- add_tenant_partitions gives a tenant its own partition of chunks and of
-- document_grants (named <table>_<tenant>, or <table>__<hash> when the
-- tenant id is not a short lower-case identifier), moving the tenant's rows
-- out of the DEFAULT partition. It does nothing for a partition that
-- exists, so it can run at every tenant's sign-up. The partition is
-- created detached and then attached because a DEFAULT partition holding
-- the tenant's rows would make CREATE TABLE ... PARTITION OF fail; the
-- attach builds the partition's indexes (its HNSW graph among them) and
-- scans the DEFAULT partition under lock, so give large tenants their
-- partition early.
CREATE FUNCTION add_tenant_partitions(tenant text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET max_parallel_maintenance_workers = 0 -- pgvector #959, as above
AS $$
DECLARE
    suffix text := CASE WHEN tenant ~ '^[a-z0-9][a-z0-9_]{0,39}$' THEN tenant
                        ELSE '_' || left(md5(tenant), 16) END;
    parent text;
    part   text;
    dflt   regclass;
    cols   text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['chunks', 'document_grants'] LOOP
        part := parent || '_' || suffix;
        CONTINUE WHEN EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                              WHERE i.inhparent = parent::regclass AND c.relname = part);
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
        SELECT nullif(partdefid, 0)::regclass INTO dflt FROM pg_partitioned_table WHERE partrelid = parent::regclass;
        IF dflt IS NOT NULL THEN
            -- By name: a DEFAULT partition attached later may order its
            -- columns otherwise.
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
            FROM pg_attribute WHERE attrelid = parent::regclass AND attnum > 0 AND NOT attisdropped;
            EXECUTE format('WITH moved AS (DELETE FROM %s WHERE tenant_id = $1 RETURNING *) INSERT INTO %I (%s) SELECT %s FROM moved',
                           dflt, part, cols, cols) USING tenant;
        END IF;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)', parent, part, tenant);
    END LOOP;
END
$$;
