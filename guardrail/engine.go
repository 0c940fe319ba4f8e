package guardrail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/revocation"
	"github.com/ragfence/ragfence/sqlc/store"
)

// DefaultSyncEvery is how often an engine syncs when Config.SyncEvery is 0.
const DefaultSyncEvery = 100 * time.Millisecond

// Revoker makes the revocations of Suspend verdicts; *revocation.Store
// is one.
type Revoker interface {
	Revoke(ctx context.Context, r revocation.Request) (revocation.Revocation, error)
}

// Config configures an Engine.
type Config struct {
	// Pool is the database holding ragfence's schema (required).
	Pool *pgxpool.Pool
	// Set is the policy whose guardrails are enforced; SetPolicy replaces it.
	Set *policy.Set
	// Now is the clock windows are reckoned on; nil means time.Now.
	Now func() time.Time
	// SyncEvery is how often counts are synced with the database; 0
	// means DefaultSyncEvery.
	SyncEvery time.Duration
	// Revoker makes suspensions; nil means a revocation.Store on Pool.
	Revoker Revoker
	// OnEvent receives each triggered action, on the goroutine of the
	// request that triggered it: it must not block (Webhook.Notify does not).
	OnEvent func(Event)
	// Logger receives sync and suspension failures; nil discards them.
	Logger *slog.Logger
	// Instance names this engine in the database; "" means a random id.
	Instance string
}

// Engine enforces a policy's guardrails for one server process, with
// budgets shared by every engine on the same database.
type Engine struct {
	pool      *pgxpool.Pool
	q         *store.Queries
	rules     atomic.Pointer[[]*rule]
	counters  *counters
	now       func() time.Time
	syncEvery time.Duration
	instance  string
	live      atomic.Int64
	revoker   Revoker
	onEvent   func(Event)
	log       *slog.Logger
	jobs      *suspender

	syncMu    sync.Mutex   // held by a sync
	lastSync  atomic.Int64 // when the last sync that reached out started, in Unix ns
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New starts an engine: it registers with the database (so it fails
// early when the migrations are missing) and syncs in the background.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Pool == nil {
		return nil, &Error{Code: CodeConfig, Msg: "a database pool is required"}
	}
	if cfg.SyncEvery < 0 {
		return nil, &Error{Code: CodeConfig, Msg: "SyncEvery must not be negative"}
	}
	e := &Engine{
		pool: cfg.Pool, q: store.New(cfg.Pool), counters: newCounters(), now: cfg.Now,
		syncEvery: cfg.SyncEvery, instance: cfg.Instance, revoker: cfg.Revoker, onEvent: cfg.OnEvent, log: cfg.Logger,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	e.defaults()
	e.live.Store(1)
	e.SetPolicy(cfg.Set)
	if err := e.syncOnce(ctx); err != nil {
		return nil, fmt.Errorf("guardrail: register with the database (are ragfence's migrations applied?): %w", err)
	}
	e.jobs = newSuspender(e)
	go e.run()
	return e, nil
}

func (e *Engine) defaults() {
	if e.now == nil {
		e.now = time.Now
	}
	if e.syncEvery == 0 {
		e.syncEvery = DefaultSyncEvery
	}
	if e.instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		e.instance = hex.EncodeToString(b[:])
	}
	if e.revoker == nil {
		e.revoker = revocation.NewStore(e.pool)
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// SetPolicy makes set's guardrails the ones enforced. Counts carry over
// for guardrails that keep their name and window.
func (e *Engine) SetPolicy(set *policy.Set) {
	rules := compile(set)
	e.rules.Store(&rules)
}

// Close stops syncing after a last sync that reports what was counted
// since the previous one, and stops making suspensions.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.done
		e.jobs.close()
	})
}

