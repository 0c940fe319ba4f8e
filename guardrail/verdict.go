package guardrail

import (
	"time"

	"github.com/ragfence/ragfence/policy"
)

// Who is whose budget a request draws on: budgets are kept per (tenant,
// subject, agent), and Agent is "" for a user calling directly.
type Who struct {
	Tenant  string
	Subject string
	Agent   string
}

// Request is what guardrails' when conditions are evaluated on, and the
// decision the request belongs to.
type Request struct {
	// Subject is the request's subject; nil means none of its attributes
	// are known (conditions on them are then unknown, and apply).
	Subject *policy.Subject
	// Context is what the server knows about the request; context.agent
	// is Who.Agent.
	Context policy.Context
	// DecisionID is copied into the events the request triggers.
	DecisionID string
}

// Action is what a verdict tells the caller to do, from the weakest.
type Action int

// The actions, in increasing strength: a verdict carries the strongest
// of the guardrails that apply.
const (
	// Allow: serve the request as asked.
	Allow Action = iota
	// Alert: serve it; an event reported the guardrail's trigger.
	Alert
	// Cap: serve it with k lowered to Verdict.CapK.
	Cap
	// Throttle: refuse it; it may be retried after Verdict.RetryAfter.
	Throttle
	// Suspend: refuse it; the engine revokes the agent (or the user)
	// for the guardrail's suspend_for (see Verdict.Suspension).
	Suspend
)

func (a Action) String() string {
	switch a {
	case Alert:
		return "alert"
	case Cap:
		return "cap"
	case Throttle:
		return "throttle"
	case Suspend:
		return "suspend"
	}
	return "allow"
}

// Serves reports whether a request with this verdict is served.
func (a Action) Serves() bool { return a <= Cap }

func actionOf(a policy.GuardrailAction) Action {
	switch a {
	case policy.ActionCap:
		return Cap
	case policy.ActionSuspend:
		return Suspend
	case policy.ActionAlert:
		return Alert
	}
	return Throttle
}

// Verdict is the engine's answer for one request, before it is served.
type Verdict struct {
	Action Action
	// Guardrail names the guardrail whose action Action is ("" for Allow).
	Guardrail string
	// RetryAfter is, for Throttle, how long until the request may be
	// served: until the window ends, or for a Pending verdict until the
	// next sync.
	RetryAfter time.Duration
	// CapK is, for Cap, the k to serve at most (the lowest cap_k of the
	// caps that apply).
	CapK int
	// Suspension is, for Suspend, the revocation being made.
	Suspension *Suspension
	// Pending is set on a Throttle that no spent budget caused: this
	// instance has used the share of the remaining budget the database
	// granted it and waits for its next sync to learn whether any is left.
	Pending bool

	counters []*counter // of the guardrails that apply, for Record
}

// merge makes v the stronger of v and a guardrail's decision d. A
// Throttle on a spent budget outranks a pending one: it names the
// guardrail, and the verdict is Pending only while no budget is spent.
func (v *Verdict) merge(d decision, name string) {
	switch d.action {
	case Cap:
		if v.CapK == 0 || d.capK < v.CapK {
			v.CapK = d.capK
		}
	case Throttle:
		v.RetryAfter = max(v.RetryAfter, d.retryAfter)
	}
	spentThrottle := d.action == Throttle && !d.pending
	if d.action > v.Action || (spentThrottle && v.Pending) {
		v.Action, v.Guardrail, v.Suspension = d.action, name, d.suspension
		v.Pending = d.action == Throttle && d.pending
	}
}
