package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ragfence/ragfence/internal/pglisten"
)

// WatchConfig configures a Watcher (as revocation.WatchConfig).
type WatchConfig struct {
	ConnConfig   *pgx.ConnConfig
	MaxStaleness time.Duration // 0: 5 s
	Heartbeat    time.Duration // 0: a quarter of MaxStaleness, at most 1 s
	// Now is the clock approvals' windows are compared with; by default
	// the database's (windows are reckoned on it).
	Now    func() time.Time
	Logger *slog.Logger
}

// Watcher keeps the approvals in force in memory, current within
// MaxStaleness, so a search binds its approval state without a database
// read. An approval stops applying at its ValidUntil, on the Watcher's
// clock, with no notification needed.
type Watcher struct {
	now  func() time.Time
	l    *pglisten.Listener
	mu   sync.RWMutex
	byID map[string]Approval
	by   map[Target][]string // approval ids
}

// Watch loads the approvals in force and keeps them current until ctx
// ends or Close.
func Watch(ctx context.Context, cfg WatchConfig) (*Watcher, error) {
	if cfg.ConnConfig == nil {
		return nil, errors.New("approval: WatchConfig needs ConnConfig")
	}
	w := &Watcher{now: cfg.Now, byID: map[string]Approval{}, by: map[Target][]string{}}
	l, err := pglisten.Start(ctx, pglisten.Config{
		ConnConfig: cfg.ConnConfig, Channel: Channel, Reload: w.reload, Apply: w.apply,
		MaxStaleness: cfg.MaxStaleness, Heartbeat: cfg.Heartbeat, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	w.l = l
	if w.now == nil {
		w.now = l.Now
	}
	return w, nil
}

// Now is the clock the Watcher compares windows with (the database's,
// unless WatchConfig.Now).
func (w *Watcher) Now() time.Time { return w.now() }

// Close stops watching; lookups fail closed from then on.
func (w *Watcher) Close() { w.l.Close() }

// Fresh is nil while the state is confirmed current, else a CodeStale error.
func (w *Watcher) Fresh() error {
	if err := w.l.Fresh(); err != nil {
		return &Error{Code: CodeStale, Msg: "the approval state is not current: " + err.Error() + "; retry later", Err: err}
	}
	return nil
}

// For returns what filter.Request.Approved takes for one caller: whether
// an approval of the rule is in force when it is asked (so a function kept
// for a session stops answering yes at the approval's end, and once the
// state goes stale). With stale state For is an error, never a guess.
func (w *Watcher) For(tenant, subject, agent string) (func(resource, rule string) bool, error) {
	if err := w.Fresh(); err != nil {
		return nil, err
	}
	return func(resource, rule string) bool {
		if w.Fresh() != nil {
			return false
		}
		_, ok := w.InForce(Target{tenant, subject, agent, resource, rule}, w.now())
		return ok
	}, nil
}

// InForce returns the approval of t in force at now, the one lasting
// longest if several are.
func (w *Watcher) InForce(t Target, now time.Time) (Approval, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var best Approval
	found := false
	for _, id := range w.by[t] {
		a := w.byID[id]
		if a.InForce(now) && (!found || a.ValidUntil.After(best.ValidUntil)) {
			best, found = a, true
		}
	}
	return best, found
}

func (w *Watcher) reload(ctx context.Context, conn *pgx.Conn) error {
	all, err := NewStore(conn).inForce(ctx)
	if err != nil {
		return err
	}
	byID, by := make(map[string]Approval, len(all)), make(map[Target][]string, len(all))
	for _, a := range all {
		byID[a.ID] = a
		t := a.target()
		by[t] = append(by[t], a.ID)
	}
	w.mu.Lock()
	w.byID, w.by = byID, by
	w.mu.Unlock()
	return nil
}

func (w *Watcher) apply(ctx context.Context, conn *pgx.Conn, payload string) error {
	var id pgtype.UUID
	if err := id.Scan(payload); err != nil {
		return w.reload(ctx, conn)
	}
	a, ok, err := NewStore(conn).byID(ctx, id)
	if err != nil {
		return fmt.Errorf("approval: read %s: %w", payload, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(payload)
	if ok && a.Status == StatusApproved {
		w.byID[a.ID] = a
		t := a.target()
		w.by[t] = append(w.by[t], a.ID)
	}
	return nil
}

func (w *Watcher) removeLocked(id string) {
	old, ok := w.byID[id]
	if !ok {
		return
	}
	delete(w.byID, id)
	t := old.target()
	ids := w.by[t]
	for i, x := range ids {
		if x == id {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(w.by, t)
		return
	}
	w.by[t] = ids
}

func (a Approval) target() Target { return Target{a.Tenant, a.Subject, a.Agent, a.Resource, a.Rule} }
