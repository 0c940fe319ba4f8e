package revocation_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/revocation"
)

// A request is checked before anything touches the database.
func ExampleRequest_Validate() {
	err := revocation.Request{Tenant: "acme", TokenID: "jti-1", Subject: "alice", By: "secops"}.Validate()
	fmt.Println(revocation.CodeOf(err), err)
	// Output: invalid_revocation revocation: a token revocation names only the token; revoke the subject or agent separately
}

// Revoking an agent for one user for two hours, and checking a request
// the way a server does (the Watcher sees the revocation within
// milliseconds of the commit).
func ExampleWatcher_Check() {
	ctx := context.Background()
	dsn := "postgres://localhost/app"
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	r, err := revocation.NewStore(pool).Revoke(ctx, revocation.Request{
		Tenant: "acme", Agent: "summarizer", Subject: "alice", By: "secops", For: 2 * time.Hour,
		Reason: "prompt injection suspected",
	})
	if err != nil {
		panic(err)
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		panic(err)
	}
	w, err := revocation.Watch(ctx, revocation.WatchConfig{ConnConfig: cc})
	if err != nil {
		panic(err)
	}
	defer w.Close()
	err = w.Check(revocation.Caller{Tenant: "acme", Subject: "alice", Agent: "summarizer"})
	fmt.Println(r.ID, revocation.CodeOf(err)) // 1 agent_revoked
}
