package service

import (
	"context"
	"errors"
	"time"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
)

// Access is what an identity may read, per collection, and why: the answer
// of GET /v1/access. It holds no rows.
type Access struct {
	Subject       string             `json:"subject"`
	Tenant        string             `json:"tenant"`
	Agent         string             `json:"agent,omitempty"`
	PolicyVersion string             `json:"policy_version"`
	Collections   []CollectionAccess `json:"collections"`
	// Revocations in force that touch the identity (its token, its user,
	// its agent).
	Revocations []RevocationView `json:"revocations"`
}

// CollectionAccess is one collection's part of Access.
type CollectionAccess struct {
	Collection string `json:"collection"`
	// Readable is false when no row can be visible; Reason says why.
	Readable bool   `json:"readable"`
	Reason   string `json:"reason,omitempty"`
	// Rules are the rules in play, as in a search's decision.
	Rules  []string `json:"rules"`
	Masked []string `json:"masked"`
	// Grant is the agent's grant on the collection (for an agent).
	Grant *GrantView `json:"grant,omitempty"`
	// Approvals are the agent's approval rules and where each stands.
	Approvals []ApprovalState `json:"approvals,omitempty"`
}

// GrantView names an agent grant's rules.
type GrantView struct {
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

// ApprovalState is one approval rule for one agent and user: none,
// pending (RequestID), or approved until Until.
type ApprovalState struct {
	Rule      string     `json:"rule"`
	TTL       string     `json:"ttl"`
	State     string     `json:"state"`
	Until     *time.Time `json:"until,omitempty"`
	RequestID string     `json:"request_id,omitempty"`
}

// RevocationView is a revocation as the identity it refuses sees it: never
// its reason.
type RevocationView struct {
	ID    int64      `json:"id"`
	Kind  string     `json:"kind"`
	Agent string     `json:"agent,omitempty"`
	Since time.Time  `json:"since"`
	Ends  *time.Time `json:"ends,omitempty"`
}

// Access answers what the caller, or (for a user's own token) the agent
// named by agent acting for them, may read. An agent's token may name no
// other agent.
// Every answer is audited (a refusal of a revoked caller by identify).
func (s *Service) Access(ctx context.Context, c Caller, agent string) (*Access, error) {
	id, err := s.identify(ctx, c)
	if err != nil {
		return nil, err
	}
	a, err := s.access(ctx, c, id, agent)
	outcome, detail := outcomeAllowed, map[string]any{"kind": "access", "channel": c.Channel, "about_agent": agent}
	if c.Tool != "" {
		detail["tool"] = c.Tool
	}
	if err != nil {
		outcome, detail["error"] = outcomeOf(err, outcomeError), string(codeOf(err))
	}
	rec := audit.Record{DecidedAt: s.cfg.Now(), DecisionID: audit.NewDecisionID(), Subject: id.Subject.ID, Tenant: id.Subject.Tenant,
		Agent: id.Agent, PolicyVersion: s.cfg.Policies.Load().Version(), Outcome: outcome, ClientAddr: c.ClientAddr, Detail: detail}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if aerr := s.cfg.Audit.Enqueue(actx, rec); aerr != nil {
		return nil, &retriever.Error{Code: retriever.CodeUnavailable, Msg: "the audit log cannot keep up; retry later", Err: aerr}
	}
	return a, err
}

func (s *Service) access(ctx context.Context, c Caller, id Identity, agent string) (*Access, error) {
	switch {
	case agent != "" && id.Agent != "" && agent != id.Agent:
		return nil, &retriever.Error{Code: retriever.CodeInvalidSubject, Msg: "an agent's token may ask only about itself"}
	case agent == "":
		agent = id.Agent
	}
	p := s.cfg.Policies.Load()
	subject, err := p.Set().CheckSubject(id.Subject)
	if err != nil {
		return nil, &retriever.Error{Code: retriever.CodeInvalidSubject, Msg: "the token's claims do not fit the policy: " + err.Error(), Err: err}
	}
	who := Identity{Subject: subject, Agent: agent}
	approved, err := s.approvedFor(who)
	if err != nil {
		return nil, err
	}
	out := &Access{Subject: subject.ID, Tenant: subject.Tenant, Agent: agent, PolicyVersion: p.Version(), Collections: []CollectionAccess{}}
	if out.Revocations, err = s.revocationsOf(Identity{Subject: subject, Agent: agent, TokenID: id.TokenID, PriorActors: id.PriorActors}); err != nil {
		return nil, err
	}
	pending, err := s.pendingOf(ctx, subject, agent)
	if err != nil {
		return nil, err
	}
	req := filter.Request{Subject: subject, Agent: agent, Context: policy.Context{Time: s.cfg.Now(), IP: c.ClientAddr}, Approved: approved}
	// The identity asked about (a user's agent) may be revoked although the
	// caller is not: then it reads nothing.
	_, refused := s.checkRevoked(Identity{Subject: subject, Agent: agent, TokenID: id.TokenID, PriorActors: id.PriorActors})
	for _, name := range p.Set().Names {
		ca := s.collectionAccess(p, name, req, pending)
		if refused != nil {
			ca.Readable, ca.Reason = false, refused.Error()
		}
		out.Collections = append(out.Collections, ca)
	}
	return out, nil
}

func (s *Service) collectionAccess(p *filter.Policy, name string, req filter.Request, pending map[approval.Target]approval.Approval) CollectionAccess {
	ca := CollectionAccess{Collection: name, Rules: []string{}, Masked: []string{}}
	frag, err := p.Fragment(name, req)
	if err != nil {
		ca.Reason = err.Error()
		if fe := (*filter.Error)(nil); errors.As(err, &fe) {
			ca.Reason = fe.Msg
		}
		return ca
	}
	ca.Readable, ca.Reason = frag.Outcome != filter.AlwaysDenied, frag.Reason
	ca.Rules, ca.Masked = ruleNames(frag), frag.Masked()
	if req.Agent == "" {
		return ca
	}
	g := p.Set().Resources[name].Agents[req.Agent]
	ca.Grant = &GrantView{Allow: names(g.Allow), Deny: names(g.Deny)}
	for _, a := range g.Approval {
		st := ApprovalState{Rule: a.Name, TTL: a.TTL.String(), State: "none"}
		t := approval.Target{Tenant: req.Subject.Tenant, Subject: req.Subject.ID, Agent: req.Agent, Resource: name, Rule: a.Name}
		if in, ok := s.approvalInForce(t); ok {
			until := in.ValidUntil
			st.State, st.Until = "approved", &until
		}
		if r, ok := pending[t]; ok && st.State == "none" {
			st.State, st.RequestID = "pending", r.ID
		}
		ca.Approvals = append(ca.Approvals, st)
	}
	return ca
}

// ruleNames are a fragment's rules in play, as a decision lists them.
func ruleNames(frag *filter.Fragment) []string {
	out := []string{}
	for _, r := range frag.Rules() {
		if r.Active {
			name := r.Effect + ":" + r.Name
			if r.Agent != "" {
				name = "agent " + r.Agent + " " + name
			}
			out = append(out, name)
		}
	}
	return out
}

func names(rs []*policy.Rule) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// pendingOf are the agent's pending, unexpired requests for its user.
func (s *Service) pendingOf(ctx context.Context, subject *policy.Subject, agent string) (map[approval.Target]approval.Approval, error) {
	out := map[approval.Target]approval.Approval{}
	if agent == "" {
		return out, nil
	}
	list, err := approval.NewStore(s.cfg.Pool).OfSubject(ctx, subject.Tenant, subject.ID)
	if err != nil {
		return nil, s.approvalError(err)
	}
	now := s.cfg.Now()
	for _, a := range list {
		t := approval.Target{Tenant: a.Tenant, Subject: a.Subject, Agent: a.Agent, Resource: a.Resource, Rule: a.Rule}
		if a.Agent == agent && a.StatusAt(now) == approval.StatusPending {
			out[t] = a
		}
	}
	return out, nil
}

func (s *Service) revocationsOf(id Identity) ([]RevocationView, error) {
	out := []RevocationView{}
	if s.cfg.Revocations == nil {
		return out, nil
	}
	rs, err := s.cfg.Revocations.Concerning(callerOf(id))
	if err != nil {
		return nil, &retriever.Error{Code: CodeRevocationStale, Msg: "the revocation state is not current; retry later", Err: err}
	}
	for _, r := range rs {
		v := RevocationView{ID: r.ID, Kind: string(r.Kind), Agent: r.Agent, Since: r.CreatedAt}
		if !r.EndsAt.IsZero() {
			ends := r.EndsAt
			v.Ends = &ends
		}
		out = append(out, v)
	}
	return out, nil
}
