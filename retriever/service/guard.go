package service

import (
	"context"
	"fmt"
	"time"

	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
)

// CodeGuardrailThrottled (429): a guardrail's budget is spent; the error's
// RetryAfter says when the window allows the call.
const CodeGuardrailThrottled retriever.Code = "guardrail_throttled"

// Alerter receives every guardrail event besides the audit log, the metric
// and the log line (*guardrail.Webhook). Notify must not block.
type Alerter interface {
	Notify(guardrail.Event)
}

// suspensionWait bounds how long a refused call waits to name the
// revocation its guardrail is making; the refusal stands either way.
const suspensionWait = 2 * time.Second

// guard asks the guardrails about a read of collection by id before it
// runs: nil error with the verdict to Record after serving (its Action
// Cap lowers k), or the refusal (throttle, suspend). Without guardrails
// it allows everything.
func (s *Service) guard(ctx context.Context, x *exchange, id Identity, subject *policy.Subject, collection string) (guardrail.Verdict, error) {
	if s.cfg.Guardrails == nil {
		return guardrail.Verdict{}, nil
	}
	v := s.cfg.Guardrails.Check(guardrail.Who{Tenant: subject.Tenant, Subject: subject.ID, Agent: id.Agent}, collection,
		guardrail.Request{Subject: subject, Context: policy.Context{Time: x.start, IP: x.call.ClientAddr}, DecisionID: x.id})
	switch v.Action {
	case guardrail.Throttle:
		x.setDetail("guardrail", v.Guardrail)
		e := &retriever.Error{Code: CodeGuardrailThrottled, RetryAfter: v.RetryAfter}
		e.Msg = fmt.Sprintf("guardrail %q: the budget of this window is spent; retry after %d s", v.Guardrail, e.RetryAfterSeconds())
		if v.Pending {
			e.Msg = fmt.Sprintf("guardrail %q: this server has used its share of the budget, which the servers are sharing out; retry after %d s",
				v.Guardrail, e.RetryAfterSeconds())
		}
		return v, e
	case guardrail.Suspend:
		x.setDetail("guardrail", v.Guardrail)
		msg := fmt.Sprintf("guardrail %q suspended this agent for this user", v.Guardrail)
		wctx, cancel := context.WithTimeout(ctx, suspensionWait)
		defer cancel()
		if rid, err := v.Suspension.Wait(wctx); err == nil {
			x.setDetail("revocation_id", rid)
			msg += fmt.Sprintf(" (revocation %d)", rid)
		}
		return v, &retriever.Error{Code: CodeAgentRevoked, Msg: msg}
	case guardrail.Cap:
		x.setDetail("capped_by", v.Guardrail)
	}
	return v, nil
}

// record counts what a served read returned against the verdict's budgets.
func (s *Service) record(v guardrail.Verdict, results []retriever.Result) {
	if s.cfg.Guardrails == nil {
		return
	}
	docs := make([]string, 0, len(results))
	for _, r := range results {
		if r.Document != "" {
			docs = append(docs, r.Document)
		}
	}
	s.cfg.Guardrails.Record(v, len(results), docs)
}

// GuardrailEvent makes a guardrail's trigger known: an audit record, the
// ragfence_guardrail_events_total metric, a log line, and the Alerter.
// Give it as guardrail.Config.OnEvent; it never blocks a request.
func (s *Service) GuardrailEvent(e guardrail.Event) {
	action := e.Action.String()
	s.metrics.guardrailEvents.WithLabelValues(e.Guardrail, action).Inc()
	s.cfg.Logger.Warn("guardrail", "guardrail", e.Guardrail, "action", action, "tenant", e.Tenant, "subject", e.Subject,
		"agent", e.Agent, "collection", e.Collection, "observed", e.Observed, "limit", e.Limit, "window", e.Window.String(),
		"decision_id", e.DecisionID)
	r := audit.Record{DecidedAt: e.Time, DecisionID: audit.NewDecisionID(), Subject: e.Subject, Tenant: e.Tenant, Agent: e.Agent,
		Resource: e.Collection, PolicyVersion: s.cfg.Policies.Load().Version(), Outcome: "guardrail",
		Detail: map[string]any{"guardrail": e.Guardrail, "action": action, "observed": e.Observed, "limit": e.Limit,
			"window": e.Window.String(), "request_decision_id": e.DecisionID}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.cfg.Audit.Enqueue(ctx, r); err != nil {
		s.cfg.Logger.Error("guardrail event not audited", "guardrail", e.Guardrail, "error", err)
	}
	if s.cfg.Alerts != nil {
		s.cfg.Alerts.Notify(e)
	}
}

func (x *exchange) setDetail(k string, v any) {
	if x.detail == nil {
		x.detail = map[string]any{}
	}
	x.detail[k] = v
}
