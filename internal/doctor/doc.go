// Package doctor tells an operator what their database lacks for fast,
// correct filtered vector search under a policy, and what to run to fix it.
//
// Check reads the system catalogs (never the data, never a write) and
// returns a Report of Findings, each with a Severity, a stable Code naming
// the check, a Message and, when a statement fixes it, the SQL in Fix:
//
//   - pgvector: the extension is at least 0.8.0, whose iterative index scans
//     the retriever turns on (error otherwise), and at least 0.8.2, which
//     fixes an overflow in parallel HNSW builds, pgvector #959 (warning).
//   - catalog: every resource's and relation's table exists with the columns
//     the policy names or its conditions use (policy.CheckCatalog; error).
//   - retriever_columns: the content, embedding and metadata columns exist
//     and the embedding is a vector (warning: a resource used only to filter
//     queries needs none of them).
//   - vector_index: an HNSW or IVFFlat index with vector_cosine_ops on the
//     embedding, since the retriever orders by <=> (warning).
//   - column_index: every column of the resource's table that an allow or
//     deny rule uses, and the tenant column, leads an index the planner can
//     use: btree for scalars, GIN for arrays, jsonb and tsvector. Every
//     filtered query compares the tenant column with an equality, so a btree
//     on (tenant_id, owner_id) serves owner_id too (warning).
//   - relation_index: best effort, the columns of a relation that an EXISTS
//     condition compares with =, IN or = ANY lead an index (warning).
//   - analyze: the resource's and its relations' tables have planner
//     statistics (warning). A table that was indexed but never analyzed has
//     a row count (pg_class.reltuples) but no column statistics, so Check
//     asks pg_stat_all_tables and pg_stats rather than reltuples.
//
// Errors mean searches fail or are wrong; warnings mean they are slow or
// their plans unpredictable. `ragfence doctor` prints the report and exits 1
// on an error (or, with --strict, on a warning); `ragfence serve` logs it at
// start with LogFindings and starts regardless.
package doctor
