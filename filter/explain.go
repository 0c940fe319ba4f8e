package filter

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/ragfence/ragfence/internal/dollar"
)

// Explanation is what a fragment does for a request, for people and tools.
type Explanation struct {
	Resource      string      `json:"resource"`
	Table         string      `json:"table"`
	PolicyVersion string      `json:"policy_version"`
	Agent         string      `json:"agent,omitempty"`
	Outcome       string      `json:"outcome"`
	Reason        string      `json:"reason,omitempty"`
	Rules         []RuleState `json:"rules"`
	Masks         []MaskSQL   `json:"masks,omitempty"`
	// SQL is the fragment with $1.. placeholders; Args are their values.
	SQL  string `json:"sql"`
	Args []any  `json:"args"`
}

// MaskSQL is the expression a masked column is selected as.
type MaskSQL struct {
	Column string `json:"column"`
	SQL    string `json:"sql"`
	Args   []any  `json:"args"`
}

// Explain describes the fragment: its rules, masks, SQL and arguments.
func (p *Policy) Explain(f *Fragment) Explanation {
	e := Explanation{
		Resource: f.Resource, Table: f.res.res.Table, PolicyVersion: p.Version(), Agent: f.Agent,
		Outcome: f.Outcome.String(), Reason: f.Reason, Rules: f.Rules(), SQL: f.SQL(1), Args: f.Args(),
	}
	for _, col := range f.Masked() {
		sql, args, _ := f.Column(col).ToSql()
		e.Masks = append(e.Masks, MaskSQL{Column: col, SQL: dollar.Number(sql, 1), Args: args})
	}
	return e
}

// WriteText writes the explanation for a terminal.
func (e Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "resource: %s (table %s)\n", e.Resource, e.Table)
	fmt.Fprintf(&b, "policy version: %s\n", e.PolicyVersion)
	if e.Agent != "" {
		fmt.Fprintf(&b, "agent: %s\n", e.Agent)
	}
	fmt.Fprintf(&b, "outcome: %s", e.Outcome)
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	b.WriteString("\n\nrules:\n")
	for _, r := range e.Rules {
		writeRule(&b, r)
	}
	b.WriteString("\nsql:\n  " + e.SQL + "\n")
	writeArgs(&b, e.Args)
	for _, m := range e.Masks {
		fmt.Fprintf(&b, "\nmask %s:\n  %s\n", m.Column, m.SQL)
		writeArgs(&b, m.Args)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRule(b *strings.Builder, r RuleState) {
	state := "active"
	if !r.Active {
		state = "inactive, missing " + strings.Join(r.Missing, ", ")
		if r.Effect == "deny" {
			state += ": denies every row"
		}
	}
	owner := ""
	if r.Agent != "" {
		owner = "agent " + r.Agent + " "
	}
	fmt.Fprintf(b, "  %s%-5s %-24s %s\n", owner, r.Effect, r.Name, state)
}

func writeArgs(b *strings.Builder, args []any) {
	if len(args) == 0 {
		return
	}
	b.WriteString("args:\n")
	for i, a := range args {
		fmt.Fprintf(b, "  $%d = %s\n", i+1, FormatArg(a))
	}
}

// FormatArg renders an argument value for people, as a SQL literal would
// read (it is never used to build SQL).
func FormatArg(a any) string {
	switch v := a.(type) {
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = FormatArg(s)
		}
		return "{" + strings.Join(parts, ",") + "}"
	case time.Time:
		return "'" + v.UTC().Format(time.RFC3339) + "'"
	case netip.Addr:
		return "'" + v.String() + "'"
	case nil:
		return "NULL"
	}
	return fmt.Sprint(a)
}
