package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ragfence/ragfence/internal/bench"
	"github.com/ragfence/ragfence/retriever"
)

func init() {
	register("bench", "compare filtered vector search strategies on generated data (recall, latency, throughput)", runBench)
}

type benchFlags struct {
	db, jsonFile, mdFile, chartsDir string
	cells, strategies               string
	quick, keep                     bool
	rows, queries, concurrency      int
	exactQueries                    int
	search                          retriever.Config
}

func runBench(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("bench", "bench --db URL [--quick] [--json FILE] [--markdown FILE] [--charts DIR]\n\n"+
		"Generates a dataset in a scratch database next to --db (dropped afterwards unless --keep),\n"+
		"runs the same queries through six strategies (unfiltered ANN, application post-filtering,\n"+
		"row-level security, ragfence's predicate with plain index settings, ragfence's full strategy,\n"+
		"exact kNN) at 100%, 10%, 1% and 0.1% selectivity, and prints a Markdown report. Exits 1 if\n"+
		"ragfence's recall@10 is below 0.98 or it returned fewer than k rows in any cell.\n\n"+
		"The RLS strategy connects as role ragfence_bench_rls, created without a password: the\n"+
		"server must let it log in to the scratch database (trust or peer authentication locally).", out)
	var f benchFlags
	fs.StringVar(&f.db, "db", os.Getenv("DATABASE_URL"), "PostgreSQL URL; the scratch database is created on the same server (default $DATABASE_URL)")
	fs.BoolVar(&f.quick, "quick", false, "the CI profile: 20,000 rows, 300 queries per cell (default: 200,000 rows, 2,000 queries)")
	fs.BoolVar(&f.keep, "keep", false, "keep the scratch database; a later run with the same data reuses it instead of loading again")
	fs.IntVar(&f.rows, "rows", 0, "override the profile's row count")
	fs.IntVar(&f.queries, "queries", 0, "override the profile's queries per cell")
	fs.IntVar(&f.concurrency, "concurrency", 4, "clients of the throughput pass")
	fs.IntVar(&f.exactQueries, "exact-queries", 200, "queries per cell the exact strategy runs (it reads every permitted row; recall is computed in Go for all queries)")
	fs.IntVar(&f.search.EfSearch, "ef-search", 0, fmt.Sprintf("hnsw.ef_search of the ragfence strategy (default %d)", retriever.DefaultEfSearch))
	fs.IntVar(&f.search.MaxScanTuples, "max-scan-tuples", 0, fmt.Sprintf("hnsw.max_scan_tuples of the ragfence strategy (default %d)", retriever.DefaultMaxScanTuples))
	fs.IntVar(&f.search.ExactRows, "exact-rows", 0, fmt.Sprintf("estimated permitted rows at or below which the ragfence strategy reads them exactly (default %d)", retriever.DefaultExactRows))
	fs.IntVar(&f.search.EfFactor, "ef-factor", 0, fmt.Sprintf("ef_search per k/selectivity of the ragfence strategy's walk (default %d)", retriever.DefaultEfFactor))
	fs.IntVar(&f.search.Overfetch, "overfetch", 0, fmt.Sprintf("times k permitted rows the ragfence strategy's walk collects before re-sorting (default %d)", retriever.DefaultOverfetch))
	fs.BoolVar(&f.search.StrictOrder, "strict-order", false, "walk the index with hnsw.iterative_scan = strict_order instead of relaxed_order")
	fs.StringVar(&f.cells, "cells", "", "comma-separated cells to run, e.g. all,aligned-10,uncorrelated-0.1 (default: all cells)")
	fs.StringVar(&f.strategies, "strategies", "", "comma-separated strategies to run besides unfiltered and exact (default: all)")
	fs.StringVar(&f.jsonFile, "json", "", "also write the results as a JSON array to FILE")
	fs.StringVar(&f.mdFile, "markdown", "", "write the Markdown report to FILE instead of standard output")
	fs.StringVar(&f.chartsDir, "charts", "", "write recall.png and latency.png to DIR")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if f.concurrency < 1 {
		return usagef("--concurrency must be at least 1")
	}
	if f.db == "" {
		return usagef("no database given: pass --db postgres://user@host:5432/db or set DATABASE_URL (make db prints one)")
	}
	rep, err := benchmark(ctx, f, args, errOut)
	if err != nil {
		return err
	}
	return writeBench(rep, f, out)
}

func benchmark(ctx context.Context, f benchFlags, args []string, errOut io.Writer) (*bench.Report, error) {
	profile := "full"
	if f.quick {
		profile = "quick"
	}
	logf := func(format string, a ...any) { fmt.Fprintf(errOut, "bench: "+format+"\n", a...) }
	rep, err := bench.Execute(ctx, bench.Options{
		DB: f.db, Profile: profile, Rows: f.rows, Queries: f.queries, Concurrency: f.concurrency,
		ExactQueries: f.exactQueries, Search: f.search, Keep: f.keep,
		Cells: splitList(f.cells), Strategies: splitList(f.strategies), Command: benchCommand(args, f.db), Logf: logf,
		OnResult: func(r bench.Result) {
			logf("%-15s %-5s %-12s recall %.3f short %.3f p50 %.2f ms p99 %.2f ms %.0f qps",
				r.Placement, fmt.Sprintf("%g%%", r.Selectivity*100), r.Strategy, r.Recall, r.Short, r.P50, r.P99, r.QPS)
		},
	})
	if errors.Is(err, bench.ErrTooFewRows) {
		return nil, usagef("--rows must be at least %d, so the 0.1%% user can see %d rows", bench.MinRows(), bench.K)
	}
	return rep, err
}

// benchCommand is the command line for the report, the database URL (which
// may hold a password) replaced by $DATABASE_URL.
func benchCommand(args []string, db string) string {
	out := []string{"ragfence", "bench"}
	for i, a := range args {
		switch {
		case a == db || (i > 0 && (args[i-1] == "--db" || args[i-1] == "-db")):
			a = "$DATABASE_URL"
		case strings.HasPrefix(a, "--db=") || strings.HasPrefix(a, "-db="):
			a = a[:strings.Index(a, "=")+1] + "$DATABASE_URL"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

func writeBench(rep *bench.Report, f benchFlags, out io.Writer) error {
	md := out
	if f.mdFile != "" {
		file, err := os.Create(f.mdFile)
		if err != nil {
			return err
		}
		defer file.Close()
		md = file
	}
	if err := rep.WriteMarkdown(md); err != nil {
		return err
	}
	if f.jsonFile != "" {
		if err := writeFileWith(f.jsonFile, func(w io.Writer) error { return bench.WriteJSON(w, rep.Results) }); err != nil {
			return err
		}
	}
	if f.chartsDir != "" {
		if err := bench.WriteCharts(f.chartsDir, rep); err != nil {
			return err
		}
	}
	if failed := bench.RecallFailures(bench.Checks(rep.Results)); len(failed) > 0 {
		lines := make([]string, len(failed))
		for i, c := range failed {
			lines[i] = c.String()
		}
		return &exitError{code: exitFailure, msg: "bench: ragfence missed its recall target:\n  " + strings.Join(lines, "\n  ")}
	}
	return nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func writeFileWith(path string, write func(io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(file); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}
