// Package retriever is ragfence's HTTP service: POST /v1/retrieve returns the
// k chunks nearest a query vector that the caller may see.
package retriever
