// Package pgpool configures the pgx connections ragfence opens, pooled or
// single: every one knows pgvector's types, so vectors bind and scan as
// pgvector.Vector.
package pgpool

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// ParseConfig parses dsn (as pgxpool.ParseConfig does) into a config whose
// connections register pgvector's types when they open. The database must
// have the vector extension; a connection fails without it.
func ParseConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.AfterConnect = RegisterVector
	return cfg, nil
}

// RegisterVector makes conn know pgvector's types; it fails, saying what
// to do, when the database lacks the vector extension.
func RegisterVector(ctx context.Context, conn *pgx.Conn) error {
	if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
		return fmt.Errorf("the pgvector extension is not installed in database %q: run `make db`, or CREATE EXTENSION vector as a superuser (%w)",
			conn.Config().Database, err)
	}
	return nil
}
