package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/revocation"
)

// Caller is who makes a call that reads no rows (approvals, access), as
// a front door received it: the credential, address and channel, as in Call.
type Caller struct {
	Authorization string
	Authenticator Authenticator // nil: Config.Auth
	ClientAddr    netip.Addr
	Channel, Tool string
}

// authenticator is a front door's own, or the service's.
func (s *Service) authenticator(a Authenticator) Authenticator {
	if a != nil {
		return a
	}
	return s.cfg.Auth
}

// ApprovalRequest is an agent's request for the rows of one of its
// approval rules (POST /v1/approvals).
type ApprovalRequest struct {
	Collection string `json:"collection"`
	Rule       string `json:"rule"`
	Reason     string `json:"reason,omitempty"`
}

// ApprovalView is an approval as its user and agent see it.
type ApprovalView struct {
	ID         string `json:"id"`
	Status     string `json:"status"` // pending, approved, denied, expired
	Collection string `json:"collection"`
	Rule       string `json:"rule"`
	Agent      string `json:"agent"`
	Reason     string `json:"reason,omitempty"`
	// TTL is how long an approval lasts once given (Go duration).
	TTL         string    `json:"ttl,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	// ExpiresAt is when a pending request lapses, or an approval ends.
	ExpiresAt time.Time  `json:"expires_at"`
	ValidFrom *time.Time `json:"valid_from,omitempty"`
}

func viewOf(a approval.Approval, now time.Time) ApprovalView {
	v := ApprovalView{ID: a.ID, Status: string(a.StatusAt(now)), Collection: a.Resource, Rule: a.Rule, Agent: a.Agent,
		Reason: a.Reason, RequestedAt: a.RequestedAt, ExpiresAt: a.RequestExpiresAt}
	if a.TTL > 0 {
		v.TTL = a.TTL.String()
	}
	if a.Status == approval.StatusApproved {
		from := a.ValidFrom
		v.ExpiresAt, v.ValidFrom = a.ValidUntil, &from
	}
	return v
}

// RequestApproval records an agent's request for the rows of one of its
// approval rules, pending its user's decision. Only an agent asks, for a
// rule its grant on the collection has.
// The request is read by decode once the caller is authenticated (a front
// door never parses an anonymous caller's body).
func (s *Service) RequestApproval(ctx context.Context, c Caller, decode func() (ApprovalRequest, error)) (ApprovalView, error) {
	id, err := s.identify(ctx, c)
	if err != nil {
		return ApprovalView{}, err
	}
	req, err := decode()
	if err != nil {
		return ApprovalView{}, err
	}
	if id.Agent == "" {
		return ApprovalView{}, &retriever.Error{Code: CodeInvalidApproval, Msg: "only an agent (a token whose act claim names it) asks for approval; its user decides"}
	}
	p := s.cfg.Policies.Load()
	res, ok := p.Set().Resources[req.Collection]
	if !ok {
		return ApprovalView{}, &retriever.Error{Code: retriever.CodeUnknownCollection, Msg: fmt.Sprintf("unknown collection %q; this server has: %v", req.Collection, p.Set().Names)}
	}
	g := res.Agents[id.Agent]
	var rule *approvalRule
	if g != nil {
		if a := g.ApprovalRule(req.Rule); a != nil {
			rule = &approvalRule{a.Name, a.TTL}
		}
	}
	if rule == nil {
		return ApprovalView{}, &retriever.Error{Code: CodeInvalidApproval, Msg: fmt.Sprintf("agent %q has no approval rule %q on collection %q", id.Agent, req.Rule, req.Collection)}
	}
	t := approval.Target{Tenant: id.Subject.Tenant, Subject: id.Subject.ID, Agent: id.Agent, Resource: req.Collection, Rule: rule.name}
	return s.audited(ctx, c, id, "requested", func(st *approval.Store) (approval.Approval, error) {
		return st.Request(ctx, t, req.Reason, min(rule.ttl, s.cfg.MaxApprovalTTL), s.cfg.PendingFor)
	})
}

type approvalRule struct {
	name string
	ttl  time.Duration
}

// Approvals lists the caller's approvals: a user's every agent's, an
// agent's only its own for its user.
func (s *Service) Approvals(ctx context.Context, c Caller) ([]ApprovalView, error) {
	id, err := s.identify(ctx, c)
	if err != nil {
		return nil, err
	}
	list, err := approval.NewStore(s.cfg.Pool).OfSubject(ctx, id.Subject.Tenant, id.Subject.ID)
	if err != nil {
		return nil, s.approvalError(err)
	}
	now := s.cfg.Now()
	out := []ApprovalView{}
	for _, a := range list {
		if id.Agent == "" || a.Agent == id.Agent {
			out = append(out, viewOf(a, now))
		}
	}
	return out, nil
}

// DecideApproval approves or denies a pending request of the caller's
// own. An agent never decides, not even its own request; a request of
// another user or tenant is not found, as one that does not exist.
func (s *Service) DecideApproval(ctx context.Context, c Caller, approvalID string, approve bool) (ApprovalView, error) {
	id, err := s.identify(ctx, c)
	if err != nil {
		return ApprovalView{}, err
	}
	if id.Agent != "" {
		return ApprovalView{}, &retriever.Error{Code: CodeAgentCannotDecide, Msg: "an agent cannot decide an approval; its user decides with their own token"}
	}
	event := "denied"
	if approve {
		event = "approved"
	}
	return s.audited(ctx, c, id, event, func(st *approval.Store) (approval.Approval, error) {
		d := approval.Decider{Tenant: id.Subject.Tenant, Subject: id.Subject.ID, By: id.Subject.ID}
		if approve {
			var err error
			if d.MaxTTL, err = s.currentTTL(ctx, st, approvalID, d); err != nil {
				return approval.Approval{}, err
			}
		}
		return st.Decide(ctx, approvalID, approve, d)
	})
}

// currentTTL is how long approving request id may last now: its rule's
// ttl as the policy says it today, within the server's maximum. A rule
// the policy no longer has cannot be approved.
func (s *Service) currentTTL(ctx context.Context, st *approval.Store, id string, d approval.Decider) (time.Duration, error) {
	a, ok, err := st.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	if !ok || a.Tenant != d.Tenant || a.Subject != d.Subject {
		return 0, &approval.Error{Code: approval.CodeNotFound, Msg: fmt.Sprintf("no pending approval request %q of yours", id)}
	}
	var rule *policy.ApprovalRule
	if res, ok := s.cfg.Policies.Load().Set().Resources[a.Resource]; ok && res.Agents[a.Agent] != nil {
		rule = res.Agents[a.Agent].ApprovalRule(a.Rule)
	}
	if rule == nil {
		return 0, &approval.Error{Code: approval.CodeInvalid, Msg: fmt.Sprintf("the policy no longer has approval rule %q for agent %q on %q; deny the request", a.Rule, a.Agent, a.Resource)}
	}
	return min(rule.TTL, s.cfg.MaxApprovalTTL), nil
}

// identify authenticates a call that reads no rows and refuses revoked
// identities as Retrieve does.
func (s *Service) identify(ctx context.Context, c Caller) (Identity, error) {
	id, err := s.authenticate(ctx, c)
	if err != nil {
		return Identity{}, err
	}
	if r, err := s.checkRevoked(id); err != nil {
		if r != nil {
			s.recordRefusal(ctx, c, id, r, err)
		}
		return Identity{}, err
	}
	return id, nil
}

// authenticate verifies c's credential with its front door's authenticator
// and requires a subject with a tenant.
func (s *Service) authenticate(ctx context.Context, c Caller) (Identity, error) {
	id, err := s.authenticator(c.Authenticator).Authenticate(ctx, c.Authorization)
	if err != nil {
		return Identity{}, &retriever.Error{Code: retriever.CodeUnauthenticated, Msg: err.Error(), Err: err}
	}
	if id.Subject == nil || id.Subject.ID == "" || id.Subject.Tenant == "" {
		return Identity{}, &retriever.Error{Code: retriever.CodeUnauthenticated, Msg: "the token names no subject or no tenant"}
	}
	return id, nil
}

// recordRefusal audits a revoked identity's refused call that reads no
// rows; the refusal stands whether or not the record is accepted.
func (s *Service) recordRefusal(ctx context.Context, c Caller, id Identity, r *revocation.Revocation, err error) {
	detail := revokedDetail(r)
	detail["error"], detail["channel"] = string(codeOf(err)), c.Channel
	if c.Tool != "" {
		detail["tool"] = c.Tool
	}
	rec := audit.Record{DecidedAt: s.cfg.Now(), DecisionID: audit.NewDecisionID(), Subject: id.Subject.ID, Tenant: id.Subject.Tenant,
		Agent: id.Agent, PolicyVersion: s.cfg.Policies.Load().Version(), Outcome: outcomeDenied, ClientAddr: c.ClientAddr, Detail: detail}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if aerr := s.cfg.Audit.Enqueue(ctx, rec); aerr != nil {
		s.cfg.Logger.Error("audit record of a revoked call not accepted", "error", aerr, "revocation_id", r.ID)
	}
}

func (s *Service) approvalError(err error) error {
	switch approval.CodeOf(err) {
	case approval.CodeNotFound:
		return &retriever.Error{Code: retriever.CodeNotFound, Msg: err.(*approval.Error).Msg, Err: err}
	case approval.CodeInvalid:
		return &retriever.Error{Code: CodeInvalidApproval, Msg: err.(*approval.Error).Msg, Err: err}
	}
	var re *retriever.Error
	if errors.As(err, &re) {
		return re
	}
	return &retriever.Error{Code: retriever.CodeUnavailable, Msg: "the approval could not be recorded; retry later", Err: err}
}

// audited runs change in a transaction with its audit record: the approval
// change commits with its trail or not at all (and servers hear of it at
// the commit).
func (s *Service) audited(ctx context.Context, c Caller, id Identity, event string, change func(*approval.Store) (approval.Approval, error)) (ApprovalView, error) {
	tx, err := s.cfg.Pool.Begin(ctx)
	if err != nil {
		return ApprovalView{}, s.approvalError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	a, err := change(approval.NewStore(tx))
	if err != nil {
		return ApprovalView{}, s.approvalError(err)
	}
	by := id.Subject.ID
	if id.Agent != "" {
		by = id.Agent
	}
	r := audit.Record{
		DecidedAt: s.cfg.Now(), DecisionID: audit.NewDecisionID(), Subject: a.Subject, Tenant: a.Tenant, Agent: a.Agent,
		Resource: a.Resource, PolicyVersion: s.cfg.Policies.Load().Version(), Outcome: "approval", ClientAddr: c.ClientAddr,
		Detail: map[string]any{"event": event, "approval_id": a.ID, "rule": a.Rule, "by": by, "channel": c.Channel, "tool": c.Tool},
	}
	if err := audit.Write(ctx, tx, r); err != nil {
		return ApprovalView{}, s.approvalError(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return ApprovalView{}, s.approvalError(err)
	}
	s.cfg.Logger.Info("approval", "event", event, "approval_id", a.ID, "tenant", a.Tenant, "subject", a.Subject, "agent", a.Agent, "rule", a.Rule)
	return viewOf(a, s.cfg.Now()), nil
}

// SweepExpiredApprovals writes the audit record of every approval request
// and approval that expires, every interval until ctx ends. Any number of
// servers may sweep one database: each expiry is claimed, and recorded,
// once.
func (s *Service) SweepExpiredApprovals(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.sweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("approval expiry sweep failed; retrying", "error", err)
		}
	}
}

// sweepOnce claims the expiries and writes their records in one
// transaction: a claim without its record never commits.
func (s *Service) sweepOnce(ctx context.Context) error {
	tx, err := s.cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	expired, err := approval.NewStore(tx).Expired(ctx)
	if err != nil || len(expired) == 0 {
		return err
	}
	records := make([]audit.Record, len(expired))
	for i, a := range expired {
		records[i] = audit.Record{
			DecidedAt: s.cfg.Now(), DecisionID: audit.NewDecisionID(), Subject: a.Subject, Tenant: a.Tenant, Agent: a.Agent,
			Resource: a.Resource, PolicyVersion: s.cfg.Policies.Load().Version(), Outcome: "approval",
			Detail: map[string]any{"event": "expired", "approval_id": a.ID, "rule": a.Rule, "was": string(a.Status)},
		}
	}
	if err := audit.Write(ctx, tx, records...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
