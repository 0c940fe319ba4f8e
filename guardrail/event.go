package guardrail

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event reports a guardrail's trigger: the first request of a window, on
// each instance, that finds a key's budget (or its baseline) spent.
type Event struct {
	Guardrail  string
	Action     Action
	Tenant     string
	Subject    string
	Agent      string
	Collection string
	// Observed is the count that reached Limit (rows, requests or
	// documents in the window; rows for a baseline, whose Limit is the
	// spike threshold).
	Observed int64
	Limit    int64
	Window   time.Duration
	// DecisionID is the decision of the request that triggered it, as the
	// caller gave it in Request.
	DecisionID string
	Time       time.Time
}

// eventJSON is an Event's wire form, which webhooks receive.
type eventJSON struct {
	Guardrail  string    `json:"guardrail"`
	Action     string    `json:"action"`
	Tenant     string    `json:"tenant"`
	Subject    string    `json:"subject"`
	Agent      string    `json:"agent"`
	Collection string    `json:"collection"`
	Observed   int64     `json:"observed"`
	Limit      int64     `json:"limit"`
	Window     string    `json:"window"`
	DecisionID string    `json:"decision_id"`
	Time       time.Time `json:"time"`
}

// MarshalJSON writes the event's fields in snake case, the action as its
// name and the window as a duration such as "1m".
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(eventJSON{
		Guardrail: e.Guardrail, Action: e.Action.String(), Tenant: e.Tenant, Subject: e.Subject, Agent: e.Agent,
		Collection: e.Collection, Observed: e.Observed, Limit: e.Limit, Window: formatWindow(e.Window),
		DecisionID: e.DecisionID, Time: e.Time.UTC(),
	})
}

func newEvent(r *rule, who Who, collection, decisionID string, d decision, now time.Time) Event {
	return Event{
		Guardrail: r.g.Name, Action: r.action, Tenant: who.Tenant, Subject: who.Subject, Agent: who.Agent,
		Collection: collection, Observed: d.observed, Limit: d.limit, Window: r.g.Window,
		DecisionID: decisionID, Time: now,
	}
}

// formatWindow writes a window as policies do: 90s, 10m, 1h.
func formatWindow(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
