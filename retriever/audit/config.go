package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultQueueSize       = 10000
	DefaultBatchSize       = 500
	DefaultFlushInterval   = 200 * time.Millisecond
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 5 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
)

// Config tunes a Writer. The zero value of each field means its default.
type Config struct {
	// Mode says when Enqueue returns: once the record is queued
	// (ModeBatched, the default) or once it is committed (ModeSync).
	Mode Mode
	// QueueSize bounds the records accepted and waiting to be written, on top
	// of the one batch being written. In ModeSync it bounds the requests
	// waiting for their commit. Default DefaultQueueSize.
	QueueSize int
	// BatchSize is the most records one COPY writes. In ModeSync it bounds
	// how many waiting requests one commit serves. Default DefaultBatchSize.
	BatchSize int
	// FlushInterval is the longest an accepted record waits for its batch to
	// fill before the batch is written anyway. It bounds how many records a
	// crash can lose while the database keeps up. ModeSync does not wait:
	// it writes as soon as the previous write is done. Default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// Block makes Enqueue wait for room, for as long as its context allows,
	// instead of returning ErrQueueFull at once. Requests then slow down
	// rather than fail while the database is slow or down.
	Block bool
	// RetryBackoff is the wait after the first failed write of a batch; it
	// doubles after each further failure up to MaxRetryBackoff. Retries go on
	// until the batch is written or Close gives up. Defaults
	// DefaultRetryBackoff and DefaultMaxRetryBackoff. ModeSync does not
	// retry a batch (its requests are waiting, and are refused instead); it
	// uses the backoff to probe the table until a write would succeed
	// again, which makes Healthy report recovery while no request comes.
	RetryBackoff, MaxRetryBackoff time.Duration
	// WriteTimeout bounds one write attempt, so a connection that hangs is
	// given up and retried. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Logger receives failed writes (Warn) and every rejected or lost record
	// in full (Error). Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns cfg with its zero fields set, or an error for a
// negative one: a negative size or duration is a mistake, not a default.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Mode != ModeBatched && cfg.Mode != ModeSync {
		return cfg, fmt.Errorf("audit: config: unknown mode %d", int(cfg.Mode))
	}
	if cfg.QueueSize < 0 || cfg.BatchSize < 0 || cfg.FlushInterval < 0 ||
		cfg.RetryBackoff < 0 || cfg.MaxRetryBackoff < 0 || cfg.WriteTimeout < 0 {
		return cfg, errors.New("audit: config: sizes and durations must not be negative")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.QueueSize, DefaultQueueSize)
	def(&cfg.BatchSize, DefaultBatchSize)
	defDur(&cfg.FlushInterval, DefaultFlushInterval)
	defDur(&cfg.RetryBackoff, DefaultRetryBackoff)
	defDur(&cfg.MaxRetryBackoff, DefaultMaxRetryBackoff)
	defDur(&cfg.WriteTimeout, DefaultWriteTimeout)
	if cfg.MaxRetryBackoff < cfg.RetryBackoff {
		cfg.MaxRetryBackoff = cfg.RetryBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
