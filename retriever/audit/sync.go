package audit

import (
	"context"
	"fmt"
	"time"
)

// runSync is run in ModeSync. It writes what is queued as soon as the
// previous write is done: the records that arrive during one COPY share the
// next (group commit), so under load a commit serves many requests, and an
// idle writer makes a lone request wait for no timer.
//
// While the last write failed and no record comes, it probes the table with
// backoff, so that Healthy, and with it /readyz, recovers on its own: a
// server taken out of rotation for failing writes would otherwise get no
// request whose write could clear the failure.
func (w *Writer) runSync() {
	batch := w.newBatch()
	backoff := w.cfg.RetryBackoff
	for {
		var probe <-chan time.Time
		if w.lastError() != nil {
			probe = time.After(backoff)
		}
		select {
		case it, ok := <-w.queue:
			if !ok {
				return
			}
			var open bool
			batch, open = w.drain(append(batch, it))
			w.flush(batch)
			clear(batch) // drop references to the written rows
			batch = batch[:0]
			backoff = w.cfg.RetryBackoff
			if !open {
				return
			}
		case <-probe:
			if !w.probe() {
				backoff = min(2*backoff, w.cfg.MaxRetryBackoff)
			}
		}
	}
}

// drain adds to batch the records queued now, up to BatchSize, without
// waiting for more. It reports false once the queue is closed and empty.
func (w *Writer) drain(batch []pending) ([]pending, bool) {
	for len(batch) < w.cfg.BatchSize {
		select {
		case it, ok := <-w.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, it)
		default:
			return batch, true
		}
	}
	return batch, true
}

// probe makes an empty COPY into audit_log, which needs everything a real
// write does (a connection, the table, the privilege) and writes nothing.
// It reports whether it succeeded, and clears or sets the last error.
func (w *Writer) probe() bool {
	err := w.copy(nil)
	if w.ctx.Err() != nil {
		return false
	}
	w.setLastError(err)
	return err == nil
}

// fail reports err to the callers waiting for batch, whose write was tried
// once. Their requests are refused, so nothing is served unaudited; each
// caller logs its own decision id.
func (w *Writer) fail(batch []pending, err error) {
	w.cfg.Logger.Warn("audit: write failed; its requests are refused (sync mode does not retry)",
		"records", len(batch), "err", err)
	w.failed.Add(uint64(len(batch)))
	w.depth.Add(-int64(len(batch)))
	for _, it := range batch {
		it.settle(fmt.Errorf("%w: %w", ErrNotCommitted, err))
	}
}

// awaitCommit waits for the outcome of a ModeSync record's write. A commit
// already reported wins over a context that ended at the same time.
func awaitCommit(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	default:
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: stopped waiting for the commit: %w", ErrNotCommitted, context.Cause(ctx))
	}
}
