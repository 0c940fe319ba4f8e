package guardrail_test

import (
	"fmt"
	"time"

	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/policy"
)

// A policy's guardrails, and the arithmetic the engine applies to them:
// which requests a guardrail counts, the window a request falls in, and
// the rows from which a spike triggers.
func Example() {
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
context: {timezone: Europe/Berlin}
resources:
  chunks:
    tenant: tenant_id
    allow: [{name: all, when: "true"}]
guardrails:
  - name: off-hours-agents
    who: agents
    when: context.hour NOT BETWEEN 7 AND 19
    window: 10m
    max_rows: 50
    action: throttle
  - name: spike
    who: agents
    window: 1m
    baseline: {windows: 60, factor: 5, min_rows: 100}
    action: suspend
    suspend_for: 30m
`)})
	if err != nil {
		panic(err)
	}
	off := set.Guardrail("off-hours-agents")
	at := time.Date(2026, 3, 9, 21, 34, 56, 0, time.UTC) // 22:34 in Berlin
	alice := &policy.Subject{ID: "alice", Tenant: "acme"}
	fmt.Println("counts a summarizer at 22:34:", off.Counts("summarizer", "chunks") && off.When.Applies(alice, policy.Context{Time: at}, "summarizer"))
	fmt.Println("counts alice herself:", off.Counts("", "chunks"))
	fmt.Println("counts a request without a time:", off.When.Applies(alice, policy.Context{}, "summarizer"))

	start, end := guardrail.WindowOf(at, off.Window)
	fmt.Println("window:", start.Format("15:04"), "to", end.Format("15:04"), "UTC")

	spike := set.Guardrail("spike").Baseline
	for _, history := range []struct{ rows, windows int64 }{{1200, 60}, {1200, 30}, {60000, 60}} {
		threshold, ok := guardrail.SpikeThreshold(*spike, history.rows, history.windows)
		fmt.Printf("%d rows over %d windows: triggers at %d rows (%v)\n", history.rows, history.windows, threshold, ok)
	}
	// Output:
	// counts a summarizer at 22:34: true
	// counts alice herself: false
	// counts a request without a time: true
	// window: 21:30 to 21:40 UTC
	// 1200 rows over 60 windows: triggers at 101 rows (true)
	// 1200 rows over 30 windows: triggers at 0 rows (false)
	// 60000 rows over 60 windows: triggers at 5001 rows (true)
}