// Check decides a request before it is searched: Allow, or the strongest
// action of the guardrails that apply to it. It does no database I/O.
// A served request (Verdict.Action.Serves) is counted as a request here;
// pass the Verdict to Record once it is served.
func (e *Engine) Check(who Who, collection string, req Request) Verdict {
	var v Verdict
	rules := *e.rules.Load()
	if len(rules) == 0 {
		return v
	}
	now, live := e.now(), e.live.Load()
	needSync := false
	for _, r := range rules {
		if !r.applies(who, collection, req) {
			continue
		}
		c, d := e.check(r, who, now, live)
		v.counters = append(v.counters, c)
		v.merge(d, r.g.Name)
		needSync = needSync || d.needSync
		if d.fire && e.onEvent != nil {
			e.onEvent(newEvent(r, who, collection, req.DecisionID, d, now))
		}
	}
	if v.Action.Serves() {
		for i, c := range v.counters {
			for !c.admit(now) {
				c = e.counters.get(c.key, c.rule, now)
				v.counters[i] = c
			}
		}
	}
	if needSync {
		e.wake()
	}
	return v
}

// check finds r's live counter for who and decides under it.
func (e *Engine) check(r *rule, who Who, now time.Time, live int64) (*counter, decision) {
	k := counterKey{guardrail: r.g.Name, windowSec: r.windowSec, tenant: who.Tenant, subject: who.Subject, agent: who.Agent}
	for {
		c := e.counters.get(k, r, now)
		if d, ok := c.check(r, now, live, e.syncEvery, e.suspend); ok {
			return c, d
		}
	}
}

// Record counts what a request Check let through returned, once per
// Verdict: its rows and the documents they belong to (the resource's
// document column, one per row or fewer; duplicates count once). A
// verdict that refused the request records nothing. It does no I/O.
func (e *Engine) Record(v Verdict, rows int, documents []string) {
	if !v.Action.Serves() {
		return
	}
	now := e.now()
	for _, c := range v.counters {
		for !c.record(now, rows, documents) {
			c = e.counters.get(c.key, c.rule, now)
		}
	}
}

// wake asks for a sync now rather than at the next tick.
func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// run syncs every SyncEvery, or sooner when asked to, but at most ten
// times per SyncEvery; it prunes once a minute.
func (e *Engine) run() {
	defer close(e.done)
	tick := time.NewTicker(e.syncEvery)
	defer tick.Stop()
	var lastPrune time.Time
	failing := false
	for {
		select {
		case <-e.stop:
			e.flush()
			return
		case <-tick.C:
		case <-e.kick:
			if !e.pause(e.syncEvery/10 - e.sinceSync()) {
				e.flush()
				return
			}
		}
		err := e.syncOnce(context.Background())
		failing = e.logSync(err, failing)
		if time.Since(lastPrune) > time.Minute {
			lastPrune = time.Now()
			if err := e.prune(context.Background()); err != nil {
				e.log.Warn("guardrail: prune failed", "err", err)
			}
		}
	}
}

func (e *Engine) sinceSync() time.Duration { return time.Since(time.Unix(0, e.lastSync.Load())) }

// pause waits d, unless the engine is closing.
func (e *Engine) pause(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-e.stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-e.stop:
		return false
	}
}

// logSync logs a failing sync once, and its recovery.
func (e *Engine) logSync(err error, failing bool) bool {
	switch {
	case err != nil && !failing:
		e.log.Warn("guardrail: sync failed; enforcing on local counts", "err", err)
	case err == nil && failing:
		e.log.Info("guardrail: sync recovered")
	}
	return err != nil
}

// flush is the last sync before closing.
func (e *Engine) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), e.syncTimeout())
	defer cancel()
	if err := e.syncOnce(ctx); err != nil && !errors.Is(err, context.Canceled) {
		e.log.Warn("guardrail: last sync failed", "err", err)
	}
}

func (e *Engine) syncTimeout() time.Duration    { return max(20*e.syncEvery, 5*time.Second) }
func (e *Engine) heartbeatEvery() time.Duration { return max(10*e.syncEvery, time.Second) }

// liveFor is how recently an engine must have synced to count as live.
func (e *Engine) liveFor() time.Duration { return max(30*e.syncEvery, 10*time.Second) }
