// Package service is the retriever's front door without a wire format: the
// one request pipeline that every transport calls (retriever/httpapi
// today; an MCP or gRPC server tomorrow), so that each answers the same
// question the same way and leaves the same audit record.
//
// Service.Retrieve takes a Call (the caller's credential, its query, its
// address and the channel it came through) and:
//
//   - authenticates the caller (Authenticator), before reading anything
//     else of the call;
//   - validates the query (k defaulted and bounded, min_score, an embedding
//     or query text) and embeds query text (Embedder);
//   - checks the query against the policy and the database, then the
//     subject's claims against the policy, and searches (retriever.Searcher);
//   - writes the decision's audit record (AuditLog) before it answers,
//     allowed or refused: a decision that cannot be recorded is refused;
//   - counts it in the Prometheus metrics and logs one line.
//
// Every refusal is a *retriever.Error with a stable code, wrapped in an
// *Error that carries the decision id it was audited under. Ready reports
// whether a call could be served now.
//
// The package imports no HTTP: retriever/httpapi maps the codes to
// statuses and the Call to and from JSON.
package service
