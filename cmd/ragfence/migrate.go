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
	fs := newFlags("migrate", "migrate --db URL [--knowledge-base [--dim N]]", out)
	db := dbFlag(fs)
	kb := fs.Bool("knowledge-base", false, "also create the example knowledge base (tenants, documents, chunks) in the connection's schema")
	dim := fs.Int("dim", migrations.DefaultDimension, "embedding dimension of the knowledge base, chosen when it is first created")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, err := migrations.Apply(ctx, conn, migrations.Options{KnowledgeBase: *kb, Dimension: *dim})
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
