package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ragfence/ragfence/sqlc/store"
)

// Channel announces every change of ragfence.approvals, with the row's id.
const Channel = "ragfence_approvals"

// DefaultPendingFor is how long a request waits for its user's decision.
const DefaultPendingFor = 15 * time.Minute

// Store asks for, decides and grants approvals in the database.
type Store struct{ q *store.Queries }

// NewStore returns a Store on db (a pool, connection or transaction).
func NewStore(db store.DBTX) *Store { return &Store{q: store.New(db)} }

// Target is what an approval lifts: one approval rule of a resource, for
// one agent acting for one user of a tenant.
type Target struct {
	Tenant, Subject, Agent, Resource, Rule string
}

func (t Target) check() error {
	for _, v := range []string{t.Tenant, t.Subject, t.Agent, t.Resource, t.Rule} {
		if v == "" {
			return invalid("an approval names a tenant, a subject, an agent, a collection and a rule")
		}
		if v != strings.TrimSpace(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return invalid(fmt.Sprintf("%q has leading or trailing spaces or control characters: it would match nobody", v))
		}
	}
	return nil
}

// Request records an agent's pending request for t's rows; an approval of
// it lasts ttl (the rule's), and it expires undecided after pendingFor.
func (s *Store) Request(ctx context.Context, t Target, reason string, ttl, pendingFor time.Duration) (Approval, error) {
	if err := t.check(); err != nil {
		return Approval{}, err
	}
	if ttl <= 0 || pendingFor <= 0 {
		return Approval{}, invalid("an approval request needs a positive ttl and pending time")
	}
	row, err := s.q.RequestApproval(ctx, store.RequestApprovalParams{
		Tenant: t.Tenant, Subject: t.Subject, Agent: t.Agent, Resource: t.Resource, Rule: t.Rule,
		Reason: reason, RequestedBy: t.Agent, PendingSeconds: pendingFor.Seconds(),
		TtlSeconds: pgtype.Float8{Float64: ttl.Seconds(), Valid: true},
	})
	if err != nil {
		return Approval{}, fmt.Errorf("approval: request: %w", err)
	}
	return fromRow(row), nil
}

// Grant approves t ahead of time for [from, until), without a request: an
// operator's permission for a planned task. by is the operator.
func (s *Store) Grant(ctx context.Context, t Target, from, until time.Time, by, reason string) (Approval, error) {
	if err := t.check(); err != nil {
		return Approval{}, err
	}
	if by == "" || !until.After(from) {
		return Approval{}, invalid("a grant needs who grants it and a window whose end is after its start")
	}
	row, err := s.q.GrantApproval(ctx, store.GrantApprovalParams{
		Tenant: t.Tenant, Subject: t.Subject, Agent: t.Agent, Resource: t.Resource, Rule: t.Rule,
		Reason: reason, RequestedBy: by,
		ValidFrom: pgtype.Timestamptz{Time: from, Valid: true}, ValidUntil: pgtype.Timestamptz{Time: until, Valid: true},
	})
	if err != nil {
		return Approval{}, fmt.Errorf("approval: grant: %w", err)
	}
	return fromRow(row), nil
}

// Decider is who decides a request: Tenant and Subject, the request's own
// user (the HTTP API), or both empty for an operator (the CLI).
type Decider struct {
	Tenant, Subject string
	// By is recorded as who decided.
	By string
	// MaxTTL, when set, shortens the approval to it: the rule's ttl as the
	// policy says it now, which may be shorter than when it was asked.
	MaxTTL time.Duration
}

