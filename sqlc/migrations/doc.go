// Package migrations holds ragfence's SQL migrations, embedded in the binary,
// and applies them.
//
// Two sets exist. Core creates ragfence's own tables in the ragfence schema
// (migration state, the audit log) and never touches a user's tables; it is
// what `ragfence migrate` applies. KnowledgeBase creates the example knowledge
// base the quick start uses (tenants, users, documents, document_grants and
// chunks with an HNSW-indexed embedding column) in the connection's current
// schema; only `ragfence demo` and `ragfence migrate --knowledge-base` apply it.
// With Options.PartitionByTenant (--partition-by-tenant) its first migration
// is replaced by knowledge_base_partitioned/'s, which creates the same tables
// with chunks and document_grants partitioned by LIST (tenant_id); the set's
// later migrations apply to both layouts (see docs/scaling.md).
//
// Every applied migration is recorded in ragfence.schema_migrations with a
// checksum. Apply runs in one transaction under an advisory lock, so running
// it twice is a no-op the second time and two concurrent runs apply each
// migration once. The files are also sqlc's schema (see ../sqlc.yaml): add a
// new numbered file rather than editing an applied one.
package migrations
