// Package pgpool configures the pgx pools ragfence opens: every connection
// knows pgvector's types, so vectors bind and scan as pgvector.Vector.
package pgpool

import (
	"context"

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
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	return cfg, nil
}
