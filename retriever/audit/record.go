package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ragfence/ragfence/sqlc/store"
)

// Record is one authorization decision, allowed or refused, as it is written
// to ragfence.audit_log.
type Record struct {
	// DecidedAt is when the decision was made. Required.
	DecidedAt time.Time
	// DecisionID identifies the decision (see NewDecisionID); unique in the
	// table. Required.
	DecisionID string
	// Subject is who asked; Tenant is the tenant the subject acted in.
	Subject, Tenant string
	// Agent names the agent acting for the subject; empty is stored as NULL.
	Agent string
	// Resource is the policy's resource (the request's collection).
	Resource string
	// PolicyVersion identifies the policy that decided.
	PolicyVersion string
	// Rules names the policy rules in play.
	Rules []string
	// RowIDs are the ids of the rows returned; their number is the row_count.
	RowIDs []string
	// ClientAddr is the caller's address; the zero Addr is stored as NULL.
	ClientAddr netip.Addr
	// Latency is how long the request took; stored in milliseconds.
	Latency time.Duration
	// Outcome says how the decision ended (for example "allowed", "denied",
	// "error"). Required.
	Outcome string
	// Detail holds anything else worth keeping; it must marshal to a JSON
	// object. Nil is stored as {}.
	Detail map[string]any
}

// params converts r into the row the COPY writes. It runs in Enqueue, on the
// caller's goroutine, for two reasons: a record the database would refuse is
// reported to the caller who can still fail the request, and the result
// shares no memory with r, so the caller may reuse r's slices and map at once.
func (r Record) params() (store.InsertAuditRecordsParams, error) {
	switch {
	case r.DecisionID == "":
		return store.InsertAuditRecordsParams{}, fmt.Errorf("%w: empty decision id", ErrInvalidRecord)
	case r.DecidedAt.IsZero():
		return store.InsertAuditRecordsParams{}, fmt.Errorf("%w: decision %s: zero DecidedAt", ErrInvalidRecord, r.DecisionID)
	case r.Outcome == "":
		return store.InsertAuditRecordsParams{}, fmt.Errorf("%w: decision %s: empty outcome", ErrInvalidRecord, r.DecisionID)
	}
	detail, err := detailJSON(r.Detail)
	if err != nil {
		return store.InsertAuditRecordsParams{}, fmt.Errorf("%w: decision %s: detail: %w", ErrInvalidRecord, r.DecisionID, err)
	}
	var addr netip.Prefix
	if r.ClientAddr.IsValid() {
		// A host address: inet shows it without a /32 or /128 suffix.
		addr = netip.PrefixFrom(r.ClientAddr.WithZone(""), r.ClientAddr.BitLen())
	}
	agent := clean(r.Agent)
	return store.InsertAuditRecordsParams{
		DecidedAt:     pgtype.Timestamptz{Time: r.DecidedAt, Valid: true},
		DecisionID:    clean(r.DecisionID),
		Subject:       clean(r.Subject),
		Tenant:        clean(r.Tenant),
		Agent:         pgtype.Text{String: agent, Valid: agent != ""},
		Resource:      clean(r.Resource),
		PolicyVersion: clean(r.PolicyVersion),
		Rules:         cleanAll(r.Rules),
		RowCount:      int32(min(len(r.RowIDs), 1<<31-1)),
		RowIds:        cleanAll(r.RowIDs),
		ClientAddr:    addr,
		LatencyMs:     float64(r.Latency) / float64(time.Millisecond),
		Outcome:       clean(r.Outcome),
		Detail:        detail,
	}, nil
}

// clean makes s storable in a text column. PostgreSQL refuses NUL bytes and
// invalid UTF-8 in text, and one such value would fail its whole COPY batch;
// the values come from requests, so they are replaced with U+FFFD instead of
// failing the request: the record is kept, marked where it was altered.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// cleanAll copies ss through clean. Nil becomes an empty slice: pgx encodes a
// nil slice as NULL, and the array columns are NOT NULL.
func cleanAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return out
}

// detailJSON marshals d for the jsonb column. encoding/json already replaces
// invalid UTF-8; jsonb also refuses the escape \u0000, which json emits for
// NUL, so that escape is rewritten to \ufffd.
func detailJSON(d map[string]any) ([]byte, error) {
	if len(d) == 0 {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return replaceNULEscapes(b), nil
}

// replaceNULEscapes rewrites every \u0000 escape in the JSON text b to \ufffd.
// It walks escapes rather than searching for the six bytes, so an escaped
// backslash followed by "u0000" (the text \u0000 itself) is left alone.
func replaceNULEscapes(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return b
	}
	out := slices.Clone(b)
	for i := 0; i < len(out)-1; i++ {
		if out[i] != '\\' {
			continue
		}
		if out[i+1] == 'u' && i+6 <= len(out) && string(out[i+2:i+6]) == "0000" {
			copy(out[i+2:i+6], "fffd")
		}
		i++ // skip the escaped character, which may itself be a backslash
	}
	return out
}

// logValue lays out p for the log. Rejected and lost records are logged in
// full so the audit trail survives in the log stream when the table could not
// take them.
func logValue(p store.InsertAuditRecordsParams) slog.Attr {
	addr := ""
	if p.ClientAddr.IsValid() {
		addr = p.ClientAddr.Addr().String()
	}
	return slog.Group("record",
		slog.Time("decided_at", p.DecidedAt.Time),
		slog.String("decision_id", p.DecisionID),
		slog.String("subject", p.Subject),
		slog.String("tenant", p.Tenant),
		slog.String("agent", p.Agent.String),
		slog.String("resource", p.Resource),
		slog.String("policy_version", p.PolicyVersion),
		slog.Any("rules", p.Rules),
		slog.Int("row_count", int(p.RowCount)),
		slog.Any("row_ids", p.RowIds),
		slog.String("client_addr", addr),
		slog.Float64("latency_ms", p.LatencyMs),
		slog.String("outcome", p.Outcome),
		slog.String("detail", string(p.Detail)),
	)
}

// Write writes records at once, outside any Writer: for commands that
// change access (ragfence revoke, approve, grant) and must leave their
// trail before they report success.
func Write(ctx context.Context, db store.DBTX, records ...Record) error {
	rows := make([]store.InsertAuditRecordsParams, 0, len(records))
	for _, r := range records {
		p, err := r.params()
		if err != nil {
			return err
		}
		rows = append(rows, p)
	}
	if _, err := store.New(db).InsertAuditRecords(ctx, rows); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	return nil
}
