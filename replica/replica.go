// Package replica spreads ragfence's reads over streaming replicas of the
// primary, and takes a replica out of rotation when it is down or lags.
//
// A Set checks every replica every CheckEvery: it reads the primary's WAL
// position, then the replica's replay position; a replica that has replayed
// up to the primary's position is caught up at the moment the primary's
// was read, and its lag is the time since it was last caught up. (Replay
// timestamps would make an idle primary look like a lagging replica.) A
// replica that cannot be reached, is not in recovery, or lags more than
// MaxLag takes no reads until it is caught up again; with none left, reads
// go to the primary.
//
// What lag means for correctness: a grant revoked in a relation table on
// the primary is seen by searches on a replica only once the replica has
// replayed it, up to MaxLag later. ragfence's own access state
// (revocations, approvals) is pushed from the primary to every server and
// never read from a replica; the audit log is written on the primary.
package replica

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of Config.
const (
	DefaultMaxLag     = 5 * time.Second
	DefaultCheckEvery = 500 * time.Millisecond
)

// Replica is one replica's pools: Search for searches, Query (optional)
// for statements whose rows are rendered as text.
type Replica struct {
	Name          string
	Search, Query *pgxpool.Pool
}

// Config configures a Set.
type Config struct {
	Primary      *pgxpool.Pool
	PrimaryQuery *pgxpool.Pool // the primary's text pool, when Query is used
	Replicas     []Replica
	MaxLag       time.Duration // 0: DefaultMaxLag
	CheckEvery   time.Duration // 0: DefaultCheckEvery
	Logger       *slog.Logger
}

// Status is what the last check found of a replica.
type Status struct {
	Name    string
	Healthy bool
	Lag     time.Duration
	Err     string
}

type member struct {
	r         Replica
	healthy   atomic.Bool
	mu        sync.Mutex
	caughtUp  time.Time
	lag       time.Duration
	lastError string
}

// Set is the replicas in rotation.
type Set struct {
	cfg     Config
	members []*member
	next    atomic.Uint64
	stop    context.CancelFunc
	done    chan struct{}
}

// Start checks every replica once, then keeps checking until Close.
func Start(ctx context.Context, cfg Config) *Set {
	cfg.MaxLag = cmp.Or(cfg.MaxLag, DefaultMaxLag)
	cfg.CheckEvery = cmp.Or(cfg.CheckEvery, DefaultCheckEvery)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Set{cfg: cfg, done: make(chan struct{})}
	for _, r := range cfg.Replicas {
		s.members = append(s.members, &member{r: r})
	}
	ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.checkAll(ctx)
	go s.run(ctx)
	return s
}

// Close stops checking (reads then go to the primary).
func (s *Set) Close() {
	s.stop()
	<-s.done
	for _, m := range s.members {
		m.healthy.Store(false)
	}
}

// Search is the pool a search runs on: a replica in rotation, in turn, or
// the primary.
func (s *Set) Search() *pgxpool.Pool {
	if m := s.pick(); m != nil {
		return m.r.Search
	}
	return s.cfg.Primary
}

// Query is the text pool of a replica in rotation, or the primary's.
func (s *Set) Query() *pgxpool.Pool {
	if m := s.pick(); m != nil && m.r.Query != nil {
		return m.r.Query
	}
	return s.cfg.PrimaryQuery
}

func (s *Set) pick() *member {
	n := len(s.members)
	start := int(s.next.Add(1))
	for i := range n {
		if m := s.members[(start+i)%n]; m.healthy.Load() {
			return m
		}
	}
	return nil
}

// Statuses reports each replica as last checked.
func (s *Set) Statuses() []Status {
	out := make([]Status, len(s.members))
	for i, m := range s.members {
		m.mu.Lock()
		out[i] = Status{Name: m.r.Name, Healthy: m.healthy.Load(), Lag: m.lag, Err: m.lastError}
		m.mu.Unlock()
	}
	return out
}

func (s *Set) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkAll(ctx)
		}
	}
}

func (s *Set) checkAll(ctx context.Context) {
	if len(s.members) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckEvery*2)
	defer cancel()
	at := time.Now()
	var primaryLSN string
	err := s.cfg.Primary.QueryRow(cctx, "SELECT pg_catalog.pg_current_wal_lsn()::text").Scan(&primaryLSN)
	for _, m := range s.members {
		s.check(cctx, m, primaryLSN, at, err)
	}
}

// check judges m against the primary's position read at at.
func (s *Set) check(ctx context.Context, m *member, primaryLSN string, at time.Time, primaryErr error) {
	var inRecovery, caughtUp bool
	err := primaryErr
	if err == nil {
		err = m.r.Search.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery(),
			coalesce(pg_catalog.pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, primaryLSN).Scan(&inRecovery, &caughtUp)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case err != nil:
		m.lastError = err.Error()
	case !inRecovery:
		m.lastError = "not in recovery: not a replica of the primary"
	default:
		m.lastError = ""
		if caughtUp {
			m.caughtUp = at
		}
	}
	if m.caughtUp.IsZero() {
		m.lag = s.cfg.MaxLag + time.Nanosecond // never caught up: not yet in rotation
	} else {
		m.lag = time.Since(m.caughtUp)
	}
	healthy := m.lastError == "" && m.lag <= s.cfg.MaxLag
	if was := m.healthy.Swap(healthy); was != healthy {
		s.cfg.Logger.Warn("replica rotation", "replica", m.r.Name, "in_rotation", healthy,
			"lag", m.lag.Round(time.Millisecond).String(), "error", m.lastError)
	}
}

// String describes the set, for logs.
func (s *Set) String() string {
	return fmt.Sprintf("%d replicas, max lag %s", len(s.members), s.cfg.MaxLag)
}
