package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Targets the ragfence strategy is held to (issue 6); never loosened to
// make a run pass.
const (
	TargetRecall          = 0.98
	TargetLatencyBroad    = 1.2 // p50 / unfiltered p50, selectivity >= 10%
	TargetLatencySelected = 3.0 // p50 / unfiltered p50, selectivity 0.1%
)

// Report is one run: what ran where, and what came out.
type Report struct {
	Command     string        `json:"command"`
	Profile     string        `json:"profile"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Machine     Machine       `json:"machine"`
	Data        DataConfig    `json:"data"`
	Load        Timings       `json:"load"`
	Concurrency int           `json:"concurrency"`
	// ExactQueries caps the exact strategy's queries per cell (0: all).
	ExactQueries int      `json:"exact_queries"`
	Results      []Result `json:"results"`
}

// Check is one target in one cell.
type Check struct {
	Placement   string
	Selectivity float64
	What        string
	Value, Want float64
	AtMost      bool // Value must be <= Want (else >=)
}

// Met says whether the check holds.
func (c Check) Met() bool {
	if c.AtMost {
		return c.Value <= c.Want
	}
	return c.Value >= c.Want
}

func (c Check) String() string {
	mark := "met"
	if !c.Met() {
		mark = "MISSED"
	}
	op := ">="
	if c.AtMost {
		op = "<="
	}
	return fmt.Sprintf("%s %s %s: %.3f (target %s %g) %s", c.Placement, pct(c.Selectivity), c.What, c.Value, op, c.Want, mark)
}

// Checks evaluates the targets on the ragfence strategy's results.
func Checks(results []Result) []Check {
	var out []Check
	for _, r := range results {
		if r.Strategy != Ragfence {
			continue
		}
		c := Check{Placement: r.Placement, Selectivity: r.Selectivity}
		out = append(out,
			with(c, "recall@10", r.Recall, TargetRecall, false),
			with(c, "short results", r.Short, 0, true))
		floor := find(results, Unfiltered, r.Placement, r.Selectivity)
		if floor == nil || floor.P50 == 0 {
			continue
		}
		switch {
		case r.Selectivity >= 0.1:
			out = append(out, with(c, "p50 / unfiltered p50", r.P50/floor.P50, TargetLatencyBroad, true))
		case r.Selectivity <= 0.001:
			out = append(out, with(c, "p50 / unfiltered p50", r.P50/floor.P50, TargetLatencySelected, true))
		}
	}
	return out
}

func with(c Check, what string, v, want float64, atMost bool) Check {
	c.What, c.Value, c.Want, c.AtMost = what, v, want, atMost
	return c
}

// RecallFailures are the checks the CI gate fails on: recall and short
// results (latency ratios are reported, not gated: a shared CI machine's
// timings are too noisy to fail a build on).
func RecallFailures(checks []Check) []Check {
	var out []Check
	for _, c := range checks {
		if !c.Met() && !strings.HasPrefix(c.What, "p50") {
			out = append(out, c)
		}
	}
	return out
}

func find(results []Result, strategy, placement string, sel float64) *Result {
	for i, r := range results {
		if r.Strategy == strategy && r.Placement == placement && r.Selectivity == sel {
			return &results[i]
		}
	}
	return nil
}

func pct(sel float64) string { return fmt.Sprintf("%g%%", sel*100) }

// WriteJSON writes the results array.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// WriteMarkdown writes the summary (recall and p50 per strategy and cell),
// the targets, the full table and the run's machine and settings.
func (r *Report) WriteMarkdown(w io.Writer) error {
	p := &printer{w: w}
	p.f("Recall@%d and p50 latency per strategy; %d queries per cell, one client (latency), %d clients (throughput).", K, r.Data.Queries, r.Concurrency)
	if r.ExactQueries > 0 && r.ExactQueries < r.Data.Queries {
		p.f(" The exact strategy, which reads every permitted row, runs the first %d queries of each cell.", r.ExactQueries)
	}
	p.f("\n\n")
	p.f("| placement | selectivity | %s |\n", strings.Join(Strategies, " | "))
	p.f("|---|---|%s\n", strings.Repeat("---|", len(Strategies)))
	for _, u := range Cells("") {
		p.f("| %s | %s |", u.Placement, pct(u.Selectivity))
		for _, s := range Strategies {
			if x := find(r.Results, s, string(u.Placement), u.Selectivity); x != nil {
				p.f(" %.3f / %.2f ms |", x.Recall, x.P50)
			} else {
				p.f(" – |")
			}
		}
		p.f("\n")
	}
	p.f("\nTargets for the ragfence strategy:\n\n")
	for _, c := range Checks(r.Results) {
		p.f("- %s\n", c)
	}
	p.f("\n<details><summary>All measurements</summary>\n\n")
	p.f("| placement | selectivity | strategy | recall@10 | short results | p50 ms | p95 ms | p99 ms | qps |\n")
	p.f("|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Results {
		p.f("| %s | %s | %s | %.3f | %.3f | %.2f | %.2f | %.2f | %.0f |\n",
			x.Placement, pct(x.Selectivity), x.Strategy, x.Recall, x.Short, x.P50, x.P95, x.P99, x.QPS)
	}
	p.f("\n</details>\n\n")
	r.writeSetup(p)
	return p.err
}

func (r *Report) writeSetup(p *printer) {
	m, d := r.Machine, r.Data
	p.f("Run: `%s` (profile %s), %s, took %s.\n\n", r.Command, r.Profile, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration.Round(time.Second))
	p.f("- Machine: %s, %d cores, %.1f GiB, %s, %s\n", m.CPU, m.Cores, m.MemoryGiB, m.OS, m.GoVersion)
	p.f("- PostgreSQL %s, pgvector %s; settings:", m.PostgreSQL, m.PGVector)
	for _, name := range settingNames {
		p.f(" `%s=%s`", name, m.Settings[name])
	}
	p.f("\n- Data: %d rows of %d dimensions in %d Zipf(%g) clusters (latent dimension %d, spread %g, noise %g, seed %d); %d held-out queries\n",
		d.Rows, d.Dimension, d.Clusters, d.Zipf, d.Latent, d.Spread, d.Noise, d.Seed, d.Queries)
	p.f("- Load: copy %s, HNSW index (m=16, ef_construction=64, serial build) %s, B-tree/GIN indexes and ANALYZE %s\n",
		r.Load.Copy.Round(time.Millisecond), r.Load.VectorIndex.Round(time.Millisecond), r.Load.Other.Round(time.Millisecond))
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
