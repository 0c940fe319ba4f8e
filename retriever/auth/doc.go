// Package auth turns an HTTP "Authorization: Bearer <JWT>" header into the
// subject and agent a retrieval runs for.
//
// A Verifier is built once with New and shared by every request; Verify then
// checks one header. Keys come from exactly one kind of source:
//
//   - an HMAC secret (HS256), for development and tests; or
//   - a JWKS file and/or a JWKS URL (RS256, ES256, EdDSA). The URL is fetched
//     at New, refreshed periodically, and refetched on demand when a token
//     names an unknown kid, at most once per Config.JWKSUnknownKIDRefresh.
//
// The algorithms a Verifier accepts follow from the kind of key it was
// configured with, never from the token's header, and each algorithm only
// verifies against a key of its own type. This closes "alg: none" and the
// classic confusion attack where an HS256 token is "signed" with the bytes
// of an RSA public key.
//
// Only short-lived tokens pass: exp is required, and exp minus iat (or minus
// nbf when there is no iat) must not exceed Config.MaxLifetime. A token with
// neither iat nor nbf is refused because its lifetime cannot be bounded.
//
// Claims map to a policy.Subject: sub is the ID; tenant, roles and groups are
// read from configurable claim names (top-level claims only, names taken
// literally so namespaced claims such as "https://example.com/roles" work);
// extra attributes the policy declares are copied with their JSON types
// (numbers as json.Number) for policy.Set.CheckSubject to convert, which the
// caller must still do.
//
// Delegation follows RFC 8693: the top-level "act" claim's "sub" is the agent
// acting for the user. Nested act claims name prior actors; as RFC 8693
// section 4.1 requires, they are not used for access control, and are
// returned only for audit logs (Identity.PriorActors).
//
// Every failure of Verify is an *Error whose Code is stable and whose
// message is safe to send to the client (it never quotes the token, key ids
// or key material). Callers answer all of them with HTTP 401.
package auth
