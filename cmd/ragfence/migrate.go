package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ragfence/ragfence/sqlc/migrations"
)

func init() {
	register("migrate", "create or update ragfence's own tables (schema ragfence)", runMigrate)
}

func runMigrate(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("migrate", "migrate --db URL [--knowledge-base [--dim N] [--partition-by-tenant]]", out)
	db := dbFlag(fs)
	kb := fs.Bool("knowledge-base", false, "also create the example knowledge base (tenants, documents, chunks) in the connection's schema")
	dim := fs.Int("dim", migrations.DefaultDimension, "embedding dimension of the knowledge base, chosen when it is first created")
	partitioned := partitionFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *partitioned && !*kb {
		return usagef("--partition-by-tenant needs --knowledge-base")
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, err := migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: *kb, Dimension: *dim, PartitionByTenant: *partitioned})
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(out, "migrate: up to date, nothing to apply")
		return nil
	}
	for _, a := range applied {
		fmt.Fprintf(out, "migrate: applied %s/%s\n", a.Set, a.Name)
	}
	return nil
}

// partitionFlag is --partition-by-tenant, shared by migrate and demo.
func partitionFlag(fs *flagSet) *bool {
	return fs.Bool("partition-by-tenant", false, "create the knowledge base with chunks and document_grants partitioned by tenant "+
		"(LIST, a DEFAULT partition, add_tenant_partitions(tenant) for a tenant's own; see docs/scaling.md); chosen when it is first created")
}
