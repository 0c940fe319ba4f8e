// Package retriever is ragfence's HTTP service: POST /v1/retrieve returns the
// k chunks nearest a query vector that the caller may see.
//
// Server (New, Config) is the service: JWT authentication (Authenticator),
// agent delegation, the audit log (AuditLog), Prometheus metrics, health and
// readiness, and the OpenAPI document.
//
// Search is the similarity search underneath, usable on its own from Go
// with a pgx pool, connection or transaction. It runs in one round trip (a
// batch of per-transaction settings and one statement whose text holds none
// of the subject's values) and picks, per request, one of two plans from
// the planner's estimate of how many rows the subject's policy lets through
// (Estimates caches it): PlanExact reads the permitted rows and sorts them;
// PlanIndex walks the HNSW index with iterative scans, ef_search sized to
// the policy's selectivity, re-sorts, and falls back to the exact read
// within the same statement if the walk comes back short. Either way it
// returns k rows whenever k permitted rows exist. docs/performance.md
// explains the choice, the tables it needs, and `ragfence bench`, which
// measures it against the alternatives.
package retriever
