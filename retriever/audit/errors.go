package audit

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

var (
	// ErrQueueFull is returned by Enqueue when the record could not be
	// queued: at once in non-blocking mode, or when the context ended while
	// waiting for room in blocking mode. The record was not accepted; the
	// caller must not return data for the decision (answer 503).
	ErrQueueFull = errors.New("audit: queue full")

	// ErrClosed is returned by Enqueue once Close has begun, and by Healthy
	// after it. The record was not accepted.
	ErrClosed = errors.New("audit: writer closed")

	// ErrInvalidRecord is returned by Enqueue for a record missing a required
	// field or whose Detail does not marshal to JSON. The record was not
	// accepted.
	ErrInvalidRecord = errors.New("audit: invalid record")

	// ErrNotCommitted is returned by Enqueue in ModeSync when the record was
	// accepted but is not known to be committed: its write failed, the
	// database refused it, Close gave up on it, or the context ended while
	// waiting. The error wraps the cause. The record may still be in the
	// table (a COPY committed whose reply was lost, or one still in
	// flight), so the table can show a decision the caller then refused;
	// it never lacks one the caller served. The caller must not return data
	// for the decision.
	ErrNotCommitted = errors.New("audit: record not committed")
)

// LostError is returned by Close when its context ended before every
// accepted record was written. Each lost record was logged in full at Error
// level.
type LostError struct {
	// Lost counts the records accepted but not known to be written. Records
	// of a batch whose COPY was in flight when Close gave up are counted too,
	// though the database may have committed them: their decision ids are in
	// the log, to check against the table.
	Lost int
	// Cause is why Close stopped waiting (the context's error).
	Cause error
	// LastWrite is the error of the last failed write attempt, if any.
	LastWrite error
}

func (e *LostError) Error() string {
	msg := fmt.Sprintf("audit: %d records not written: %v", e.Lost, e.Cause)
	if e.LastWrite != nil {
		msg += fmt.Sprintf(" (last write error: %v)", e.LastWrite)
	}
	return msg
}

// Unwrap returns the cause and the last write error, so errors.Is matches
// context.DeadlineExceeded as well as the database's error.
func (e *LostError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Cause, e.LastWrite} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// permanent reports whether err is the database refusing the data itself:
// SQLSTATE class 22 (data exception) or 23 (integrity constraint violation,
// such as a duplicate decision id). Retrying such a batch can never succeed,
// so its records are written one by one and those refused are set aside.
//
// Everything else (connection loss, timeouts, a missing table or privilege
// in class 42) is treated as transient and retried without end: setting
// records aside for a configuration mistake would lose every record. For the
// same reason an error while connecting is never permanent, whatever its
// SQLSTATE (a bad startup parameter is 22023).
func permanent(err error) bool {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return false
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) != 5 {
		return false
	}
	class := pgErr.Code[:2]
	return class == "22" || class == "23"
}
