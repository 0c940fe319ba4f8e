package audit

import "fmt"

// Mode says what a nil error from Enqueue promises.
type Mode int

const (
	// ModeBatched, the zero Mode, returns from Enqueue once the record is
	// queued in memory; a background goroutine commits it within about
	// Config.FlushInterval. A crash loses what was queued and not yet
	// committed, answers already sent included.
	ModeBatched Mode = iota
	// ModeSync returns from Enqueue only once the record is committed, so
	// no answer goes out before its record is in the table, even if the
	// process is killed the next instant. Records of concurrent Enqueues
	// share one COPY (group commit): a request waits for about one commit,
	// not for a timer.
	ModeSync
)

var modeNames = [...]string{ModeBatched: "batched", ModeSync: "sync"}

// String returns the mode's name, as ParseMode reads it.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("Mode(%d)", int(m))
	}
	return modeNames[m]
}

// ParseMode reads a mode's name: "batched" or "sync".
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if s == name {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("audit: unknown mode %q: use batched or sync", s)
}

// MarshalText returns the mode's name, for flags and config files.
func (m Mode) MarshalText() ([]byte, error) {
	if m < 0 || int(m) >= len(modeNames) {
		return nil, fmt.Errorf("audit: unknown mode %d", int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText sets m from its name (see ParseMode).
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
