package guardrail

import (
	"github.com/ragfence/ragfence/policy"
)

// The budgets a key counts, as indexes of its meters.
const (
	rowsBudget = iota
	requestsBudget
	documentsBudget
	budgets
)

// rule is a policy guardrail compiled for counting.
type rule struct {
	g         *policy.Guardrail
	windowSec int64
	limits    [budgets]int64 // 0: no such budget
	action    Action
	// leased: the budgets are served within database grants, so the sum
	// over instances holds. An alert refuses nothing, so it only detects.
	leased bool
}

func compile(set *policy.Set) []*rule {
	if set == nil {
		return nil
	}
	out := make([]*rule, 0, len(set.Guardrails))
	for _, g := range set.Guardrails {
		r := &rule{
			g:         g,
			windowSec: int64(g.Window.Seconds()),
			limits:    [budgets]int64{g.MaxRows, g.MaxRequests, g.MaxDocuments},
			action:    actionOf(g.Action),
		}
		r.leased = r.action != Alert
		out = append(out, r)
	}
	return out
}

// applies reports whether the rule counts the request.
func (r *rule) applies(who Who, collection string, req Request) bool {
	if !r.g.Counts(who.Agent, collection) {
		return false
	}
	return r.g.When == nil || r.g.When.Applies(req.Subject, req.Context, who.Agent)
}

// historyWindows is how many windows before the current one the rule's
// baseline reads.
func (r *rule) historyWindows() int {
	if r.g.Baseline == nil {
		return 0
	}
	return r.g.Baseline.Windows
}

// grantLimit is the budget the database grants shares of: none for a
// rule that does not lease.
func (r *rule) grantLimit(b int) int64 {
	if !r.leased {
		return 0
	}
	return r.limits[b]
}

// bootstrap is the share of budget b an instance may use in a window
// before the database has granted it any: a sixteenth of an equal share
// among the live instances, at least 1. It is the one use no grant backs.
func (r *rule) bootstrap(b int, live int64) int64 {
	return max(1, r.limits[b]/(16*max(live, 1)))
}
