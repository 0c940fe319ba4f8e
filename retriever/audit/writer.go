package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ragfence/ragfence/sqlc/store"
)

// Writer writes audit records to ragfence.audit_log in batches, from one
// background goroutine. Its methods are safe for concurrent use.
type Writer struct {
	q     *store.Queries
	cfg   Config
	queue chan pending
	rows  []store.InsertAuditRecordsParams // the COPY's rows; only run uses it

	// mu guards closed. Enqueue holds it for reading while it registers in
	// senders, so once Close has set closed and waited for senders, nothing
	// sends on queue again and Close may close it.
	mu      sync.RWMutex
	closed  bool
	senders sync.WaitGroup
	closing chan struct{} // closed when Close begins; wakes a blocked Enqueue

	// ctx is the context of every database call; Close cancels it when its
	// own context ends first, which turns what is left into lost records.
	ctx   context.Context
	abort context.CancelCauseFunc
	done  chan struct{} // closed when run returns

	depth                                atomic.Int64
	enqueued, refused, written, rejected atomic.Uint64
	lost, failed, writeErrors, commits   atomic.Uint64
	lastErrMu                            sync.Mutex
	lastErr                              error // of the last write attempt; nil after a success
}

// Stats counts what a Writer has done since New, for metrics.
type Stats struct {
	// Depth is the records accepted and not yet written, rejected or lost:
	// the queue plus the batch being written.
	Depth int
	// QueueSize is the configured bound on the queue.
	QueueSize int
	// Enqueued counts records accepted by Enqueue.
	Enqueued uint64
	// Refused counts Enqueue calls that returned ErrQueueFull.
	Refused uint64
	// Written counts records the database committed.
	Written uint64
	// Rejected counts records the database refused as data (SQLSTATE class
	// 22 or 23, such as a duplicate decision id); each was logged in full.
	Rejected uint64
	// Lost counts records given up when Close's context ended; each was
	// logged in full.
	Lost uint64
	// Failed counts ModeSync records whose one write attempt failed: their
	// Enqueue returned ErrNotCommitted and their requests were refused.
	Failed uint64
	// WriteErrors counts failed write attempts: in ModeBatched each is
	// followed by a retry.
	WriteErrors uint64
	// Commits counts the COPYs that committed; Written/Commits is the mean
	// batch, which in ModeSync is how many requests shared a commit.
	Commits uint64
}

// pending is a record in the writer's hands. In ModeSync, done receives the
// outcome of its write exactly once (nil when committed); it is buffered, so
// the writer never waits for an Enqueue that stopped waiting.
type pending struct {
	p    store.InsertAuditRecordsParams
	done chan error
}

// settle reports err to the Enqueue waiting for it, if any.
func (it pending) settle(err error) {
	if it.done != nil {
		it.done <- err
	}
}

// New starts a Writer that writes through db, usually a *pgxpool.Pool.
// Close must be called to flush and stop it, before db is closed.
//
// New takes no context: the writer outlives the call that starts it, and its
// end is Close's to decide, with Close's context bounding the final flush.
func New(db store.DBTX, cfg Config) (*Writer, error) {
	if db == nil {
		return nil, errors.New("audit: nil database")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, abort := context.WithCancelCause(context.Background())
	w := &Writer{
		q:       store.New(db),
		cfg:     cfg,
		queue:   make(chan pending, cfg.QueueSize),
		closing: make(chan struct{}),
		ctx:     ctx,
		abort:   abort,
		done:    make(chan struct{}),
	}
	go w.run()
	return w, nil
}

// Enqueue accepts r for writing. In ModeBatched it returns at once; the
// record is written within about Config.FlushInterval while the database
// keeps up. A nil error means the writer holds the record and will write it,
// retrying as long as it runs, or else log it in full and count it in
// Stats.Lost or Stats.Rejected: never drop it silently.
//
// In ModeSync Enqueue returns only once the COPY holding r has committed,
// and a nil error means exactly that. A write that fails is not retried: it
// returns an error wrapping ErrNotCommitted, as does ctx ending first, so a
// database that is down or hangs fails the request within ctx's deadline
// (and Config.WriteTimeout) instead of holding it.
//
// When the queue is full Enqueue returns ErrQueueFull at once, or with
// Config.Block waits for room until ctx ends. ctx bounds only that wait: a
// record whose request was cancelled is still accepted when there is room,
// since the decision it records was made. After Close has begun Enqueue
// returns ErrClosed; a record missing a required field gets ErrInvalidRecord.
// On any error the caller must not return data for the decision.
//
// Enqueue copies r; the caller may reuse its slices and map at once.
func (w *Writer) Enqueue(ctx context.Context, r Record) error {
	p, err := r.params()
	if err != nil {
		return err
	}
	it := pending{p: p}
	if w.cfg.Mode == ModeSync {
		it.done = make(chan error, 1)
	}
	if err := w.accept(ctx, it); err != nil {
		return err
	}
	if it.done == nil {
		return nil
	}
	return awaitCommit(ctx, it.done)
}

// accept puts it on the queue. It holds senders only for the send, so that
// Close, which waits for senders, never waits for a commit.
func (w *Writer) accept(ctx context.Context, it pending) error {
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	w.senders.Add(1)
	w.mu.RUnlock()
	defer w.senders.Done()

	// Counted before the send, so the writer never decrements first.
	w.depth.Add(1)
	if err := w.send(ctx, it); err != nil {
		w.depth.Add(-1)
		if errors.Is(err, ErrQueueFull) {
			w.refused.Add(1)
		}
		return err
	}
	w.enqueued.Add(1)
	return nil
}

func (w *Writer) send(ctx context.Context, it pending) error {
	// Try without waiting first: select picks at random among ready cases,
	// and a cancelled ctx must not refuse a record there is room for.
	select {
	case w.queue <- it:
		return nil
	default:
	}
	if !w.cfg.Block {
		return ErrQueueFull
	}
	select {
	case w.queue <- it:
		return nil
	case <-w.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrQueueFull, context.Cause(ctx))
	}
}

