package revocation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ragfence/ragfence/sqlc/store"
)

// Channel is the notification channel on which every change of
// ragfence.revocations is announced, with the row's id as payload (a
// trigger of the migration sends it, whoever changes the table).
const Channel = "ragfence_revocations"

// Store makes, lists and lifts revocations in the database (a pool, a
// connection or a transaction). Every change reaches each Watcher on the
// database when its transaction commits.
type Store struct{ q *store.Queries }

// NewStore returns a Store on db.
func NewStore(db store.DBTX) *Store { return &Store{q: store.New(db)} }

// Revoke records r and returns the revocation as stored.
func (s *Store) Revoke(ctx context.Context, r Request) (Revocation, error) {
	k, err := r.kind()
	if err != nil {
		return Revocation{}, err
	}
	p := store.InsertRevocationParams{
		Tenant: r.Tenant, Kind: string(k), TokenID: text(r.TokenID), Subject: text(r.Subject),
		Agent: text(r.Agent), Reason: r.Reason, CreatedBy: r.By,
	}
	if r.For > 0 {
		p.ForSeconds = pgtype.Float8{Float64: r.For.Seconds(), Valid: true}
	}
	if !r.TokenExpiresAt.IsZero() {
		p.TokenExpiresAt = pgtype.Timestamptz{Time: r.TokenExpiresAt, Valid: true}
	}
	row, err := s.q.InsertRevocation(ctx, p)
	if err != nil {
		return Revocation{}, fmt.Errorf("revocation: record: %w", err)
	}
	return fromRow(row), nil
}

// InForce lists the revocations in force, of tenant or ("") of all tenants.
func (s *Store) InForce(ctx context.Context, tenant string) ([]Revocation, error) {
	rows, err := s.q.RevocationsInForce(ctx, text(tenant))
	if err != nil {
		return nil, fmt.Errorf("revocation: list: %w", err)
	}
	out := make([]Revocation, len(rows))
	for i, row := range rows {
		out[i] = fromRow(row)
	}
	return out, nil
}

// Lift ends revocation id now; by is who lifts it. A revocation already
// lifted, or none with that id, is a CodeNotFound error.
func (s *Store) Lift(ctx context.Context, id int64, by string) (Revocation, error) {
	if by == "" {
		return Revocation{}, invalid("lifting a revocation needs who lifts it")
	}
	row, err := s.q.LiftRevocation(ctx, store.LiftRevocationParams{ID: id, LiftedBy: text(by)})
	if errors.Is(err, pgx.ErrNoRows) {
		return Revocation{}, &Error{Code: CodeNotFound, Msg: fmt.Sprintf("no revocation %d is in force (see --list)", id)}
	}
	if err != nil {
		return Revocation{}, fmt.Errorf("revocation: lift %d: %w", id, err)
	}
	return fromRow(row), nil
}

// Prune drops the token revocations whose tokens have expired (they can
// match nothing any more) and says how many.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	n, err := s.q.DeleteExpiredTokenRevocations(ctx)
	if err != nil {
		return 0, fmt.Errorf("revocation: prune: %w", err)
	}
	return n, nil
}

// byID reads one revocation; ok is false when it no longer exists.
func (s *Store) byID(ctx context.Context, id int64) (r Revocation, ok bool, err error) {
	row, err := s.q.RevocationByID(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Revocation{}, false, nil
	}
	if err != nil {
		return Revocation{}, false, err
	}
	return fromRow(row), true, nil
}

func fromRow(r store.RagfenceRevocation) Revocation {
	return Revocation{
		ID: r.ID, Tenant: r.Tenant, Kind: Kind(r.Kind), TokenID: r.TokenID.String, Subject: r.Subject.String,
		Agent: r.Agent.String, Reason: r.Reason, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.Time,
		EndsAt: timeOf(r.EndsAt), LiftedAt: timeOf(r.LiftedAt), LiftedBy: r.LiftedBy.String,
		TokenExpiresAt: timeOf(r.TokenExpiresAt),
	}
}

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

func timeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time
}
