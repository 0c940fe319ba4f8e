package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/sqlc/store"
)

//go:embed bootstrap.sql
var bootstrapSQL string

//go:embed core/*.sql knowledge_base/*.sql knowledge_base_partitioned/*.sql
var files embed.FS

// partitionedDir holds the knowledge-base migrations that
// Options.PartitionByTenant applies in place of the set's own of the same
// version: the same tables, with chunks and document_grants partitioned by
// tenant. They are recorded in the knowledge_base set, so the set's later
// migrations apply to either layout. Not part of sqlc's schema
// (../sqlc.yaml), which would see each table twice.
const partitionedDir = "knowledge_base_partitioned"

// DefaultDimension is the embedding dimension of the knowledge base when none is chosen.
const DefaultDimension = 384

// MaxDimension is the largest dimension pgvector indexes with HNSW.
const MaxDimension = 2000

// dimensionToken is how the knowledge-base migrations spell the embedding type,
// so sqlc can parse them; Apply replaces it with the chosen dimension.
const dimensionToken = "vector(384)"

// lockKey identifies ragfence's migration advisory lock ("ragfence" in ASCII).
const lockKey int64 = 0x7261676665e3ce

// Set names a group of migrations applied and tracked together.
type Set string

const (
	// Core is ragfence's own schema (ragfence.*): always applied.
	Core Set = "core"
	// KnowledgeBase is the example knowledge base (tenants, documents, chunks):
	// applied only when asked for, since it creates tables outside the ragfence schema.
	KnowledgeBase Set = "knowledge_base"
)

// Options says which migrations to apply.
type Options struct {
	// KnowledgeBase also applies the example knowledge-base schema.
	KnowledgeBase bool
	// Dimension of the chunks.embedding column, used when the knowledge base
	// is first created; zero means DefaultDimension.
	Dimension int
	// PartitionByTenant creates the knowledge base with chunks and
	// document_grants partitioned by LIST (tenant_id), a DEFAULT partition
	// each and add_tenant_partitions(tenant) to give a tenant its own (see
	// knowledge_base_partitioned/). Like Dimension it is chosen when the
	// knowledge base is first created: asking for it where the knowledge
	// base exists unpartitioned is a *LayoutError, while leaving it out
	// where it exists partitioned keeps that layout. It needs KnowledgeBase.
	PartitionByTenant bool
}

// Applied names one migration that Apply ran.
type Applied struct {
	Set     Set
	Version int
	Name    string
}

// Migration is one numbered SQL file of a set.
type Migration struct {
	Set     Set
	Version int
	Name    string
	SQL     string
}

// Checksum identifies the migration's text as shipped, before any substitution,
// so a file edited after it was applied is noticed.
func (m Migration) Checksum() string {
	sum := sha256.Sum256([]byte(m.SQL))
	return hex.EncodeToString(sum[:])
}

// Load returns the numbered migrations of a set in version order.
func Load(set Set) ([]Migration, error) {
	return loadDir(set, string(set))
}

// LoadPartitioned returns the knowledge-base migrations that
// Options.PartitionByTenant applies in place of the set's own, by version.
func LoadPartitioned() (map[int]Migration, error) {
	base, err := Load(KnowledgeBase)
	if err != nil {
		return nil, err
	}
	variants, err := loadDir(KnowledgeBase, partitionedDir)
	if err != nil {
		return nil, err
	}
	out := make(map[int]Migration, len(variants))
	for _, v := range variants {
		if v.Version > len(base) {
			return nil, fmt.Errorf("migrations: %s/%s replaces no migration of %s", partitionedDir, v.Name, KnowledgeBase)
		}
		out[v.Version] = v
	}
	return out, nil
}

// loadDir reads the numbered migrations of set from dir, in version order.
func loadDir(set Set, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: unknown set %q: %w", set, err)
	}
	var out []Migration
	for _, e := range entries {
		m, err := parse(set, dir, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations: %s has two migrations numbered %d", set, out[i].Version)
		}
	}
	return out, nil
}

func parse(set Set, dir, name string) (Migration, error) {
	num, _, ok := strings.Cut(name, "_")
	version, err := strconv.Atoi(num)
	if !ok || err != nil || version <= 0 {
		return Migration{}, fmt.Errorf("migrations: file %s/%s must be named NNNN_description.sql", dir, name)
	}
	body, err := files.ReadFile(path.Join(dir, name))
	if err != nil {
		return Migration{}, err
	}
	return Migration{Set: set, Version: version, Name: name, SQL: string(body)}, nil
}