// Close stops accepting records and writes everything accepted, retrying
// failed writes until ctx ends. If ctx ends first, Close abandons the
// in-flight write, logs every record not written in full at Error level, and
// returns a *LostError saying how many. Close returns once the background
// goroutine has exited; calling it again returns the same outcome.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	first := !w.closed
	if first {
		w.closed = true
		close(w.closing)
	}
	w.mu.Unlock()
	if first {
		// Every Enqueue that saw closed == false has registered in senders;
		// once they are done nobody sends on queue again.
		w.senders.Wait()
		close(w.queue)
	}
	select {
	case <-w.done:
	default:
		select {
		case <-w.done:
		case <-ctx.Done():
			w.abort(context.Cause(ctx))
			<-w.done // prompt: the database calls see the abort
		}
	}
	if n := w.lost.Load(); n > 0 {
		return &LostError{Lost: int(n), Cause: context.Cause(w.ctx), LastWrite: w.lastError()}
	}
	return nil
}

// Depth returns the records accepted and not yet written, rejected or lost.
func (w *Writer) Depth() int { return int(w.depth.Load()) }

// Healthy returns nil while the writer runs and its last write attempt
// succeeded (or none was needed yet); ErrClosed once Close has begun;
// otherwise an error wrapping the last write's. Records enqueued while it is
// unhealthy are kept and retried, until the queue fills.
func (w *Writer) Healthy() error {
	w.mu.RLock()
	closed := w.closed
	w.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := w.lastError(); err != nil {
		return fmt.Errorf("audit: writes failing: %w", err)
	}
	return nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Depth:       w.Depth(),
		QueueSize:   w.cfg.QueueSize,
		Enqueued:    w.enqueued.Load(),
		Refused:     w.refused.Load(),
		Written:     w.written.Load(),
		Rejected:    w.rejected.Load(),
		Lost:        w.lost.Load(),
		Failed:      w.failed.Load(),
		WriteErrors: w.writeErrors.Load(),
		Commits:     w.commits.Load(),
	}
}

func (w *Writer) lastError() error {
	w.lastErrMu.Lock()
	defer w.lastErrMu.Unlock()
	return w.lastErr
}

func (w *Writer) setLastError(err error) {
	w.lastErrMu.Lock()
	w.lastErr = err
	w.lastErrMu.Unlock()
}

// run is the background goroutine: it collects records into a batch and
// writes the batch when it is full, when its first record has waited
// FlushInterval, or when the queue is closed.
func (w *Writer) run() {
	defer close(w.done)
	if w.cfg.Mode == ModeSync {
		w.runSync()
		return
	}
	batch := w.newBatch()
	timer := time.NewTimer(w.cfg.FlushInterval)
	timer.Stop()
	defer timer.Stop()
	var due <-chan time.Time // nil while the batch is empty
	for {
		select {
		case it, ok := <-w.queue:
			if !ok {
				w.flush(batch)
				return
			}
			batch = append(batch, it)
			if len(batch) == 1 {
				timer.Reset(w.cfg.FlushInterval)
				due = timer.C
			}
			if len(batch) < w.cfg.BatchSize {
				continue
			}
		case <-due:
		}
		timer.Stop()
		due = nil
		w.flush(batch)
		clear(batch) // drop references to the written rows
		batch = batch[:0]
	}
}

