-- Queries of the demo knowledge base only: Go outside the demo never names
-- these tables or columns, it reads them from the policy.

-- name: InsertTenant :exec
INSERT INTO tenants (id, name) VALUES ($1, $2);

-- name: InsertUsers :copyfrom
INSERT INTO users (id, tenant_id, name, roles, groups, clearance)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: InsertDocuments :copyfrom
INSERT INTO documents (id, tenant_id, owner_id, title, source, visibility, acl_groups, classification, created_at, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: InsertDocumentGrants :copyfrom
INSERT INTO document_grants (tenant_id, document_id, user_id, permission)
VALUES ($1, $2, $3, $4);

-- name: InsertChunks :copyfrom
INSERT INTO chunks (id, tenant_id, document_id, owner_id, visibility, acl_groups, classification, source, content, contact_email, metadata, created_at, embedding)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

-- name: ListUsers :many
SELECT * FROM users ORDER BY tenant_id, id;

-- name: GetUser :one
SELECT * FROM users WHERE id = $1;

-- name: CountChunksByTenant :many
SELECT tenant_id, count(*)::bigint AS chunks FROM chunks GROUP BY tenant_id ORDER BY tenant_id;
