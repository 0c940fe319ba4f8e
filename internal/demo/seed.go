package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/sqlc/migrations"
	"github.com/ragfence/ragfence/sqlc/store"
)

// Summary says what Seed did.
type Summary struct {
	Skipped   bool // the same dataset was already there
	Tenants   int
	Users     int
	Documents int
	Grants    int
	Chunks    int
}

// Seed creates the knowledge base if needed and loads the dataset in one
// transaction, replacing any earlier demo data. It does nothing when the
// same dataset (seed, size, dimension) is already loaded, unless reset is set.
func Seed(ctx context.Context, conn *pgx.Conn, cfg Config, reset bool) (*Dataset, Summary, error) {
	cfg = cfg.withDefaults()
	opts := migrations.Options{KnowledgeBase: true, Dimension: cfg.Dimension, PartitionByTenant: cfg.PartitionByTenant}
	if _, err := migrations.Apply(ctx, conn, opts); err != nil {
		return nil, Summary{}, err
	}
	partitioned, err := migrations.Partitioned(ctx, conn)
	if err != nil {
		return nil, Summary{}, err
	}
	dim, err := migrations.Dimension(ctx, conn)
	if err != nil {
		return nil, Summary{}, err
	}
	if dim != cfg.Dimension {
		return nil, Summary{}, fmt.Errorf("demo: the knowledge base was created with dimension %d, not %d: pass --dim %d, or drop its tables first", dim, cfg.Dimension, dim)
	}
	d := Generate(cfg)
	marker := fmt.Sprintf("ragfence demo seed=%d chunks=%d dim=%d", cfg.Seed, cfg.Chunks, cfg.Dimension)
	if !reset {
		if same, err := alreadySeeded(ctx, conn, marker); err != nil || same {
			return d, Summary{Skipped: same}, err
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return load(ctx, tx, d, marker, partitioned) })
	if err != nil {
		return nil, Summary{}, fmt.Errorf("demo: load: %w", err)
	}
	return d, Summary{Tenants: len(d.Tenants), Users: len(d.Users), Documents: len(d.Documents), Grants: len(d.Grants), Chunks: len(d.Chunks)}, nil
}

func alreadySeeded(ctx context.Context, conn *pgx.Conn, marker string) (bool, error) {
	var comment *string
	err := conn.QueryRow(ctx, "SELECT obj_description(to_regclass('chunks'), 'pg_class')").Scan(&comment)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("demo: read seed marker: %w", err)
	}
	return comment != nil && *comment == marker, nil
}

// load replaces the demo rows. The HNSW index is dropped during the bulk load
// and built once afterwards, which is several times faster than maintaining it
// row by row; serially, because of pgvector issue #959 in parallel builds. In
// the partitioned layout each tenant gets its partitions before its rows
// (dropping the partitioned index drops every partition's, and creating it
// builds one graph per partition).
func load(ctx context.Context, tx pgx.Tx, d *Dataset, marker string, partitioned bool) error {
	steps := []string{
		"TRUNCATE chunks, document_grants, documents, users, tenants",
		"DROP INDEX IF EXISTS chunks_embedding_idx",
	}
	for _, s := range steps {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	q := store.New(tx)
	for _, t := range d.Tenants {
		if err := q.InsertTenant(ctx, store.InsertTenantParams(t)); err != nil {
			return err
		}
		if partitioned {
			if _, err := tx.Exec(ctx, "SELECT add_tenant_partitions($1)", t.ID); err != nil {
				return fmt.Errorf("partitions of tenant %s: %w", t.ID, err)
			}
		}
	}
	if _, err := q.InsertUsers(ctx, d.Users); err != nil {
		return err
	}
	if _, err := q.InsertDocuments(ctx, d.Documents); err != nil {
		return err
	}
	if _, err := q.InsertDocumentGrants(ctx, d.Grants); err != nil {
		return err
	}
	if _, err := q.InsertChunks(ctx, d.Chunks); err != nil {
		return err
	}
	finish := []string{
		"SET LOCAL max_parallel_maintenance_workers = 0",
		"SET LOCAL maintenance_work_mem = '256MB'",
		"CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops)",
		"COMMENT ON TABLE chunks IS " + quoteLiteral(marker),
		"ANALYZE tenants, users, documents, document_grants, chunks",
	}
	for _, s := range finish {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// quoteLiteral quotes a constant the demo itself builds (COMMENT takes no parameters).
func quoteLiteral(s string) string {
	out := []rune{'\''}
	for _, r := range s {
		if r == '\'' {
			out = append(out, '\'')
		}
		out = append(out, r)
	}
	return string(append(out, '\''))
}