// Decide approves (approve true; valid from now for the request's ttl) or
// denies the pending, unexpired request id. A request that is not
// pending, expired, unknown, or not d's own is CodeNotFound alike, so
// nobody learns of another user's requests.
func (s *Store) Decide(ctx context.Context, id string, approve bool, d Decider) (Approval, error) {
	var uid pgtype.UUID
	if err := uid.Scan(id); err != nil {
		return Approval{}, notFound(id)
	}
	if d.By == "" {
		return Approval{}, invalid("a decision needs who makes it")
	}
	status := StatusDenied
	if approve {
		status = StatusApproved
	}
	p := store.DecideApprovalParams{
		Status: string(status), DecidedBy: pgtype.Text{String: d.By, Valid: true}, ID: uid,
		Tenant: text(d.Tenant), Subject: text(d.Subject),
	}
	if d.MaxTTL > 0 {
		p.MaxTtlSeconds = pgtype.Float8{Float64: d.MaxTTL.Seconds(), Valid: true}
	}
	row, err := s.q.DecideApproval(ctx, p)
	if errors.Is(err, pgx.ErrNoRows) {
		return Approval{}, notFound(id)
	}
	if err != nil {
		return Approval{}, fmt.Errorf("approval: decide: %w", err)
	}
	return fromRow(row), nil
}

// OfSubject lists a user's requests and approvals, newest first.
func (s *Store) OfSubject(ctx context.Context, tenant, subject string) ([]Approval, error) {
	rows, err := s.q.ApprovalsOfSubject(ctx, store.ApprovalsOfSubjectParams{Tenant: tenant, Subject: subject})
	if err != nil {
		return nil, fmt.Errorf("approval: list: %w", err)
	}
	return fromRows(rows), nil
}

// inForce lists every approval whose window has not ended.
func (s *Store) inForce(ctx context.Context) ([]Approval, error) {
	rows, err := s.q.ApprovalsInForce(ctx)
	if err != nil {
		return nil, err
	}
	return fromRows(rows), nil
}

// Get reads one approval; ok is false when there is none with that id.
func (s *Store) Get(ctx context.Context, id string) (a Approval, ok bool, err error) {
	var uid pgtype.UUID
	if uid.Scan(id) != nil {
		return Approval{}, false, nil
	}
	return s.byID(ctx, uid)
}

func (s *Store) byID(ctx context.Context, id pgtype.UUID) (Approval, bool, error) {
	row, err := s.q.ApprovalByID(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Approval{}, false, nil
	}
	return fromRow(row), err == nil, err
}

func notFound(id string) error {
	return &Error{Code: CodeNotFound, Msg: fmt.Sprintf("no pending approval request %q of yours", id)}
}

func fromRows(rows []store.RagfenceApproval) []Approval {
	out := make([]Approval, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out
}

func fromRow(r store.RagfenceApproval) Approval {
	a := Approval{
		ID: r.ID.String(), Tenant: r.Tenant, Subject: r.Subject, Agent: r.Agent, Resource: r.Resource, Rule: r.Rule,
		Reason: r.Reason, Status: Status(r.Status), RequestedBy: r.RequestedBy, RequestedAt: r.RequestedAt.Time,
		RequestExpiresAt: r.RequestExpiresAt.Time, DecidedAt: r.DecidedAt.Time, DecidedBy: r.DecidedBy.String,
		ValidFrom: r.ValidFrom.Time, ValidUntil: r.ValidUntil.Time,
	}
	if r.TtlSeconds.Valid {
		a.TTL = time.Duration(r.TtlSeconds.Float64 * float64(time.Second))
	}
	return a
}

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// InForceFor is what filter.Request.Approved takes for one caller, read
// from the database now: for one-off programs (ragfence query); a server
// keeps a Watcher instead.
func (s *Store) InForceFor(ctx context.Context, tenant, subject, agent string) (func(resource, rule string) bool, error) {
	rows, err := s.q.ApprovalsInForceFor(ctx, store.ApprovalsInForceForParams{Tenant: tenant, Subject: subject, Agent: agent})
	if err != nil {
		return nil, fmt.Errorf("approval: read: %w", err)
	}
	lifted := map[[2]string]bool{}
	for _, r := range rows {
		lifted[[2]string{r.Resource, r.Rule}] = true
	}
	return func(resource, rule string) bool { return lifted[[2]string{resource, rule}] }, nil
}

// Expired claims the requests and approvals that expired since the last
// call, on any server, and returns them, each once across every server
// sweeping the same database: for their audit records.
func (s *Store) Expired(ctx context.Context) ([]Approval, error) {
	rows, err := s.q.ClaimExpiredApprovals(ctx)
	if err != nil {
		return nil, fmt.Errorf("approval: expired: %w", err)
	}
	return fromRows(rows), nil
}
