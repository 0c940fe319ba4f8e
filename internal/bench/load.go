package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgvector "github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/internal/pgpool"
)

// rlsRole is the role the row-level-security strategy connects as: RLS
// does not apply to the table's owner.
const rlsRole = "ragfence_bench_rls"

// Scratch is a database created for one run and dropped after it.
type Scratch struct {
	Name     string
	URL      string // the scratch database, as the owner
	RLSURL   string // the scratch database, as rlsRole
	adminURL string
}

// OpenScratch returns the scratch database name on the server adminURL
// names. With reuse, a database left by an earlier run (--keep) that holds
// exactly data is kept and loaded reports true; otherwise the database is
// created afresh, empty.
func OpenScratch(ctx context.Context, adminURL, name string, data DataConfig, reuse bool) (s *Scratch, loaded bool, err error) {
	s = &Scratch{Name: name, adminURL: adminURL}
	if s.URL, err = withDatabase(adminURL, name, ""); err != nil {
		return nil, false, err
	}
	if s.RLSURL, err = withDatabase(adminURL, name, rlsRole); err != nil {
		return nil, false, err
	}
	if reuse && holds(ctx, s.URL, data) {
		return s, true, nil
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, false, fmt.Errorf("bench: connect to %s: %w", redact(adminURL), err)
	}
	defer conn.Close(ctx)
	db := pgx.Identifier{name}.Sanitize()
	stmts := []string{
		"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)",
		"CREATE DATABASE " + db,
		`DO $$ BEGIN
		   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + rlsRole + `') THEN
		     CREATE ROLE ` + rlsRole + ` LOGIN;
		   END IF;
		 END $$`,
	}
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return nil, false, fmt.Errorf("bench: %s: %w", strings.Fields(stmt)[0], err)
		}
	}
	return s, false, nil
}

// holds says whether the database at dsn was loaded with data.
func holds(ctx context.Context, dsn string, data DataConfig) bool {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var marker *string
	err = conn.QueryRow(ctx, "SELECT obj_description('chunks'::regclass, 'pg_class')").Scan(&marker)
	return err == nil && marker != nil && *marker == dataMarker(data)
}

func dataMarker(data DataConfig) string {
	b, _ := json.Marshal(data)
	return "ragfence bench " + string(b)
}

// Drop removes the scratch database, and the RLS role unless a kept
// scratch database still grants it something.
func (s *Scratch) Drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return err
	}
	_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+rlsRole) // still in use elsewhere: it stays
	return nil
}

func withDatabase(dsn, db, user string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("bench: --url must be a postgres:// URL, got %q", redact(dsn))
	}
	u.Path = "/" + db
	if user != "" {
		u.User = url.User(user)
	}
	return u.String(), nil
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Timings are how long the load took, reported with the results.
type Timings struct {
	Copy, VectorIndex, Other time.Duration
}

// schemaSQL is the benchmark's table: a denormalised ACL column on the chunk
// with a GIN index, a tenant column with a B-tree, as docs/performance.md
// recommends.
const schemaSQL = `
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE chunks (
	id        bigint PRIMARY KEY,
	tenant_id text NOT NULL,
	acl       text[] NOT NULL,
	content   text NOT NULL,
	metadata  jsonb NOT NULL,
	embedding vector(%d) NOT NULL
);
GRANT SELECT ON chunks TO ` + rlsRole + `;
`

// Load creates the table, copies the dataset in and builds the indexes.
// The HNSW index is built serially: pgvector before 0.8.2 can overflow a
// buffer in parallel HNSW builds (pgvector issue #959).
func Load(ctx context.Context, dsn string, d *Dataset, tenant string) (Timings, error) {
	var t Timings
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return t, err
	}
	defer conn.Close(ctx)
	start := time.Now()
	if _, err := conn.Exec(ctx, fmt.Sprintf(schemaSQL, d.Config.Dimension)); err != nil {
		return t, fmt.Errorf("bench: create table: %w", err)
	}
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		return t, err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"chunks"},
		[]string{"id", "tenant_id", "acl", "content", "metadata", "embedding"},
		&rowSource{d: d, tenant: tenant, i: -1}); err != nil {
		return t, fmt.Errorf("bench: copy rows: %w", err)
	}
	t.Copy = time.Since(start)
	start = time.Now()
	vectorIndex := []string{
		"SET max_parallel_maintenance_workers = 0",
		"SET maintenance_work_mem = '2GB'",
		"CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops)",
	}
	if err := execAll(ctx, conn, vectorIndex); err != nil {
		return t, err
	}
	t.VectorIndex = time.Since(start)
	start = time.Now()
	rest := []string{
		"CREATE INDEX chunks_tenant_idx ON chunks (tenant_id)",
		"CREATE INDEX chunks_acl_idx ON chunks USING gin (acl)",
		"ALTER TABLE chunks ENABLE ROW LEVEL SECURITY",
		`CREATE POLICY chunks_read ON chunks FOR SELECT TO ` + rlsRole + ` USING (
			tenant_id = current_setting('ragfence.tenant')
			AND acl && string_to_array(current_setting('ragfence.groups'), ','))`,
		"VACUUM ANALYZE chunks",
		"COMMENT ON TABLE chunks IS " + quoteLiteral(dataMarker(d.Config)),
	}
	if err := execAll(ctx, conn, rest); err != nil {
		return t, err
	}
	t.Other = time.Since(start)
	return t, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func execAll(ctx context.Context, conn *pgx.Conn, stmts []string) error {
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("bench: %s: %w", s, err)
		}
	}
	return nil
}

type rowSource struct {
	d      *Dataset
	tenant string
	i      int
}

func (r *rowSource) Next() bool { r.i++; return r.i < len(r.d.Vectors) }
func (r *rowSource) Err() error { return nil }
func (r *rowSource) Values() ([]any, error) {
	id := int64(r.i + 1)
	return []any{
		id, r.tenant, r.d.ACL[r.i],
		fmt.Sprintf("chunk %d of cluster %d", id, r.d.Cluster[r.i]),
		fmt.Sprintf(`{"cluster": %d}`, r.d.Cluster[r.i]),
		pgvector.NewVector(r.d.Vectors[r.i]),
	}, nil
}

// OpenPool opens a pool with pgvector's types registered on every connection.
func OpenPool(ctx context.Context, dsn string, size int32) (*pgxpool.Pool, error) {
	cfg, err := pgpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = size
	cfg.MinConns = size
	return pgxpool.NewWithConfig(ctx, cfg)
}
