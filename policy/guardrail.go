package policy

import (
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Guardrail is a behavioural limit on what one (tenant, subject, agent)
// is served in a window of time, across collections: package guardrail
// counts and enforces it.
type Guardrail struct {
	// Name is unique in the set; it names the guardrail in verdicts,
	// events and the revocations it makes ("guardrail:<name>").
	Name string
	// Who are the requests it counts; Agent is the agent when Who is
	// AudienceAgent.
	Who   Audience
	Agent string
	// Collections are the resources it counts; nil means every resource,
	// whose requests share one budget.
	Collections []string
	// When restricts it to requests for which the condition does not
	// evaluate to false; nil means every request.
	When *GuardrailCondition
	// Window is the length of the fixed windows it counts in: a whole
	// number of seconds.
	Window time.Duration
	// MaxRows, MaxRequests and MaxDocuments are the budgets per window;
	// zero means no such budget.
	MaxRows, MaxRequests, MaxDocuments int64
	// Baseline triggers on a spike over the key's own recent average.
	Baseline *Baseline
	Action   GuardrailAction
	// CapK is the k requests are lowered to while over budget (ActionCap).
	CapK int
	// SuspendFor is how long a suspension lasts (ActionSuspend).
	SuspendFor time.Duration
	Pos        Pos
}

// Audience is whose requests a guardrail counts.
type Audience string

// The audiences.
const (
	// AudienceAgents: requests in which any agent acts for a user.
	AudienceAgents Audience = "agents"
	// AudienceSubjects: users calling directly, with no agent.
	AudienceSubjects Audience = "subjects"
	// AudienceEveryone: every request.
	AudienceEveryone Audience = "everyone"
	// AudienceAgent: requests in which one agent (Guardrail.Agent) acts.
	AudienceAgent Audience = "agent"
)

// GuardrailAction is what a guardrail does while its budget is spent.
type GuardrailAction string

// The actions.
const (
	// ActionThrottle refuses requests until the window allows them.
	ActionThrottle GuardrailAction = "throttle"
	// ActionCap serves requests with k lowered to CapK.
	ActionCap GuardrailAction = "cap"
	// ActionSuspend revokes the agent (or, for a user calling directly,
	// the user) for SuspendFor.
	ActionSuspend GuardrailAction = "suspend"
	// ActionAlert serves requests and reports the guardrail's trigger.
	ActionAlert GuardrailAction = "alert"
)

var guardrailActions = []string{string(ActionThrottle), string(ActionCap), string(ActionSuspend), string(ActionAlert)}

// Baseline triggers when a window's rows exceed Factor times the key's
// average rows per window over the previous Windows windows, and are at
// least MinRows.
type Baseline struct {
	Windows int
	Factor  float64
	MinRows int64
}

// Counts reports whether the guardrail counts a request by agent ("" for
// a user calling directly) to collection; its When is checked apart.
func (g *Guardrail) Counts(agent, collection string) bool {
	switch g.Who {
	case AudienceAgents:
		if agent == "" {
			return false
		}
	case AudienceSubjects:
		if agent != "" {
			return false
		}
	case AudienceAgent:
		if agent != g.Agent {
			return false
		}
	}
	return g.Collections == nil || slices.Contains(g.Collections, collection)
}

// Guardrail returns the set's guardrail named name, or nil.
func (s *Set) Guardrail(name string) *Guardrail {
	for _, g := range s.Guardrails {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Limits bounding guardrail values, so counters and their history stay
// small.
const (
	MaxGuardrailWindow    = 24 * time.Hour
	MaxBaselineWindows    = 1000
	MaxGuardrailSuspend   = 30 * 24 * time.Hour
	maxGuardrailNameBytes = 63
)

// writeGuardrails adds the guardrails to a set's version hash; a set
// without any keeps the version it had before guardrails existed.
func writeGuardrails(h hash.Hash, gs []*Guardrail) {
	for _, g := range gs {
		fmt.Fprintln(h, "guardrail", g.Name, g.Who, g.Agent, strings.Join(g.Collections, ","), g.Collections == nil,
			g.Window, g.MaxRows, g.MaxRequests, g.MaxDocuments, g.Action, g.CapK, g.SuspendFor)
		if g.When != nil {
			fmt.Fprintln(h, "when", g.When.canonical())
		}
		if b := g.Baseline; b != nil {
			fmt.Fprintln(h, "baseline", b.Windows, strconv.FormatFloat(b.Factor, 'g', -1, 64), b.MinRows)
		}
	}
}
