package doctor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Severity says how much a finding matters.
type Severity int

// The severities, in increasing order.
const (
	// OK is a check that passed; it is reported so the operator sees what
	// was looked at.
	OK Severity = iota
	// Warning is something that makes searches slow or plans unpredictable;
	// results are still correct.
	Warning
	// Error is something that makes searches fail or return wrong results.
	Error
)

var severityNames = [...]string{OK: "ok", Warning: "warning", Error: "error"}

func (s Severity) String() string {
	if s < OK || s > Error {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalText writes the severity as ok, warning or error.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads ok, warning or error.
func (s *Severity) UnmarshalText(b []byte) error {
	for i, n := range severityNames {
		if n == string(b) {
			*s = Severity(i)
			return nil
		}
	}
	return fmt.Errorf("doctor: unknown severity %q (want ok, warning or error)", b)
}

// Codes name the checks. They are stable: scripts may branch on them. A
// check reports the same code whatever its outcome, so an ok finding and a
// warning with the same code are the passing and failing sides of one check.
const (
	// CodePgvector: the vector extension is installed in a version the
	// retriever supports (error below 0.8.0, warning below 0.8.2).
	CodePgvector = "pgvector"
	// CodeCatalog: the table exists with every column the policy names or
	// its conditions use (policy.CheckCatalog).
	CodeCatalog = "catalog"
	// CodeRetrieverColumns: the table has the id, content, embedding and
	// metadata columns the retriever selects, and the embedding is a vector.
	CodeRetrieverColumns = "retriever_columns"
	// CodeVectorIndex: an HNSW or IVFFlat index with vector_cosine_ops
	// serves the retriever's ORDER BY embedding <=> query.
	CodeVectorIndex = "vector_index"
	// CodeColumnIndex: a column of the resource's table that a rule uses
	// (the tenant column included) leads a usable index.
	CodeColumnIndex = "column_index"
	// CodeRelationIndex: a column of a relation that an EXISTS condition
	// compares leads a usable index.
	CodeRelationIndex = "relation_index"
	// CodeAnalyze: the table has planner statistics.
	CodeAnalyze = "analyze"
)

// Finding is the outcome of one check.
type Finding struct {
	Severity Severity `json:"severity"`
	// Resource is the policy resource checked, or "" for the server.
	Resource string `json:"resource,omitempty"`
	// Code names the check (see the Code constants).
	Code string `json:"code"`
	// Message says what was found and, when something is wrong, why it
	// matters and what to do.
	Message string `json:"message"`
	// Fix holds the SQL that fixes a warning or error, ready to paste into
	// psql, or "" when the fix is not a statement.
	Fix string `json:"fix,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s %s: %s", f.Severity, f.Code, f.Message)
	if f.Fix != "" {
		s += "; run: " + f.Fix
	}
	return s
}

// Report is every finding of a Check: the server's first, then each
// resource's in the policy's order.
type Report struct {
	Findings []Finding `json:"findings"`
}

// Worst returns the highest severity in the report (OK when it is empty).
func (r Report) Worst() Severity {
	worst := OK
	for _, f := range r.Findings {
		worst = max(worst, f.Severity)
	}
	return worst
}

// Count returns how many findings have severity s.
func (r Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// WriteText writes the report for a terminal: one line per finding, under
// a heading per resource, and a summary line.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	heading := "\x00"
	for _, f := range r.Findings {
		if f.Resource != heading {
			if heading != "\x00" {
				b.WriteByte('\n')
			}
			heading = f.Resource
			if heading == "" {
				b.WriteString("server:\n")
			} else {
				fmt.Fprintf(&b, "resource %s:\n", heading)
			}
		}
		line := fmt.Sprintf("  %-7s  %-17s %s", f.Severity, f.Code, f.Message)
		if f.Fix != "" {
			line += "; run: " + f.Fix
		}
		b.WriteString(line + "\n")
	}
	if len(r.Findings) > 0 {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%d error(s), %d warning(s), %d ok\n", r.Count(Error), r.Count(Warning), r.Count(OK))
	_, err := io.WriteString(w, b.String())
	return err
}

// LogFindings logs the report's warnings and errors, one record each, and a
// summary at info level; ok findings are logged at debug level. It is meant
// for a server's start: it only logs and never fails.
func LogFindings(logger *slog.Logger, r Report) {
	for _, f := range r.Findings {
		level := slog.LevelDebug
		switch f.Severity {
		case Warning:
			level = slog.LevelWarn
		case Error:
			level = slog.LevelError
		}
		attrs := []any{"code", f.Code}
		if f.Resource != "" {
			attrs = append(attrs, "resource", f.Resource)
		}
		if f.Fix != "" {
			attrs = append(attrs, "fix", f.Fix)
		}
		logger.Log(context.Background(), level, "doctor: "+f.Message, attrs...)
	}
	logger.Info("doctor: database checked against the policy", "errors", r.Count(Error), "warnings", r.Count(Warning),
		"hint", "ragfence doctor --db URL --policy FILE prints the full report")
}
