package revocation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of WatchConfig.
const (
	// DefaultMaxStaleness is how long a Watcher serves without confirming
	// its state is current before it refuses every check.
	DefaultMaxStaleness = 5 * time.Second
	// DefaultHeartbeat is how often an idle Watcher confirms that its
	// notification connection is alive.
	DefaultHeartbeat = time.Second
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
	// Heartbeat is how often an idle connection is pinged; 0 means
	// DefaultHeartbeat. Keep it well below MaxStaleness.
	Heartbeat time.Duration
	// Now is the clock revocations' ends are compared with; time.Now by default.
	Now    func() time.Time
	Logger *slog.Logger
}

// Watcher keeps the revocations in force in memory, current to within
// MaxStaleness: it listens on Channel, reads each changed row, and reloads
// the whole set whenever it (re)connects, so no change made while it was
// away is missed. Check reads only memory.
type Watcher struct {
	cfg       WatchConfig
	set       *set
	confirmed atomic.Int64 // unix nanoseconds of the last confirmation; 0: never
	cancel    context.CancelFunc
	done      chan struct{}
	connMu    sync.Mutex
	connPID   uint32
}

// Watch connects, loads the revocations in force and keeps them current
// until ctx ends or Close. It returns once the first load succeeded, or
// with the error that kept it from succeeding.
func Watch(ctx context.Context, cfg WatchConfig) (*Watcher, error) {
	if cfg.ConnConfig == nil {
		return nil, errors.New("revocation: WatchConfig needs ConnConfig")
	}
	cfg.MaxStaleness = cmp.Or(cfg.MaxStaleness, DefaultMaxStaleness)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, DefaultHeartbeat)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Watcher{cfg: cfg, set: newSet(), done: make(chan struct{})}
	conn, err := w.connect(ctx)
	if err != nil {
		return nil, err
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go w.run(ctx, conn)
	return w, nil
}

// Close stops watching; Check fails closed from then on.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

// Check returns nil if nothing refuses c: a *Error with the refusal's code
// (CodeTokenRevoked, CodeSubjectRevoked, CodeAgentRevoked) and the
// revocation, or with CodeStale when the state is not known to be current.
func (w *Watcher) Check(c Caller) error {
	if err := w.fresh(); err != nil {
		return err
	}
	if r, ok := w.set.match(c, w.cfg.Now()); ok {
		return refusal(r)
	}
	return nil
}

// Concerning lists the revocations in force that touch c's token, subject
// or agent, or CodeStale.
func (w *Watcher) Concerning(c Caller) ([]Revocation, error) {
	if err := w.fresh(); err != nil {
		return nil, err
	}
	return w.set.concerning(c, w.cfg.Now()), nil
}

// Fresh is nil while the state is confirmed current, else a CodeStale error.
func (w *Watcher) Fresh() error { return w.fresh() }

func (w *Watcher) fresh() error {
	at := w.confirmed.Load()
	if at == 0 {
		return &Error{Code: CodeStale, Msg: "the revocation state is not loaded; retry later"}
	}
	// time.Now here, not cfg.Now: staleness is about real time passing.
	if age := time.Since(time.Unix(0, at)); age > w.cfg.MaxStaleness {
		return &Error{Code: CodeStale, Msg: fmt.Sprintf(
			"the revocation state could not be confirmed for %s (bound %s); retry later", age.Round(time.Millisecond), w.cfg.MaxStaleness)}
	}
	return nil
}

func (w *Watcher) confirm() { w.confirmed.Store(time.Now().UnixNano()) }

// ConnPID is the backend process id of the notification connection (0
// while disconnected), for operators and tests that need to find it.
func (w *Watcher) ConnPID() uint32 {
	w.connMu.Lock()
	defer w.connMu.Unlock()
	return w.connPID
}

func (w *Watcher) setPID(pid uint32) {
	w.connMu.Lock()
	w.connPID = pid
	w.connMu.Unlock()
}

// connect opens the connection, LISTENs, then loads the whole set: in
// that order, so a change committed between the two is both loaded and
// heard, never neither.
func (w *Watcher) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.MaxStaleness)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, w.cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("revocation: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("revocation: listen: %w", err)
	}
	all, err := NewStore(conn).InForce(ctx, "")
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	w.set.replace(all)
	w.setPID(conn.PgConn().PID())
	w.confirm()
	return conn, nil
}

// run serves conn until it fails, then reconnects with backoff, until ctx ends.
func (w *Watcher) run(ctx context.Context, conn *pgx.Conn) {
	defer close(w.done)
	defer func() { w.confirmed.Store(0) }()
	backoff := 50 * time.Millisecond
	for {
		if conn != nil {
			err := w.listen(ctx, conn)
			conn.Close(context.Background())
			w.setPID(0)
			if ctx.Err() != nil {
				return
			}
			w.cfg.Logger.Warn("revocation notifications lost; reconnecting", "error", err)
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		var err error
		if conn, err = w.connect(ctx); err != nil {
			w.cfg.Logger.Warn("revocation state: cannot reconnect", "error", err, "retry_in", backoff)
			backoff = min(backoff*2, w.cfg.Heartbeat)
			continue
		}
		w.cfg.Logger.Info("revocation state reloaded after reconnecting", "in_force", w.set.size())
	}
}

// listen applies notifications as they come; when none comes for a
// heartbeat it pings, and each success confirms the state current.
func (w *Watcher) listen(ctx context.Context, conn *pgx.Conn) error {
	q := NewStore(conn)
	for {
		wctx, cancel := context.WithTimeout(ctx, w.cfg.Heartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if err := w.apply(ctx, q, n.Payload); err != nil {
				return err
			}
			if err := w.drain(ctx, q, conn); err != nil {
				return err
			}
			w.confirm()
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, w.cfg.Heartbeat)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("revocation: heartbeat: %w", err)
			}
			// What the ping's answer passed on its way is buffered: apply
			// it before confirming.
			if err := w.drain(ctx, q, conn); err != nil {
				return err
			}
			w.confirm()
		default:
			return err
		}
	}
}

// apply reads the row a notification names and updates the set. The
// caller confirms, once nothing is left buffered.
func (w *Watcher) apply(ctx context.Context, q *Store, payload string) error {
	id, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		// Not ours to interpret; reload rather than guess.
		all, err := q.InForce(ctx, "")
		if err != nil {
			return err
		}
		w.set.replace(all)
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Heartbeat)
	defer cancel()
	r, ok, err := q.byID(rctx, id)
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

// drain applies the notifications pgx buffered while it read other
// messages; a done context makes WaitForNotification return only those.
func (w *Watcher) drain(ctx context.Context, q *Store, conn *pgx.Conn) error {
	done, cancel := context.WithCancel(ctx)
	cancel()
	for {
		n, err := conn.WaitForNotification(done)
		if err != nil || n == nil {
			return nil
		}
		if err := w.apply(ctx, q, n.Payload); err != nil {
			return err
		}
	}
}
