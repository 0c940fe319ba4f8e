package service

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/embed"
)

// Call is one retrieval as a front door received it.
type Call struct {
	// Authorization is the caller's credential, as an Authorization header
	// carries it ("Bearer <token>").
	Authorization string
	// Authenticator, when set, verifies Authorization instead of
	// Config.Auth: a front door whose tokens are minted for it (an MCP
	// server's audience) brings its own.
	Authenticator Authenticator
	// Query is what the caller asks, for a front door that decoded it
	// already; ignored when Decode is set.
	Query retriever.Query
	// Decode, when set, reads the query instead. It runs once the caller is
	// authenticated, so that a front door never parses an anonymous
	// caller's body, and its error (a *retriever.Error with the
	// transport's own code, say) refuses the call like any other: answered,
	// audited and logged.
	Decode func() (retriever.Query, error)
	// Encode, when set, renders the answer before the decision is recorded,
	// so that an answer that cannot be sent is recorded as the error it
	// becomes, never as allowed.
	Encode func(*Response) error
	// ClientAddr is the caller's address: the policy's context.ip and the
	// audit record's; the zero Addr when unknown.
	ClientAddr netip.Addr
	// Channel names the front door ("http", "mcp"), kept in the audit
	// record's detail and the log line; Tool, the front door's own name for
	// the operation (an MCP tool's), likewise when set.
	Channel, Tool string
}

// Response is a retrieval's answer.
type Response struct {
	Results  []retriever.Result `json:"results"`
	Decision Decision           `json:"decision"`
}

// Decision says how the policy decided a call.
type Decision struct {
	ID            string `json:"id"`
	PolicyVersion string `json:"policy_version"`
	// Rules are the rules in play: the active allow and deny rules.
	Rules  []string `json:"rules"`
	Masked []string `json:"masked"`
	Agent  string   `json:"agent,omitempty"`
	// ApprovalRequired names the agent's approval rules whose rows were
	// withheld for lack of its user's approval (POST /v1/approvals asks).
	ApprovalRequired []string `json:"approval_required,omitempty"`
	// CappedBy names the guardrail that lowered k for this call.
	CappedBy string `json:"capped_by,omitempty"`
}

// Error is a refused or failed call and the decision id it was audited
// under. Err is a *retriever.Error (retriever.CodeOf reads its code).
type Error struct {
	DecisionID string
	Err        error
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the *retriever.Error.
func (e *Error) Unwrap() error { return e.Err }

// DecisionID returns the decision id of the *Error in err's chain, or "".
func DecisionID(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.DecisionID
	}
	return ""
}

// Outcomes recorded in the audit log and metrics.
const (
	outcomeAllowed         = "allowed"
	outcomeDenied          = "denied"
	outcomeUnauthenticated = "unauthenticated"
	outcomeInvalid         = "invalid"
	outcomeError           = "error"
)

// exchange is one call in flight: what the audit record needs.
type exchange struct {
	start    time.Time // the decision's time, by Config.Now
	began    time.Time // the wall clock's, for the latency: Now may be fixed
	id       string
	call     *Call
	identity Identity
	resource string
	version  string
	rules    []string
	rowIDs   []string
	outcome  string
	detail   map[string]any
}

// Retrieve answers one call: the chunks nearest its query that its caller
// may see, and the decision. On failure the error is an *Error, whose
// DecisionID names the audit record and whose cause is a *retriever.Error
// with a stable code. Every call, answered or refused, is audited first:
// when the record cannot be written the call fails as unavailable.
func (s *Service) Retrieve(ctx context.Context, call Call) (*Response, error) {
	x := &exchange{start: s.cfg.Now(), began: time.Now(), id: audit.NewDecisionID(), call: &call, outcome: outcomeError}
	bctx, cancel := s.bounded(ctx)
	resp, err := s.serve(bctx, x)
	cancel()
	if err == nil && call.Encode != nil {
		err = encode(call.Encode, resp)
	}
	if err != nil {
		x.outcome = outcomeOf(err, x.outcome)
		if x.detail == nil {
			x.detail = map[string]any{}
		}
		x.detail["error"] = string(codeOf(err))
	}
	if aerr := s.recordDecision(ctx, x); aerr != nil {
		// No record, no answer: a decision that cannot be audited is refused.
		err = aerr
		resp = nil
	}
	s.metrics.latency.WithLabelValues(x.outcome).Observe(time.Since(x.began).Seconds())
	s.metrics.decisions.WithLabelValues(x.outcome).Inc()
	s.logCall(x, err, "retrieve", len(x.rowIDs))
	if err != nil {
		return nil, &Error{DecisionID: x.id, Err: err}
	}
	s.metrics.rows.Observe(float64(len(resp.Results)))
	return resp, nil
}

// encode runs the front door's Encode; a failure is ours, not the caller's.
func encode(enc func(*Response) error, resp *Response) error {
	err := enc(resp)
	if err == nil || retriever.CodeOf(err) != "" {
		return err
	}
	return &retriever.Error{Code: retriever.CodeInternal, Msg: "the answer could not be encoded; the server log has the details", Err: err}
}

