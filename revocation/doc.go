// Package revocation is continuous access evaluation for ragfence: tokens,
// users and agents refused before their tokens expire, on every server at
// once.
//
// A Store writes ragfence.revocations (migrations: sqlc/migrations/core),
// whose trigger announces each change on Channel. A Watcher, one per
// server process, holds the revocations in force in memory: it LISTENs,
// reads each changed row, reloads the whole set on every (re)connect, and
// pings when idle. Check is a few map reads (BenchmarkCheck: about 0.2 µs),
// never a database read; when the Watcher cannot confirm its state for
// WatchConfig.MaxStaleness it fails closed with CodeStale.
//
// A revocation refuses a Caller by the most specific match: the token
// (CodeTokenRevoked), the user, agents acting for them included
// (CodeSubjectRevoked), the agent for that user, the agent for anyone
// (CodeAgentRevoked). The refusal's message names the revocation and since
// when; the reason stays with operators.
package revocation
