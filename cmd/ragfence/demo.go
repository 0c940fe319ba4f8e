package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/sqlc/migrations"
)

func init() {
	register("demo", "seed the demo knowledge base and write its policy and example files", runDemo)
}

func runDemo(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("demo", "demo --db URL [--out DIR] [--chunks N] [--dim N] [--seed N] [--reset] [--partition-by-tenant]", out)
	db := dbFlag(fs)
	dir := fs.String("out", "ragfence-demo", "folder for the demo policy, subject files and example requests")
	chunks := fs.Int("chunks", 20000, "number of chunks to generate")
	dim := fs.Int("dim", migrations.DefaultDimension, "embedding dimension")
	seed := fs.Uint64("seed", 1, "random seed; the same seed gives the same data")
	reset := fs.Bool("reset", false, "reload the data even when the same dataset is already there")
	url := fs.String("url", "http://localhost:8080", "where the server runs, for the printed curl commands")
	partitioned := partitionFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *chunks < 1 || *chunks > 5_000_000 {
		return usagef("--chunks must be between 1 and 5000000")
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	d, sum, err := demo.Seed(ctx, conn, demo.Config{Seed: *seed, Chunks: *chunks, Dimension: *dim, PartitionByTenant: *partitioned}, *reset)
	if err != nil {
		return err
	}
	if sum.Skipped {
		fmt.Fprintf(out, "demo: data already loaded (seed %d, %d chunks); --reset reloads it\n", *seed, *chunks)
	} else {
		fmt.Fprintf(out, "demo: loaded %d tenants, %d users, %d documents, %d grants, %d chunks in %s\n",
			sum.Tenants, sum.Users, sum.Documents, sum.Grants, sum.Chunks, time.Since(start).Round(100*time.Millisecond))
	}
	files, err := demo.WriteFiles(*dir, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: wrote %s, %d subject files and %d example requests under %s\n", files.Policy, len(files.Subjects), len(files.Requests), files.Dir)
	printDemoCommands(out, *url, files)
	return nil
}
