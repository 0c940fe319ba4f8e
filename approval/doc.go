// Package approval is human-in-the-loop access for agents: rows a policy
// marks with an approval rule (agents.<id>.approval) stay withheld from
// the agent until its user approves, for the rule's ttl, or until an
// operator's grant's window.
//
// A Store writes ragfence.approvals: an agent's Request (pending until it
// expires), its user's Decide (approve or deny; nobody else's request, and
// an agent never decides), an operator's Grant for a window. A Watcher,
// one per server, keeps the approvals in force in memory through
// internal/pglisten, as revocation.Watcher does for revocations: For gives
// filter.Request.Approved without a database read (BenchmarkFor: about
// 0.3 µs), and fails closed (CodeStale) when the state is not current.
//
// With filter.Wrap, pass the state in the context; with Policy.Fragment,
// in the Request (ragfence query reads it with Store.InForceFor):
//
//	approved, err := watcher.For(tenant, user, agent) // fails closed when stale
//	ctx = filter.WithApproved(ctx, approved)
//	req := filter.Request{Subject: s, Agent: agent, Approved: approved}
package approval
