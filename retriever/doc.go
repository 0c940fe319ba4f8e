// Package retriever is ragfence's filtered similarity search: the k chunks
// nearest a query vector that a subject may see, usable on its own from Go
// with a pgx pool, connection or transaction.
//
// NewSearcher builds a Searcher from a Config; Searcher.Search runs one
// search. It runs in one round trip (a batch of per-transaction settings and
// one statement whose text holds none of the subject's values) and picks,
// per request, one of two plans from the planner's estimate of how many rows
// the subject's policy lets through (Estimates caches it): PlanExact reads
// the permitted rows and sorts them; PlanIndex walks the HNSW index with
// iterative scans, ef_search sized to the policy's selectivity, re-sorts,
// and falls back to the exact read within the same statement if the walk
// comes back short. Either way it returns k rows whenever k permitted rows
// exist. docs/performance.md explains the choice, the tables it needs, and
// `ragfence bench`, which measures it against the alternatives.
//
// Every failure is an *Error with a stable Code (CodeOf), whatever its
// cause: a refused query, a policy refusal, a timeout, a lost database.
//
// The service is built on top, each layer depending only on the ones
// below:
//
//   - retriever (this package): the search, its errors, Filter, Estimates,
//     PolicyStore. No HTTP, metrics, authentication or audit.
//   - retriever/service: the request pipeline any front door calls:
//     authentication, validation, query-text embedding, the audit record
//     written before any answer, metrics and readiness.
//   - retriever/httpapi: the HTTP front door, POST /v1/retrieve with its
//     wire format, status codes and OpenAPI document.
package retriever
