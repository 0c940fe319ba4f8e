package guardrail

import (
	"math"

	"github.com/ragfence/ragfence/policy"
)

// SpikeThreshold returns the rows in a window from which a baseline
// triggers: more than Factor times the average rows per window of the
// previous Windows windows (historyRows is their sum; windows without
// requests count as zero), and at least MinRows.
//
// historyWindows is how many whole windows of the key's history precede
// the current one. With fewer than Windows there is no baseline yet (ok is
// false): a new agent, or one back after its history was pruned (idle for
// more than Windows+1 windows), is not compared with an average it has not
// established. Budgets (max_rows, ...) apply to it as to anyone.
func SpikeThreshold(b policy.Baseline, historyRows int64, historyWindows int64) (threshold int64, ok bool) {
	if b.Windows <= 0 || historyWindows < int64(b.Windows) {
		return 0, false
	}
	over := b.Factor * float64(historyRows) / float64(b.Windows)
	if over >= math.MaxInt64/2 {
		return math.MaxInt64, true
	}
	return max(b.MinRows, int64(math.Floor(over))+1), true
}
