package service

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
)

// outcomeOf is how a refusal is recorded. A code the service does not know
// (a transport's own: a body it could not read) is the caller's mistake. An
// embedder's failure leaves the outcome where the call stood: no decision
// was reached.
func outcomeOf(err error, current string) string {
	code := retriever.CodeOf(err)
	switch code {
	case "", retriever.CodeEmbedderFailed:
		return current
	case retriever.CodeAgentNotGranted, CodeTokenRevoked, CodeSubjectRevoked, CodeAgentRevoked, CodeAgentCannotDecide:
		return outcomeDenied
	case CodeRevocationStale, CodeApprovalStale:
		return outcomeError
	case retriever.CodeUnauthenticated:
		return outcomeUnauthenticated
	case retriever.CodeUnavailable, retriever.CodeTimeout, retriever.CodeInternal:
		return outcomeError
	}
	return outcomeInvalid
}

// codeOf is err's code; an error without one is internal.
func codeOf(err error) retriever.Code {
	return cmp.Or(retriever.CodeOf(err), retriever.CodeInternal)
}

// recordDecision writes the audit record before the caller gets an answer:
// queued, or with an audit.ModeSync writer committed.
func (s *Service) recordDecision(ctx context.Context, x *exchange) error {
	r := audit.Record{
		DecidedAt: x.start, DecisionID: x.id, Resource: x.resource, PolicyVersion: x.version,
		Rules: x.rules, RowIDs: x.rowIDs, ClientAddr: x.call.ClientAddr, Latency: time.Since(x.began),
		Outcome: x.outcome, Detail: x.detail, Agent: x.identity.Agent,
	}
	if sub := x.identity.Subject; sub != nil {
		r.Subject, r.Tenant = sub.ID, sub.Tenant
	}
	for k, v := range map[string]string{"channel": x.call.Channel, "tool": x.call.Tool} {
		if v == "" {
			continue
		}
		if r.Detail == nil {
			r.Detail = map[string]any{}
		}
		r.Detail[k] = v
	}
	// A caller that hung up still leaves its record.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.cfg.Audit.Enqueue(ctx, r)
	if err == nil {
		return nil
	}
	s.cfg.Logger.Error("audit record not accepted; refusing the request", "decision_id", x.id, "error", err)
	x.outcome = outcomeError
	msg := "the audit log cannot keep up; retry later"
	if errors.Is(err, audit.ErrNotCommitted) { // sync mode: the commit itself failed
		msg = "the audit record could not be committed; retry later"
	}
	return &retriever.Error{Code: retriever.CodeUnavailable, Msg: msg, Err: err}
}

// logCall writes one structured line per call (message "retrieve",
// "query"), with the rows it returned.
func (s *Service) logCall(x *exchange, err error, message string, rows int) {
	client := ""
	if x.call.ClientAddr.IsValid() {
		client = x.call.ClientAddr.String()
	}
	attrs := []any{
		"decision_id", x.id, "outcome", x.outcome, "resource", x.resource,
		"rows", rows, "latency_ms", float64(time.Since(x.began).Microseconds()) / 1000,
		"client", client,
	}
	for k, v := range map[string]string{"channel": x.call.Channel, "tool": x.call.Tool} {
		if v != "" {
			attrs = append(attrs, k, v)
		}
	}
	if sub := x.identity.Subject; sub != nil {
		attrs = append(attrs, "subject", sub.ID, "tenant", sub.Tenant)
	}
	if x.identity.Agent != "" {
		attrs = append(attrs, "agent", x.identity.Agent)
	}
	if err != nil {
		attrs = append(attrs, "code", codeOf(err))
		var re *retriever.Error
		if errors.As(err, &re) && re.Err != nil {
			attrs = append(attrs, "error", re.Err.Error())
		}
	}
	s.cfg.Logger.Info(message, attrs...)
}
