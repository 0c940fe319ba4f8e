package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/retriever/audit"
)

// inAuditedTx runs change in a transaction and writes the audit record it
// returns in the same one: an access change commits with its trail or not
// at all (and servers hear of it at the commit).
func inAuditedTx(ctx context.Context, conn *pgx.Conn, change func(tx pgx.Tx) (audit.Record, error)) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	r, err := change(tx)
	if err != nil {
		return err
	}
	r.DecidedAt, r.DecisionID = time.Now(), audit.NewDecisionID()
	if r.Detail == nil {
		r.Detail = map[string]any{}
	}
	r.Detail["channel"] = "cli"
	if err := audit.Write(ctx, tx, r); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
