package guardrail_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/policy"
)

// benchGuardrails are the three guardrails, with budgets no
// benchmark spends, so every request takes the full path: three
// guardrails apply, one when is evaluated, rows and documents counted.
const benchGuardrails = `  - {name: agent-bulk-read, who: agents, collections: [docs], window: 1m, max_rows: 1000000000, max_requests: 1000000000, max_documents: 1000000000, action: cap, cap_k: 3}
  - {name: off-hours-agents, who: agents, when: context.hour NOT BETWEEN 7 AND 19, window: 10m, max_rows: 1000000000, action: throttle}
  - {name: spike, who: agents, window: 1m, baseline: {windows: 60, factor: 5, min_rows: 1000000000}, action: suspend, suspend_for: 30m}
`

// BenchmarkCheckRecord is what guardrails add to a request: Check before
// the search and Record after it, with the engine syncing in the
// background (the target is under 2 µs).
func BenchmarkCheckRecord(b *testing.B) {
	dsn := migrated(b)
	set := policyWith(b, benchGuardrails)
	c := newClock(time.Date(2026, 3, 9, 23, 0, 0, 0, time.UTC))
	e := engine(b, dsn, set, c, guardrail.DefaultSyncEvery, nil)
	req := guardrail.Request{
		Subject: &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"staff"}},
		Context: policy.Context{Time: c.Now()},
	}
	docs := []string{"d1", "d2", "d3", "d1", "d4", "d2", "d5", "d6", "d7", "d8"}
	run := func(b *testing.B, who func(i int) guardrail.Who) {
		i := 0
		for b.Loop() {
			v := e.Check(who(i), "docs", req)
			if !v.Action.Serves() {
				b.Fatalf("refused: %+v", v)
			}
			e.Record(v, 10, docs)
			i++
		}
	}
	b.Run("one agent", func(b *testing.B) {
		run(b, func(int) guardrail.Who { return bot })
	})
	b.Run("1000 agents", func(b *testing.B) {
		whos := make([]guardrail.Who, 1000)
		for i := range whos {
			whos[i] = guardrail.Who{Tenant: "acme", Subject: fmt.Sprintf("user-%d", i), Agent: "bot"}
		}
		run(b, func(i int) guardrail.Who { return whos[i%len(whos)] })
	})
	b.Run("parallel", func(b *testing.B) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			who := guardrail.Who{Tenant: "acme", Subject: fmt.Sprintf("user-%d", n.Add(1)), Agent: "bot"}
			for pb.Next() {
				v := e.Check(who, "docs", req)
				e.Record(v, 10, docs)
			}
		})
	})
	b.Run("no guardrail applies", func(b *testing.B) {
		alice := guardrail.Who{Tenant: "acme", Subject: "alice"}
		for b.Loop() {
			e.Record(e.Check(alice, "docs", req), 10, docs)
		}
	})
}
