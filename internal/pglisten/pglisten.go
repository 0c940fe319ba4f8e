// Package pglisten keeps state in memory current with a table through
// LISTEN/NOTIFY, and knows how current it is: the mechanism behind
// revocations and approvals, which every server must see within a second
// and must not serve on when it cannot confirm them.
//
// A Listener holds one connection outside any pool. On every (re)connect it
// LISTENs first and then reloads the whole state, so a change committed
// between the two is both loaded and heard, never neither; then it applies
// each notification as it comes, and pings when none comes for a
// heartbeat. Every success confirms the state; Fresh fails once no
// confirmation happened within the staleness bound.
package pglisten

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of Config.
const (
	DefaultMaxStaleness = 5 * time.Second
	DefaultHeartbeat    = time.Second
)

// Config configures a Listener.
type Config struct {
	ConnConfig *pgx.ConnConfig
	Channel    string
	// Reload replaces the whole state, reading it on conn.
	Reload func(ctx context.Context, conn *pgx.Conn) error
	// Apply updates the state for one notification's payload; it may read
	// on conn.
	Apply        func(ctx context.Context, conn *pgx.Conn, payload string) error
	MaxStaleness time.Duration // 0: DefaultMaxStaleness
	// Heartbeat is how often an idle connection is checked; 0 means a
	// quarter of MaxStaleness, at most DefaultHeartbeat, so that a healthy
	// connection is confirmed well within the bound. It must be below
	// MaxStaleness.
	Heartbeat time.Duration
	Logger    *slog.Logger
}

// Listener keeps one state current; see the package doc.
type Listener struct {
	cfg Config
	// base anchors confirmed on the monotonic clock: a wall clock stepped
	// back must not make old state look fresh.
	base      time.Time
	confirmed atomic.Int64 // time.Since(base) of the last confirmation; 0: never
	// offset is the database's clock minus this process's, measured with
	// every confirmation: times the database wrote (now()) are compared
	// on the database's clock.
	offset atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	pid    uint32
}

// Start connects and loads the state, then keeps it current until ctx
// ends or Close. It returns once the first load succeeded, or its error.
func Start(ctx context.Context, cfg Config) (*Listener, error) {
	if cfg.ConnConfig == nil || cfg.Channel == "" || cfg.Reload == nil || cfg.Apply == nil {
		return nil, errors.New("pglisten: Config needs ConnConfig, Channel, Reload and Apply")
	}
	cfg.MaxStaleness = cmp.Or(cfg.MaxStaleness, DefaultMaxStaleness)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, min(DefaultHeartbeat, cfg.MaxStaleness/4))
	if cfg.Heartbeat <= 0 || cfg.Heartbeat >= cfg.MaxStaleness {
		return nil, fmt.Errorf("pglisten: the heartbeat (%s) must be positive and below the staleness bound (%s)", cfg.Heartbeat, cfg.MaxStaleness)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Listener{cfg: cfg, base: time.Now(), done: make(chan struct{})}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go l.run(ctx, conn)
	return l, nil
}

// Close stops listening; Fresh fails from then on.
func (l *Listener) Close() {
	l.cancel()
	<-l.done
}

// Fresh returns nil while the state was confirmed within the bound, else
// an error saying for how long it was not.
func (l *Listener) Fresh() error {
	at := l.confirmed.Load()
	if at == 0 {
		return errors.New("the state is not loaded")
	}
	if age := time.Since(l.base) - time.Duration(at); age > l.cfg.MaxStaleness {
		return fmt.Errorf("the state could not be confirmed for %s (bound %s)", age.Round(time.Millisecond), l.cfg.MaxStaleness)
	}
	return nil
}

// PID is the backend process id of the connection, 0 while disconnected.
func (l *Listener) PID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pid
}

func (l *Listener) setPID(pid uint32) {
	l.mu.Lock()
	l.pid = pid
	l.mu.Unlock()
}

func (l *Listener) confirm() { l.confirmed.Store(int64(max(time.Since(l.base), 1))) }

// Now is the database's clock, as last measured: what to compare the
// times it wrote with.
func (l *Listener) Now() time.Time { return time.Now().Add(time.Duration(l.offset.Load())) }

// measure reads the database's clock on conn and keeps its offset: the
// heartbeat, doubling as the connection's liveness check.
func (l *Listener) measure(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Heartbeat)
	defer cancel()
	before := time.Now()
	var db time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&db); err != nil {
		return err
	}
	after := time.Now()
	mid := before.Add(after.Sub(before) / 2)
	l.offset.Store(int64(db.Sub(mid)))
	return nil
}

func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.MaxStaleness)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.cfg.Channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := l.measure(ctx, conn); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("clock: %w", err)
	}
	if err := l.cfg.Reload(ctx, conn); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("load: %w", err)
	}
	l.setPID(conn.PgConn().PID())
	l.confirm()
	return conn, nil
}

// run serves conn until it fails, then reconnects with backoff, until ctx ends.
func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	defer l.confirmed.Store(0)
	backoff := 50 * time.Millisecond
	for {
		if conn != nil {
			err := l.listen(ctx, conn)
			conn.Close(context.Background())
			l.setPID(0)
			if ctx.Err() != nil {
				return
			}
			l.cfg.Logger.Warn("notifications lost; reconnecting", "channel", l.cfg.Channel, "error", err)
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		var err error
		if conn, err = l.connect(ctx); err != nil {
			l.cfg.Logger.Warn("cannot reconnect", "channel", l.cfg.Channel, "error", err, "retry_in", backoff)
			backoff = min(backoff*2, l.cfg.Heartbeat)
			continue
		}
		l.cfg.Logger.Info("state reloaded after reconnecting", "channel", l.cfg.Channel)
	}
}

// listen applies notifications as they come; when none comes for a
// heartbeat it reads the database's clock. Each success, with nothing
// left buffered, confirms.
func (l *Listener) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, l.cfg.Heartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if err := l.apply(ctx, conn, n.Payload); err != nil {
				return err
			}
		case errors.Is(err, context.DeadlineExceeded):
			if err := l.measure(ctx, conn); err != nil {
				return fmt.Errorf("heartbeat: %w", err)
			}
		default:
			return err
		}
		// What the last answer passed on its way is buffered: apply it
		// before confirming.
		if err := l.drain(ctx, conn); err != nil {
			return err
		}
		l.confirm()
	}
}

func (l *Listener) apply(ctx context.Context, conn *pgx.Conn, payload string) error {
	actx, cancel := context.WithTimeout(ctx, l.cfg.Heartbeat)
	defer cancel()
	return l.cfg.Apply(actx, conn, payload)
}

// drain applies the notifications pgx buffered while it read other
// messages; a done context makes WaitForNotification return only those.
func (l *Listener) drain(ctx context.Context, conn *pgx.Conn) error {
	done, cancel := context.WithCancel(ctx)
	cancel()
	for {
		n, err := conn.WaitForNotification(done)
		if err != nil || n == nil {
			return nil
		}
		if err := l.apply(ctx, conn, n.Payload); err != nil {
			return err
		}
	}
}
