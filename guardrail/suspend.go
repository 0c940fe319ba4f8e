package guardrail

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ragfence/ragfence/revocation"
	"github.com/ragfence/ragfence/sqlc/store"
)

// suspendLockClass is the first key of the advisory locks that serialise
// instances suspending the same key ("grds").
const suspendLockClass int32 = 0x67726473

// RevokedByPrefix starts the By of every revocation a guardrail makes:
// "guardrail:<name>".
const RevokedByPrefix = "guardrail:"

// Suspension is the revocation a Suspend verdict makes, in the
// background: of the agent for its user, or of the user when no agent
// acts. Every instance, and every request of the window, shares one
// revocation: an instance that finds one in force by the same guardrail
// uses it.
type Suspension struct {
	// Guardrail and Request say what is revoked, and by whom.
	Guardrail string
	Request   revocation.Request

	done chan struct{}
	id   int64
	err  error
}

// Wait waits until the revocation is in the database and returns its id,
// or returns ctx's error, or CodeClosed when the engine closed first.
func (s *Suspension) Wait(ctx context.Context) (int64, error) {
	select {
	case <-s.done:
		return s.id, s.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// ID returns the revocation's id once it is made.
func (s *Suspension) ID() (int64, bool) {
	select {
	case <-s.done:
		return s.id, s.err == nil
	default:
		return 0, false
	}
}

// suspend makes c's suspension under r and queues its revocation; it is
// called under c's lock, so it never waits.
func (e *Engine) suspend(c *counter, r *rule) *Suspension {
	req := revocation.Request{
		Tenant: c.key.tenant, Subject: c.key.subject, Agent: c.key.agent, By: RevokedByPrefix + r.g.Name,
		For:    r.g.SuspendFor,
		Reason: fmt.Sprintf("guardrail %s: budget spent in the %s window from %s", r.g.Name, formatWindow(r.g.Window), windowStart(c.window, c.key.windowSec).Format(time.RFC3339)),
	}
	s := &Suspension{Guardrail: r.g.Name, Request: req, done: make(chan struct{})}
	e.jobs.add(s)
	return s
}

// suspender makes suspensions one at a time, retrying with backoff.
type suspender struct {
	e     *Engine
	mu    sync.Mutex
	queue []*suspendJob
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

type suspendJob struct {
	s        *Suspension
	attempts int
	after    time.Time
}

func newSuspender(e *Engine) *suspender {
	j := &suspender{e: e, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go j.run()
	return j
}

func (j *suspender) add(s *Suspension) {
	j.mu.Lock()
	j.queue = append(j.queue, &suspendJob{s: s})
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *suspender) close() {
	close(j.stop)
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, job := range j.queue {
		job.s.err = &Error{Code: CodeClosed, Msg: "the engine closed before the suspension was made"}
		close(job.s.done)
	}
	j.queue = nil
}

func (j *suspender) run() {
	defer close(j.done)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-j.wake:
		case <-retry.C:
		}
		if next := j.work(); !next.IsZero() {
			retry.Reset(time.Until(next))
		}
	}
}

// work makes the suspensions that are due and returns when the next
// retry is, or zero.
func (j *suspender) work() time.Time {
	var next time.Time
	for {
		job := j.due(&next)
		if job == nil {
			return next
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, err := j.e.makeSuspension(ctx, job.s.Request)
		cancel()
		if err == nil {
			job.s.id = id
			close(job.s.done)
			continue
		}
		j.e.log.Warn("guardrail: suspension failed; retrying", "guardrail", job.s.Guardrail, "tenant", job.s.Request.Tenant, "err", err)
		job.attempts++
		job.after = time.Now().Add(min(time.Second<<min(job.attempts-1, 5), 30*time.Second))
		j.mu.Lock()
		j.queue = append(j.queue, job)
		j.mu.Unlock()
	}
}

// due takes the first job whose time has come, noting in next the
// earliest of those that have not.
func (j *suspender) due(next *time.Time) *suspendJob {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now()
	for i, job := range j.queue {
		if !job.after.After(now) {
			j.queue = append(j.queue[:i], j.queue[i+1:]...)
			return job
		}
		if next.IsZero() || job.after.Before(*next) {
			*next = job.after
		}
	}
	return nil
}

// makeSuspension returns the revocation in force that the guardrail made
// for the key, making it when there is none. An advisory lock held until
// the revocation is committed makes instances take turns, so they make
// one between them.
func (e *Engine) makeSuspension(ctx context.Context, req revocation.Request) (int64, error) {
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("guardrail: suspend: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	q := store.New(tx)
	// Length-prefixed, so no two keys share a text (text cannot hold NUL).
	// A hash collision only makes two keys take turns.
	key := fmt.Sprintf("%d:%s%d:%s%d:%s%d:%s", len(req.By), req.By, len(req.Tenant), req.Tenant, len(req.Subject), req.Subject, len(req.Agent), req.Agent)
	if err := q.LockGuardrailSuspension(ctx, store.LockGuardrailSuspensionParams{Class: suspendLockClass, Key: key}); err != nil {
		return 0, fmt.Errorf("guardrail: suspend: lock: %w", err)
	}
	p := store.GuardrailSuspensionInForceParams{
		Tenant: req.Tenant, CreatedBy: req.By, Kind: string(revocation.KindSubject),
		Subject: pgtype.Text{String: req.Subject, Valid: true},
	}
	if req.Agent != "" {
		p.Kind, p.Agent = string(revocation.KindAgent), pgtype.Text{String: req.Agent, Valid: true}
	}
	id, err := q.GuardrailSuspensionInForce(ctx, p)
	if errors.Is(err, pgx.ErrNoRows) {
		var rev revocation.Revocation
		rev, err = e.revoker.Revoke(ctx, req)
		id = rev.ID
	}
	if err != nil {
		return 0, fmt.Errorf("guardrail: suspend: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("guardrail: suspend: %w", err)
	}
	return id, nil
}
