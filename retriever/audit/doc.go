// Package audit writes one record per authorization decision, allowed or
// refused, to ragfence.audit_log: when and by whom it was asked, the policy
// version and rules in play, the rows returned, the client, the latency and
// the outcome.
//
// A Writer batches records from many request goroutines into COPYs made by
// one background goroutine. The queue between them is bounded: when it is
// full, Enqueue fails with ErrQueueFull (or, with Config.Block, waits) and the
// caller must answer 503 without data. Requests fail when auditing cannot keep
// up; records are not dropped to keep requests going.
//
// Config.Mode chooses what Enqueue's nil means: queued (ModeBatched, the
// default) or committed (ModeSync).
//
// # What ModeSync guarantees
//
// Enqueue returns nil only once the COPY holding the record has committed, so
// a caller that answers only after a nil Enqueue never serves an answer the
// table lacks, whatever happens to the process next. The COPY is a
// transaction of its own and commits with the session's synchronous_commit:
// with the default (on) the commit is flushed to the primary's WAL before
// Enqueue returns. With off, a crash of PostgreSQL itself (not of ragfence)
// can lose commits of up to three times wal_writer_delay (600 ms by default)
// whose answers were served; with a synchronous standby the record also
// survives losing the primary.
//
// The records of concurrent Enqueues share one COPY (group commit): the
// writer starts a COPY as soon as the previous one is done, with every record
// that arrived meanwhile, so a request waits for at most about two commits
// and the database sees one transaction per batch, not per request. A failed
// write is not retried; each of its callers gets ErrNotCommitted and refuses
// its request, and while writes fail the writer probes the table so that
// Healthy recovers without traffic. Over-recording is possible (a COPY whose
// reply was lost may have committed the record of a request then refused);
// under-recording is not.
//
// # What ModeBatched guarantees
//
// Enqueue returning nil means the record is in the writer's memory, not in
// the database. From then on the writer either commits it, or logs it in full
// at Error level and counts it (Stats.Rejected or Stats.Lost); it never drops
// a record without a trace. In detail:
//
//   - While the process runs, a failed write is retried with backoff without
//     end. The records stay in memory; the queue fills and Enqueue refuses new
//     ones, so no response goes out without its record accepted.
//   - A record the database refuses as data (SQLSTATE class 22 or 23, e.g. a
//     decision id already in the table) cannot be written by retrying. Its
//     batch is written one record at a time; only the refused records are set
//     aside, logged and counted as rejected. Text with NUL bytes or invalid
//     UTF-8, which PostgreSQL refuses, is stored with U+FFFD instead.
//   - On graceful shutdown, Close refuses new records and writes every
//     accepted one, retrying until its context ends. If the context ends
//     first, the remaining records are logged in full, counted as lost and
//     reported by a *LostError. Records of a COPY in flight at that moment are
//     reported lost though the database may have committed them.
//   - On a crash (panic, SIGKILL, OOM, power loss) everything accepted and not
//     yet committed is lost without a log line: the queue (up to
//     Config.QueueSize records) and the batch being written. While the
//     database keeps up that is the records of the last Config.FlushInterval
//     or so; while it is down it can be the whole queue. The writer makes a
//     record durable only by committing it; it keeps no local journal.
//   - A response sent to a client does not imply its record is committed, only
//     accepted. Callers that need that use ModeSync.
//
// Healthy reports whether the last write succeeded, for /readyz; Depth and
// Stats feed metrics. Close must be called before the database pool is
// closed.
package audit