// serve authenticates, validates and searches.
func (s *Service) serve(ctx context.Context, x *exchange) (*Response, error) {
	id, err := s.authenticator(x.call.Authenticator).Authenticate(ctx, x.call.Authorization)
	if err != nil {
		x.outcome = outcomeUnauthenticated
		return nil, &retriever.Error{Code: retriever.CodeUnauthenticated, Msg: err.Error(), Err: err}
	}
	x.identity = id
	if r, err := s.checkRevoked(id); err != nil {
		x.outcome = outcomeDenied
		if r != nil {
			x.detail = revokedDetail(r)
		}
		return nil, err
	}
	x.outcome = outcomeInvalid
	q, err := s.query(ctx, x.call)
	if err != nil {
		return nil, err
	}
	p := s.cfg.Policies.Load()
	x.resource, x.version = q.Resource, p.Version()
	// The query before the claims, and after the embedder too: a model can
	// answer a zero vector.
	if err := s.searcher.Check(ctx, s.searchPool(), p, q); err != nil {
		return nil, err
	}
	subject, err := p.Set().CheckSubject(id.Subject)
	if err != nil {
		return nil, &retriever.Error{Code: retriever.CodeInvalidSubject, Msg: "the token's claims do not fit the policy: " + err.Error(), Err: err}
	}
	approved, err := s.approvedFor(id)
	if err != nil {
		return nil, err
	}
	req := filter.Request{Subject: subject, Agent: id.Agent, Context: policy.Context{Time: x.start, IP: x.call.ClientAddr}, Approved: approved}
	verdict, err := s.guard(ctx, x, id, subject, q.Resource)
	if err != nil {
		x.outcome = outcomeDenied
		return nil, err
	}
	if verdict.Action == guardrail.Cap {
		q.K = min(q.K, verdict.CapK)
	}
	x.outcome = outcomeError
	results, frag, err := s.searcher.Search(ctx, s.searchPool(), p, req, q)
	if err != nil {
		return nil, err
	}
	s.record(verdict, results)
	resp := s.respond(x, p, frag, results)
	if verdict.Action == guardrail.Cap {
		resp.Decision.CappedBy = verdict.Guardrail
	}
	return resp, nil
}

// query is the call's query, decoded, validated and embedded.
func (s *Service) query(ctx context.Context, call *Call) (retriever.Query, error) {
	q := call.Query
	if call.Decode != nil {
		var err error
		if q, err = call.Decode(); err != nil {
			return q, err
		}
	}
	if err := s.validate(&q); err != nil {
		return q, err
	}
	if q.Text != "" {
		var err error
		if q.Embedding, err = s.embed(ctx, q.Text); err != nil {
			return q, err
		}
	}
	return q, nil
}

func (s *Service) respond(x *exchange, p *filter.Policy, frag *filter.Fragment, results []retriever.Result) *Response {
	x.outcome = outcomeAllowed
	if frag.Outcome == filter.AlwaysDenied {
		x.outcome = outcomeDenied
	}
	d := Decision{ID: x.id, PolicyVersion: p.Version(), Masked: frag.Masked(), Agent: frag.Agent,
		ApprovalRequired: frag.ApprovalRequired()}
	d.Rules = ruleNames(frag)
	x.rules = d.Rules
	for _, r := range results {
		x.rowIDs = append(x.rowIDs, r.ID)
	}
	return &Response{Results: results, Decision: d}
}

// validate defaults and bounds k and checks what a query must carry, before
// the embedder or the database is asked anything. The vector itself (its
// dimension, finite elements, a norm) is the searcher's to check.
func (s *Service) validate(q *retriever.Query) error {
	if q.Resource == "" {
		return &retriever.Error{Code: retriever.CodeUnknownCollection, Msg: "collection is required"}
	}
	if q.K == 0 {
		q.K = s.cfg.DefaultK
	}
	if q.K < 1 || q.K > s.cfg.MaxK {
		return &retriever.Error{Code: retriever.CodeInvalidK, Msg: fmt.Sprintf("k must be between 1 and %d", s.cfg.MaxK)}
	}
	if q.MinScore != nil && (*q.MinScore < -1 || *q.MinScore > 1 || math.IsNaN(*q.MinScore)) {
		return &retriever.Error{Code: retriever.CodeInvalidMinScore, Msg: "min_score is a cosine similarity between -1 and 1"}
	}
	switch {
	case len(q.Embedding) > 0 && q.Text != "":
		return &retriever.Error{Code: retriever.CodeInvalidEmbedding, Msg: "send either embedding or query, not both"}
	case len(q.Embedding) == 0 && q.Text == "":
		return &retriever.Error{Code: retriever.CodeInvalidEmbedding, Msg: "embedding (the query vector) or query (text) is required"}
	case q.Text != "" && s.cfg.Embedder == nil:
		return &retriever.Error{Code: retriever.CodeInvalidEmbedding, Msg: "this server has no embedder configured; send embedding instead of query"}
	}
	return nil
}

// embed turns query text into a vector with the configured embedder.
func (s *Service) embed(ctx context.Context, text string) ([]float32, error) {
	v, err := s.cfg.Embedder.Embed(ctx, text)
	switch {
	case err == nil:
		return v, nil
	case embed.IsClientError(err):
		return nil, &retriever.Error{Code: retriever.CodeInvalidQuery, Msg: err.Error(), Err: err}
	default:
		return nil, &retriever.Error{Code: retriever.CodeEmbedderFailed, Msg: "the embedding service failed: " + err.Error(), Err: err}
	}
}
