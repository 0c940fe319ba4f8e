// Package guardrail enforces a policy's guardrails (policy.Guardrail):
// behavioural budgets on what each (tenant, subject, agent) is served per
// window of time, summed over every ragfence server on one database,
// decided before each search without adding a database round trip to it.
//
// A server calls Engine.Check before a search and, if the verdict serves
// it, Engine.Record after, with the rows returned and their documents:
//
//	v := engine.Check(guardrail.Who{Tenant: t, Subject: s, Agent: a}, collection, guardrail.Request{Subject: subj, Context: ctx, DecisionID: id})
//	switch v.Action {
//	case guardrail.Throttle: // refuse; retry after v.RetryAfter
//	case guardrail.Suspend:  // refuse; v.Suspension.Wait gives the revocation's id
//	case guardrail.Cap:      // serve with k = min(k, v.CapK)
//	}
//	... search ...
//	engine.Record(v, len(rows), documentsOf(rows))
//
// Check and Record do no I/O: together they cost under a microsecond with
// the three guardrails of the example (BenchmarkCheckRecord). A
// background goroutine syncs with the database every Config.SyncEvery.
//
// # Windows and counts
//
// A guardrail counts in fixed windows of its length aligned to multiples
// of that length since the Unix epoch (WindowOf): a 1m window starts on
// each minute, 10m at :00, :10, .... It keeps three counts per key (the
// guardrail, tenant, subject and agent, "" for a user calling directly)
// and window: requests served (counted by Check, for a verdict that
// serves), rows served and distinct documents served (counted by Record;
// a document is counted once however many rows, requests or instances
// returned it). A request counts only under the guardrails whose who and
// collections match it and whose when is not false for it: a when that
// cannot be decided because an attribute is missing counts the request
// (policy.GuardrailCondition.Applies).
//
// # When an action triggers
//
// A budget is spent for a request when the key's count in the window, as
// this instance knows it (every instance's total at its last sync plus its
// own use since), already reached the limit before the request. The
// request that crosses the limit is served in full: it was asked for
// while the budget had room, and Check cannot know its rows. Then:
//
//   - throttle refuses each request until the window ends (RetryAfter);
//   - cap serves each request with k lowered to cap_k (the lowest of the
//     caps that apply);
//   - suspend refuses each request and revokes the agent for its user (a
//     user calling directly: the user) for suspend_for, by
//     "guardrail:<name>" (RevokedByPrefix). Instances take turns under an
//     advisory lock and reuse a revocation in force by the same guardrail
//     for the key, so one revocation is made however many instances and
//     requests trigger it; every request of the window shares one
//     Suspension. Lifting it takes effect from the next window: until
//     then the budget is still spent;
//   - alert serves each request.
//
// Each trigger emits an Event (Config.OnEvent; Webhook delivers them) the
// first time in a window a key triggers a guardrail on an instance: N
// instances may each report it once. A verdict carries the strongest
// action of the guardrails that apply (suspend, throttle, cap, alert).
//
// A baseline is spent when the window's rows exceed factor times the
// average rows per window of the previous windows windows (windows
// without requests count as zero) and are at least min_rows
// (SpikeThreshold). With too little history, nothing: the key's history
// starts at the first window it was counted in, is kept while it is
// counted at least once every windows+1 windows, and must span windows
// whole windows before the baseline triggers. A baseline is checked on
// every instance's counts as of its last sync, plus its own.
//
// # Budgets across instances
//
// Each instance counts locally and syncs in one round trip every
// SyncEvery (ragfence.guardrail_sync, migration 0004): it adds what it used
// since the last sync to the key's counts in ragfence.guardrail_counters
// (documents to ragfence.guardrail_documents, each once), gives back what
// it was granted and will not need, and is granted a share of what is
// left of each budget: the budget less what was used and what other
// instances hold, split among the instances serving the key, rounded up.
// The database never grants more than is left, and between syncs an
// instance serves only within its grant. Until its first sync in a window
// it may use a bootstrap share of a sixteenth of an equal split among the
// live instances (at least 1), which nothing backs. An instance without a
// share that cannot tell the budget is spent answers a Pending Throttle
// (a cap: a Cap) until its next sync, which it asks for at once, and
// fires no event. Alerts and baselines are not granted: they never
// refuse, so they only detect, on the counts as of the last syncs.
//
// The overshoot of a throttle, cap or suspend budget M in a window, over
// N instances serving the key, is therefore at most
//
//	sum over instances i of (b + c_i × k)
//
// whatever the request rate and SyncEvery: b = max(1, M/(16·L)), L the
// live instances, is the bootstrap share an instance may use after the
// others were granted the rest, c_i the requests in flight on instance i (checked, not yet
// recorded), k the most rows a request returns (for max_requests, k = 1).
// Two instances with M = 500, 4 requests in flight each of at most 10
// rows: at most 500 + 2·31 + 80 = 642 rows (1.28 M) in the worst
// interleaving; TestTwoInstancesUnderHammering, eight goroutines
// hammering two instances as fast as they answer, measures 503 to 549
// (under 1.1 M). SyncEvery bounds how soon a budget another instance no
// longer uses can be served here, not the overshoot: an idle instance
// gives back all but b at its next sync, so the budget is used up to at
// most (N−1)·b early, and a dead instance's grant is lost until the window
// ends. An alert or a baseline sees another instance's use at most about
// 2×SyncEvery plus a round trip late, so a throttling baseline may serve
// (N−1) × rate × k × (2×SyncEvery + round trip) rows past its threshold.
//
// When a sync fails the instance keeps enforcing on what it knows (a
// key out of its grant waits, failing closed) and reports its counts at
// the next sync that succeeds; of windows that ended meanwhile only the
// latest is kept. A sync whose answer is lost after the database applied
// it is reported again: its counts err high (restrictive), and what it
// gave back is given back twice (permissive by at most what it held). Windows no
// baseline reads any more are pruned by each key's sync and, for keys no
// one counts, once a minute.
package guardrail
