package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/pglisten"
)

// Defaults of WatchConfig.
const (
	// DefaultMaxStaleness is how long a Watcher serves without confirming
	// its state is current before it refuses every check.
	DefaultMaxStaleness = pglisten.DefaultMaxStaleness
	// DefaultHeartbeat is how often an idle Watcher confirms that its
	// notification connection is alive.
	DefaultHeartbeat = pglisten.DefaultHeartbeat
)

// WatchConfig configures a Watcher.
type WatchConfig struct {
	// ConnConfig is the database to watch (pgx.ParseConfig). The Watcher
	// holds one connection of its own on it, outside any pool.
	ConnConfig *pgx.ConnConfig
	// MaxStaleness bounds how long the state may go unconfirmed (the
	// connection down, or silent) before Check fails closed with
	// CodeStale; 0 means DefaultMaxStaleness.
	MaxStaleness time.Duration
	// Heartbeat is how often an idle connection is checked; 0 means a
	// quarter of MaxStaleness, at most DefaultHeartbeat.
	Heartbeat time.Duration
	// Now is the clock revocations' ends are compared with; by default the
	// database's, as measured at each heartbeat (ends are reckoned on it).
	Now    func() time.Time
	Logger *slog.Logger
}

// Watcher keeps the revocations in force in memory, current to within
// MaxStaleness: it listens on Channel, reads each changed row, and reloads
// the whole set whenever it (re)connects, so no change made while it was
// away is missed. Check reads only memory.
type Watcher struct {
	set *set
	now func() time.Time
	l   *pglisten.Listener
}

// Watch connects, loads the revocations in force and keeps them current
// until ctx ends or Close. It returns once the first load succeeded, or
// with the error that kept it from succeeding.
func Watch(ctx context.Context, cfg WatchConfig) (*Watcher, error) {
	if cfg.ConnConfig == nil {
		return nil, errors.New("revocation: WatchConfig needs ConnConfig")
	}
	w := &Watcher{set: newSet(), now: cfg.Now}
	l, err := pglisten.Start(ctx, pglisten.Config{
		ConnConfig: cfg.ConnConfig, Channel: Channel, Reload: w.reload, Apply: w.apply,
		MaxStaleness: cfg.MaxStaleness, Heartbeat: cfg.Heartbeat, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	w.l = l
	if w.now == nil {
		// Ends were computed on the database's clock; compare on it.
		w.now = l.Now
	}
	return w, nil
}

// Now is the clock revocations' ends are compared with.
func (w *Watcher) Now() time.Time { return w.now() }

// Close stops watching; Check fails closed from then on.
func (w *Watcher) Close() { w.l.Close() }

// Check returns nil if nothing refuses c: a *Error with the refusal's code
// (CodeTokenRevoked, CodeSubjectRevoked, CodeAgentRevoked) and the
// revocation, or with CodeStale when the state is not known to be current.
func (w *Watcher) Check(c Caller) error {
	if err := w.Fresh(); err != nil {
		return err
	}
	if r, ok := w.set.match(c, w.now()); ok {
		return refusal(r)
	}
	return nil
}

// Concerning lists the revocations in force that touch c's token, subject
// or agent, or CodeStale.
func (w *Watcher) Concerning(c Caller) ([]Revocation, error) {
	if err := w.Fresh(); err != nil {
		return nil, err
	}
	return w.set.concerning(c, w.now()), nil
}

// Fresh is nil while the state is confirmed current, else a CodeStale error.
func (w *Watcher) Fresh() error {
	if err := w.l.Fresh(); err != nil {
		return &Error{Code: CodeStale, Msg: "the revocation state is not current: " + err.Error() + "; retry later", Err: err}
	}
	return nil
}

// ConnPID is the backend process id of the notification connection (0
// while disconnected), for operators and tests that need to find it.
func (w *Watcher) ConnPID() uint32 { return w.l.PID() }

func (w *Watcher) reload(ctx context.Context, conn *pgx.Conn) error {
	all, err := NewStore(conn).InForce(ctx, "")
	if err != nil {
		return err
	}
	w.set.replace(all)
	return nil
}

// apply reads the row a notification names and updates the set.
func (w *Watcher) apply(ctx context.Context, conn *pgx.Conn, payload string) error {
	id, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		// Not ours to interpret; reload rather than guess.
		return w.reload(ctx, conn)
	}
	r, ok, err := NewStore(conn).byID(ctx, id)
	if err != nil {
		return fmt.Errorf("revocation: read %d: %w", id, err)
	}
	if ok {
		w.set.put(r)
	} else {
		w.set.remove(id)
	}
	return nil
}
