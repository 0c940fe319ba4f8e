// Package mcpserver is ragfence as a Model Context Protocol server: agents
// reach the knowledge base through MCP tools (retrieve, sql_query, access)
// over streamable HTTP, with the enforcement of /v1/retrieve: the same
// service (retriever/service) decides every call, with the policy,
// delegation, masks, approvals, revocations and audit.
//
// The server is an OAuth 2.1 resource server as the MCP authorization
// specification requires: it publishes Protected Resource Metadata (RFC
// 9728), accepts bearer tokens in the Authorization header only, accepts a
// token only if its aud names the server's canonical resource URI (RFC
// 8707), answers 401 with a WWW-Authenticate challenge naming the metadata,
// and 403 insufficient_scope when a tool's scope is missing. A session is
// bound to the user who opened it. The OAuth client (client_id, azp) is the
// agent when the token has no act claim, so an MCP host gets its grant
// intersected with its user's.
package mcpserver
