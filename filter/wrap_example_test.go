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
	tx, _ := conn.Begin(ctx)
	defer tx.Rollback(ctx)
	_, _ = tx.Exec(ctx, `CREATE TEMP TABLE notes (id int, tenant_id text, owner_id text, body text);
		INSERT INTO notes VALUES (1, 'acme', 'alice', 'mine'), (2, 'acme', 'bob', 'bob''s'), (3, 'globex', 'alice', 'other tenant')`)

	set, _ := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  notes:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`)})
	p, _ := filter.Compile(set)
	// Each statement runs with JIT off and a timeout (DefaultStatementTimeout
	// unless set); in tx, they are restored after it.
	db := filter.Wrap(tx, p, filter.WithSearchPath("pg_temp"), filter.WithStatementTimeout(5*time.Second))

	ctx = filter.WithSubject(ctx, &policy.Subject{ID: "alice", Tenant: "acme"})
	rows, _ := db.Query(ctx, `SELECT id, body FROM notes ORDER BY id`)
	for rows.Next() {
		var id int
		var body string
		_ = rows.Scan(&id, &body)
		fmt.Println(id, body)
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
	set, _ := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
version: 1
resources:
  notes:
    tenant: tenant_id
    allow:
      - name: owner
        when: owner_id = subject.id
`)})
	p, _ := filter.Compile(set)
	frag, _ := p.Fragment("notes", filter.Request{Subject: &policy.Subject{ID: "alice", Tenant: "acme"}, Alias: "n"})
	sql, args, _ := sq.Select("n.id", "n.body").From("notes n").
		Where(sq.Eq{"n.archived": false}).Where(frag).PlaceholderFormat(sq.Dollar).ToSql()
	fmt.Println(sql)
	fmt.Println(args)
	// Output:
	// SELECT n.id, n.body FROM notes n WHERE n.archived = $1 AND (("n"."tenant_id" = $2::pg_catalog.text) AND ((("n".owner_id = $3::pg_catalog.text))))
	// [false acme alice]
}

func exampleDSN() string {
	if dsn := os.Getenv("RAGFENCE_TEST_DATABASE_URL"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/ragfence_test?sslmode=disable"
}