// Apply runs every migration not yet applied, in one transaction, under an
// advisory lock: two processes starting at once apply each migration exactly
// once, and a failure leaves the database as it was.
func Apply(ctx context.Context, conn *pgx.Conn, opts Options) ([]Applied, error) {
	dim, err := dimension(opts.Dimension)
	if err != nil {
		return nil, err
	}
	if opts.PartitionByTenant && !opts.KnowledgeBase {
		return nil, errors.New("migrations: PartitionByTenant applies to the knowledge base: set KnowledgeBase too")
	}
	sets := []Set{Core}
	if opts.KnowledgeBase {
		sets = append(sets, KnowledgeBase)
	}
	var applied []Applied
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, bootstrapSQL); err != nil {
			return fmt.Errorf("create ragfence.schema_migrations: %w", err)
		}
		for _, set := range sets {
			done, err := applySet(ctx, tx, set, dim, opts.PartitionByTenant)
			if err != nil {
				return err
			}
			applied = append(applied, done...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

func dimension(d int) (int, error) {
	if d == 0 {
		return DefaultDimension, nil
	}
	if d < 1 || d > MaxDimension {
		return 0, fmt.Errorf("migrations: embedding dimension %d out of range: choose 1 to %d", d, MaxDimension)
	}
	return d, nil
}

func applySet(ctx context.Context, tx pgx.Tx, set Set, dim int, partitioned bool) ([]Applied, error) {
	all, err := Load(set)
	if err != nil {
		return nil, err
	}
	var variants map[int]Migration
	if set == KnowledgeBase {
		if variants, err = LoadPartitioned(); err != nil {
			return nil, err
		}
	}
	q := store.New(tx)
	rows, err := q.AppliedMigrations(ctx, string(set))
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	seen := make(map[int]store.AppliedMigrationsRow, len(rows))
	for _, r := range rows {
		seen[int(r.Version)] = r
	}
	var applied []Applied
	for _, m := range all {
		v, hasVariant := variants[m.Version]
		if prev, ok := seen[m.Version]; ok {
			if err := checkApplied(prev, m, v, hasVariant, partitioned); err != nil {
				return nil, err
			}
			continue
		}
		if hasVariant && partitioned {
			m = v
		}
		if err := applyOne(ctx, tx, q, m, dim); err != nil {
			return nil, err
		}
		applied = append(applied, Applied{Set: set, Version: m.Version, Name: m.Name})
	}
	return applied, nil
}

// applyOne runs m with the embedding dimension substituted, and records it.
func applyOne(ctx context.Context, tx pgx.Tx, q *store.Queries, m Migration, dim int) error {
	if m.Set == KnowledgeBase && m.Version == 1 {
		// The first migration creates the tables; later ones alter them.
		if err := checkNoExistingTables(ctx, tx); err != nil {
			return err
		}
	}
	sql := strings.ReplaceAll(m.SQL, dimensionToken, fmt.Sprintf("vector(%d)", dim))
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("apply %s/%s: %w", m.Set, m.Name, err)
	}
	if err := q.RecordMigration(ctx, store.RecordMigrationParams{
		MigrationSet: string(m.Set), Version: int32(m.Version), Name: m.Name, Checksum: m.Checksum(),
	}); err != nil {
		return fmt.Errorf("record %s/%s: %w", m.Set, m.Name, err)
	}
	return nil
}

// checkApplied compares an applied migration with the file it was applied
// from: m, or for a version the partitioned layout replaces, whichever of
// m and its variant v the recorded name says. Asking for the partitioned
// layout where m was applied is a *LayoutError.
func checkApplied(prev store.AppliedMigrationsRow, m, v Migration, hasVariant, partitioned bool) error {
	if hasVariant {
		switch {
		case prev.Name == v.Name:
			m = v
		case partitioned:
			return &LayoutError{Applied: prev.Name, Wanted: v.Name}
		}
	}
	if prev.Checksum != m.Checksum() {
		return &ChangedError{Migration: m}
	}
	return nil
}

// checkNoExistingTables refuses to create the example knowledge base over a
// user's tables of the same names, which the migration would otherwise fail
// on halfway with a less helpful message.
func checkNoExistingTables(ctx context.Context, tx pgx.Tx) error {
	var schema string
	var existing []string
	err := tx.QueryRow(ctx, `
		SELECT current_schema(), coalesce(array_agg(c.relname ORDER BY c.relname), '{}')
		FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace
		  AND c.relname = ANY ('{tenants,users,documents,document_grants,chunks}')`).Scan(&schema, &existing)
	if err != nil {
		return fmt.Errorf("inspect current schema: %w", err)
	}
	if len(existing) > 0 {
		return fmt.Errorf("migrations: the example knowledge base would create tables that already exist in schema %s (%s); use another database or schema for the demo",
			schema, strings.Join(existing, ", "))
	}
	return nil
}

// ChangedError reports a migration whose text differs from the one applied.
type ChangedError struct{ Migration Migration }

func (e *ChangedError) Error() string {
	return fmt.Sprintf("migrations: %s/%s was changed after it was applied; restore it and add a new numbered migration instead",
		e.Migration.Set, e.Migration.Name)
}

// LayoutError reports a knowledge base created in another layout than the
// one asked for; the layout is chosen when it is first created.
type LayoutError struct {
	Applied, Wanted string // the migration recorded, the one asked for
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("migrations: the knowledge base was created unpartitioned (%s/%s), and --partition-by-tenant applies only "+
		"when it is first created: drop its tables, or use another database or schema, to create it partitioned (%s)",
		KnowledgeBase, e.Applied, e.Wanted)
}

// Dimension reports the dimension of the knowledge base's embedding column,
// or 0 when the knowledge base does not exist.
func Dimension(ctx context.Context, conn *pgx.Conn) (int, error) {
	var typmod int
	err := conn.QueryRow(ctx, `
		SELECT a.atttypmod FROM pg_attribute a
		WHERE a.attrelid = to_regclass('chunks') AND a.attname = 'embedding' AND NOT a.attisdropped`).Scan(&typmod)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read embedding dimension: %w", err)
	}
	return typmod, nil
}

// Partitioned reports whether the knowledge base's chunks table is
// partitioned (false too when it does not exist).
func Partitioned(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var p bool
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('chunks')), false)`).Scan(&p)
	if err != nil {
		return false, fmt.Errorf("read the knowledge base's layout: %w", err)
	}
	return p, nil
}
