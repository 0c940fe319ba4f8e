package filter_test

import (
	"context"
	"fmt"
	"os"
	"time"

	sq "github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// Wrap a pgx connection, pool or transaction and every query runs for the
// subject in the context. Here a transaction holds a scratch table and is
// rolled back at the end.
func ExampleWrap() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, exampleDSN())
	if err != nil {
		fmt.Println("no database:", err)
		return
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the scratch table goes with it
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE notes (id int, tenant_id text, owner_id text, body text);
		INSERT INTO notes VALUES (1, 'acme', 'alice', 'mine'), (2, 'acme', 'bob', 'bob''s'), (3, 'globex', 'alice', 'other tenant')`); err != nil {
		panic(err)
	}

	p := examplePolicy()
	// Each statement runs with JIT off and a timeout (DefaultStatementTimeout
	// unless set); in tx, they are restored after it.
	db := filter.Wrap(tx, p, filter.WithSearchPath("pg_temp"), filter.WithStatementTimeout(5*time.Second))

	ctx = filter.WithSubject(ctx, &policy.Subject{ID: "alice", Tenant: "acme"})
	rows, err := db.Query(ctx, `SELECT id, body FROM notes ORDER BY id`)
	if err != nil {
		panic(err)
	}
	for rows.Next() {
		var id int
		var body string
		if err := rows.Scan(&id, &body); err != nil {
			panic(err)
		}
		fmt.Println(id, body)
	}
	if err := rows.Err(); err != nil {
		panic(err)
	}

	// No subject, no query; writes never pass.
	_, err = db.Query(context.Background(), `SELECT id FROM notes`)
	fmt.Println(err)
	_, err = db.Exec(ctx, `DELETE FROM notes`)
	fmt.Println(filter.IsRefused(err))
	// Output:
	// 1 mine
	// filter: no subject in the context: call filter.WithSubject first
	// true
}

// Fragments also go straight into squirrel, for code that builds its own SQL.
func ExamplePolicy_Fragment_squirrel() {
	p := examplePolicy()
	frag, err := p.Fragment("notes", filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme"}, Alias: "n"})
	if err != nil {
		panic(err)
	}
	sql, args, err := sq.Select("n.id", "n.body").From("notes n").
		Where(sq.Eq{"n.archived": false}).Where(frag).PlaceholderFormat(sq.Dollar).ToSql()
	if err != nil {
		panic(err)
	}
	fmt.Println(sql)
	fmt.Println(args)
	// Output:
	// SELECT n.id, n.body FROM notes n WHERE n.archived = $1 AND (("n"."tenant_id" = $2::pg_catalog.text) AND ((("n".owner_id = $3::pg_catalog.text))))
	// [false acme alice]
}

// examplePolicy protects notes: each user sees their own, in their tenant.
func examplePolicy() *filter.Policy {
	set, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  notes:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`)})
	if err != nil {
		panic(err)
	}
	p, err := filter.Compile(set)
	if err != nil {
		panic(err)
	}
	return p
}

func exampleDSN() string {
	if dsn := os.Getenv("RAGFENCE_TEST_DATABASE_URL"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/ragfence_test?sslmode=disable"
}
