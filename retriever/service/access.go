package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/revocation"
)

// Revocations is the revocation state a Service enforces
// (*revocation.Watcher): Check reads memory only.
type Revocations interface {
	Check(c revocation.Caller) error
	Concerning(c revocation.Caller) ([]revocation.Revocation, error)
}

// Approvals is the approval state searches bind (*approval.Watcher).
type Approvals interface {
	// Fresh fails when the state is not known to be current.
	Fresh() error
	// Now is the clock the windows are compared with.
	Now() time.Time
	InForce(t approval.Target, now time.Time) (approval.Approval, bool)
}

// Codes of revocation and approval refusals, beside the retriever's own
// (revocationCode maps the revocation package's to these).
const (
	CodeTokenRevoked   retriever.Code = "token_revoked"   // 401: the token is revoked
	CodeSubjectRevoked retriever.Code = "subject_revoked" // 403: the user is revoked
	CodeAgentRevoked   retriever.Code = "agent_revoked"   // 403: the agent is revoked (for this user)
	// CodeRevocationStale (503): the revocation state could not be
	// confirmed current within its bound; nothing is served on it.
	CodeRevocationStale retriever.Code = "revocation_state_stale"
	// CodeApprovalStale (503): likewise for the approval state.
	CodeApprovalStale retriever.Code = "approval_state_stale"
	// CodeInvalidApproval (400): an approval request the policy does not
	// allow (no such rule of the agent, or asked by a user).
	CodeInvalidApproval retriever.Code = "invalid_approval"
	// CodeAgentCannotDecide (403): only the user decides an approval.
	CodeAgentCannotDecide retriever.Code = "agent_cannot_decide"
)

var revocationCode = map[revocation.Code]retriever.Code{
	revocation.CodeTokenRevoked: CodeTokenRevoked, revocation.CodeSubjectRevoked: CodeSubjectRevoked,
	revocation.CodeAgentRevoked: CodeAgentRevoked, revocation.CodeStale: CodeRevocationStale,
}

// checkRevoked refuses an identity a revocation in force matches, or any
// identity while the revocation state is stale. A Service without
// Revocations enforces none.
func (s *Service) checkRevoked(id Identity) (*revocation.Revocation, error) {
	if s.cfg.Revocations == nil || id.Subject == nil {
		return nil, nil
	}
	err := s.cfg.Revocations.Check(callerOf(id))
	var re *revocation.Error
	if !errors.As(err, &re) {
		return nil, err
	}
	code, ok := revocationCode[re.Code]
	if !ok {
		code = CodeRevocationStale // fail closed on a code this service does not know
	}
	return re.Revocation, &retriever.Error{Code: code, Msg: re.Msg, Err: err}
}

// approvedFor is the approval state a search of id's binds; nil (nothing
// approved) for a user, or a Service without Approvals. It answers when
// asked, so a function kept longer stops lifting a rule at the approval's
// end, and lifts nothing once the state is stale. An approval whose window
// exceeds MaxApprovalTTL (a grant made past it) lifts nothing.
func (s *Service) approvedFor(id Identity) (func(resource, rule string) bool, error) {
	if s.cfg.Approvals == nil || id.Agent == "" {
		return nil, nil
	}
	if err := s.cfg.Approvals.Fresh(); err != nil {
		return nil, &retriever.Error{Code: CodeApprovalStale, Msg: "the approval state is not current; retry later", Err: err}
	}
	return func(resource, rule string) bool {
		_, ok := s.approvalInForce(approval.Target{Tenant: id.Subject.Tenant, Subject: id.Subject.ID, Agent: id.Agent,
			Resource: resource, Rule: rule})
		return ok
	}, nil
}

// approvalInForce is the approval of t that lifts its rule now, if any.
func (s *Service) approvalInForce(t approval.Target) (approval.Approval, bool) {
	if s.cfg.Approvals == nil || s.cfg.Approvals.Fresh() != nil {
		return approval.Approval{}, false
	}
	a, ok := s.cfg.Approvals.InForce(t, s.cfg.Approvals.Now())
	return a, ok && a.ValidUntil.Sub(a.ValidFrom) <= s.cfg.MaxApprovalTTL
}

// revokedDetail is what the audit record of a revocation's refusal keeps.
func revokedDetail(r *revocation.Revocation) map[string]any {
	return map[string]any{"revocation_id": r.ID, "revoked_since": r.CreatedAt.UTC().Format(time.RFC3339)}
}

// CheckApprovalTTLs refuses a policy whose approval rule lasts longer than
// max (the server's --max-approval-ttl), naming each such rule.
func CheckApprovalTTLs(set *policy.Set, max time.Duration) error {
	var errs []error
	for _, name := range set.Names {
		res := set.Resources[name]
		for _, agent := range slices.Sorted(maps.Keys(res.Agents)) {
			for _, a := range res.Agents[agent].Approval {
				if a.TTL > max {
					errs = append(errs, fmt.Errorf("%s:%d:%d: approval rule %q of agent %q lasts %s, longer than this server allows (%s); shorten its ttl or raise --max-approval-ttl",
						a.Pos.File, a.Pos.Line, a.Pos.Col, a.Name, agent, a.TTL, max))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Admit refuses an identity a front door authenticated itself (an MCP
// transport, before any tool runs) when a revocation in force matches it,
// or when the revocation state is stale; a refusal is audited as the
// calls' are.
func (s *Service) Admit(ctx context.Context, c Caller, id Identity) error {
	r, err := s.checkRevoked(id)
	if err != nil && r != nil {
		s.recordRefusal(ctx, c, id, r, err)
	}
	return err
}

// callerOf is id as revocations match it.
func callerOf(id Identity) revocation.Caller {
	return revocation.Caller{Tenant: id.Subject.Tenant, Subject: id.Subject.ID, Agent: id.Agent,
		PriorActors: id.PriorActors, TokenID: id.TokenID}
}

// RecordRefusal audits a call a front door refused itself, before any
// operation ran (an MCP token without the tool's scope): probing leaves a
// trail as refused searches do.
func (s *Service) RecordRefusal(ctx context.Context, c Caller, id Identity, code retriever.Code, detail map[string]any) {
	d := map[string]any{"error": string(code), "channel": c.Channel}
	for k, v := range detail {
		d[k] = v
	}
	rec := audit.Record{DecidedAt: s.cfg.Now(), DecisionID: audit.NewDecisionID(), Agent: id.Agent,
		PolicyVersion: s.cfg.Policies.Load().Version(), Outcome: outcomeDenied, ClientAddr: c.ClientAddr, Detail: d}
	if id.Subject != nil {
		rec.Subject, rec.Tenant = id.Subject.ID, id.Subject.Tenant
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.cfg.Audit.Enqueue(ctx, rec); err != nil {
		s.cfg.Logger.Error("audit record of a refused call not accepted", "error", err)
	}
}