// newBatch returns an empty batch. Its capacity is capped so a very large
// BatchSize costs memory only when batches are that large.
func (w *Writer) newBatch() []pending {
	return make([]pending, 0, min(w.cfg.BatchSize, 1024))
}

// flush writes batch, retrying with backoff until every record is written or
// rejected, or the writer is aborted, which loses the rest. In ModeSync it
// makes one attempt: what it could not write fails, to its waiting callers.
func (w *Writer) flush(batch []pending) {
	backoff := w.cfg.RetryBackoff
	for len(batch) > 0 {
		if w.ctx.Err() != nil {
			w.lose(batch)
			return
		}
		var err error
		batch, err = w.write(batch)
		if err == nil {
			w.setLastError(nil)
			return
		}
		if w.ctx.Err() != nil { // the failure is the abort itself
			w.lose(batch)
			return
		}
		w.setLastError(err)
		w.writeErrors.Add(1)
		if w.cfg.Mode == ModeSync {
			w.fail(batch, err)
			return
		}
		w.cfg.Logger.Warn("audit: write failed; retrying",
			"records", len(batch), "retry_in", backoff, "err", err)
		w.pause(backoff)
		backoff = min(2*backoff, w.cfg.MaxRetryBackoff)
	}
}

// pause waits d, or until the writer is aborted.
func (w *Writer) pause(d time.Duration) {
	wait := time.NewTimer(d)
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-w.ctx.Done():
	}
}

// write makes one attempt at batch and returns what is left to retry. When
// the database refuses the batch's data, the records are written one at a
// time so that only those it refuses are set aside.
func (w *Writer) write(batch []pending) ([]pending, error) {
	err := w.copy(batch)
	if err == nil {
		w.wrote(batch)
		return nil, nil
	}
	if !permanent(err) {
		return batch, err
	}
	w.cfg.Logger.Warn("audit: batch refused; writing its records one by one",
		"records", len(batch), "err", err)
	for i := range batch {
		err := w.copy(batch[i : i+1])
		switch {
		case err == nil:
			w.wrote(batch[i : i+1])
		case permanent(err):
			w.reject(batch[i], err)
		default:
			return batch[i:], err
		}
	}
	return nil, nil
}

// copy writes batch in one COPY, which PostgreSQL commits as one
// transaction when it completes.
func (w *Writer) copy(batch []pending) error {
	w.rows = w.rows[:0]
	for _, it := range batch {
		w.rows = append(w.rows, it.p)
	}
	defer clear(w.rows) // drop references to the written rows
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.WriteTimeout)
	defer cancel()
	_, err := w.q.InsertAuditRecords(ctx, w.rows)
	return err
}

// reject sets aside a record the database refused; the log keeps it.
func (w *Writer) reject(it pending, err error) {
	w.rejected.Add(1)
	w.depth.Add(-1)
	it.settle(fmt.Errorf("%w: refused by the database: %w", ErrNotCommitted, err))
	msg := "audit: record refused by the database; not written"
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		// A COPY that committed but whose reply was lost is retried, and
		// then meets its own rows: the unique index is what keeps that
		// retry from writing them twice.
		msg = "audit: decision id already in audit_log (written by an earlier attempt, or the id was reused); not written again"
	}
	w.cfg.Logger.Error(msg, "err", err, logValue(it.p))
}

func (w *Writer) wrote(batch []pending) {
	w.commits.Add(1)
	w.written.Add(uint64(len(batch)))
	w.depth.Add(-int64(len(batch)))
	for _, it := range batch {
		it.settle(nil)
	}
}

// lose gives up on batch: each record goes to the log in full, the only copy
// left of it.
func (w *Writer) lose(batch []pending) {
	cause := context.Cause(w.ctx)
	for _, it := range batch {
		w.cfg.Logger.Error("audit: record lost; not written", "cause", cause, logValue(it.p))
		it.settle(fmt.Errorf("%w: writer closed before the write: %w", ErrNotCommitted, cause))
	}
	w.lost.Add(uint64(len(batch)))
	w.depth.Add(-int64(len(batch)))
}
