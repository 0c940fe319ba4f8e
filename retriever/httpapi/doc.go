// Package httpapi is the retriever's HTTP front door: POST /v1/retrieve,
// /healthz, /readyz, /metrics and /openapi.json, served by Echo.
//
// It owns the wire format and nothing else: the strict decoding of the
// request body (JSON only, bounded, no unknown fields, no duplicate or
// case-folded keys, the embedding read by its own parser), the answer's
// encoding, the error envelope {"error": {"code", "message"}}, the HTTP
// status of each code (Status), WWW-Authenticate on 401 and the
// X-Decision-Id header on every answer of /v1/retrieve. Authentication,
// validation, the search, the audit record and the metrics are the
// service's (retriever/service), which every front door shares; OpenAPI
// describes the API.
package httpapi
