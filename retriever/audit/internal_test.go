package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

var uuidV7Text = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewDecisionIDIsAUniqueUUIDv7(t *testing.T) {
	seen := make(map[string]bool)
	for range 100000 {
		id := NewDecisionID()
		if !uuidV7Text.MatchString(id) {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("%q made twice", id)
		}
		seen[id] = true
	}
}

func TestDecisionIDsSortByTime(t *testing.T) {
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	steps := []time.Duration{0, 300 * time.Nanosecond, time.Microsecond, 999 * time.Microsecond, time.Millisecond, time.Second, 24 * time.Hour}
	prev := ""
	for _, d := range steps {
		id := uuidV7(base.Add(d))
		if id <= prev {
			t.Errorf("id at +%v = %s sorts before the previous %s", d, id, prev)
		}
		prev = id
	}
	// The first 48 bits are the Unix time in milliseconds.
	if got, want := uuidV7(base)[:13], fmt.Sprintf("%08x-%04x", base.UnixMilli()>>16, base.UnixMilli()&0xffff); got != want {
		t.Errorf("timestamp = %s, want %s", got, want)
	}
}

func TestReplaceNULEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":"b"}`, `{"a":"b"}`},
		{`{"a":"\u0000"}`, `{"a":"\ufffd"}`},
		{`{"\u0000":"x\u0000y\u0000"}`, `{"\ufffd":"x\ufffdy\ufffd"}`},
		{`{"a":"\\u0000"}`, `{"a":"\\u0000"}`},           // the text \u0000, not a NUL
		{`{"a":"\\\u0000"}`, `{"a":"\\\ufffd"}`},         // a backslash, then a NUL
		{`{"a":"\u00001"}`, `{"a":"\ufffd1"}`},           // NUL then "1"
		{`{"a":"\u0001\u0000"}`, `{"a":"\u0001\ufffd"}`}, // other escapes kept
		{`{"a":"\"\u0000\""}`, `{"a":"\"\ufffd\""}`},     // next to escaped quotes
	}
	for _, tt := range tests {
		if got := string(replaceNULEscapes([]byte(tt.in))); got != tt.want {
			t.Errorf("replaceNULEscapes(%s) = %s, want %s", tt.in, got, tt.want)
		}
		if !json.Valid([]byte(tt.want)) {
			t.Errorf("want %s is not JSON", tt.want)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"", ""},
		{"zoë 東京", "zoë 東京"},
		{"a\x00b", "a\uFFFDb"},
		{"a\xffb", "a\uFFFDb"},
		{"\xc3", "\uFFFD"}, // truncated UTF-8
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "23505"}, true}, // unique_violation
		{&pgconn.PgError{Code: "22021"}, true}, // character_not_in_repertoire
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "22P05"}), true},
		{&pgconn.PgError{Code: "42P01"}, false}, // undefined_table: a setup mistake, retried
		{&pgconn.PgError{Code: "42501"}, false}, // insufficient_privilege
		{&pgconn.PgError{Code: "57P01"}, false}, // admin_shutdown
		{&pgconn.PgError{Code: "55000"}, false}, // database not accepting connections
		{context.DeadlineExceeded, false},
		{fmt.Errorf("dial: connection refused"), false},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("permanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QueueSize != DefaultQueueSize || cfg.BatchSize != DefaultBatchSize ||
		cfg.FlushInterval != DefaultFlushInterval || cfg.MaxRetryBackoff != DefaultMaxRetryBackoff ||
		cfg.Logger == nil || cfg.Block {
		t.Errorf("defaults = %+v", cfg)
	}
	// A first backoff above the default maximum raises the maximum.
	cfg, err = Config{RetryBackoff: time.Minute}.withDefaults()
	if err != nil || cfg.MaxRetryBackoff != time.Minute {
		t.Errorf("MaxRetryBackoff = %v, %v; want 1m", cfg.MaxRetryBackoff, err)
	}
}
