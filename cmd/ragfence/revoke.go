package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/revocation"
)

func init() {
	register("revoke", "revoke a token, subject or agent on every server at once; list or lift revocations", runRevoke)
}

const revokeUsage = `revoke --db URL --tenant T (--token JTI | --subject ID | --agent ID [--subject ID]) [--for DURATION] [--reason TEXT]
       ragfence revoke --db URL --list [--tenant T]
       ragfence revoke --db URL --lift ID
       ragfence revoke --db URL --prune

Every ragfence serve on the database refuses a matching request within a
second: a revoked token gets 401 token_revoked, a revoked subject 403
subject_revoked, a revoked agent 403 agent_revoked. Revoking prints the new
revocation's id.`

type revokeFlags struct {
	tenant, token, subject, agent, reason, by string
	tokenExpires                              string
	lift                                      int64
	forDur                                    time.Duration
	list, prune                               bool
}

func runRevoke(ctx context.Context, args []string, out, _ io.Writer) error {
	fs := newFlags("revoke", revokeUsage, out)
	var f revokeFlags
	db := dbFlag(fs)
	fs.StringVar(&f.tenant, "tenant", "", "the tenant of what is revoked (for --list: only this tenant's)")
	fs.StringVar(&f.token, "token", "", "revoke one token: its jti claim")
	fs.StringVar(&f.subject, "subject", "", "revoke every token of this user (agents acting for them included); with --agent, only the agent acting for this user")
	fs.StringVar(&f.agent, "agent", "", "revoke every token in which this agent acts")
	fs.DurationVar(&f.forDur, "for", 0, "how long the revocation lasts, e.g. 2h (default: until lifted)")
	fs.StringVar(&f.reason, "reason", "", "why, for operators and the audit trail (never shown to the refused caller)")
	fs.StringVar(&f.by, "by", "", "who revokes or lifts (default: the operating system user)")
	fs.StringVar(&f.tokenExpires, "token-expires", "", "with --token: the token's expiry (RFC 3339), after which --prune may drop the revocation")
	fs.BoolVar(&f.list, "list", false, "list the revocations in force")
	fs.Int64Var(&f.lift, "lift", 0, "end the revocation with this id now")
	fs.BoolVar(&f.prune, "prune", false, "drop token revocations whose tokens have expired")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req, err := f.request()
	if err != nil {
		return err
	}
	conn, _, err := connectPlain(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	s := revocation.NewStore(conn)
	switch {
	case f.list:
		rs, err := s.InForce(ctx, f.tenant)
		if err != nil {
			return schemaHint(err)
		}
		return printRevocations(out, rs)
	case f.prune:
		n, err := s.Prune(ctx)
		if err != nil {
			return schemaHint(err)
		}
		fmt.Fprintf(out, "pruned %d expired token revocations\n", n)
		return nil
	}
	var r revocation.Revocation
	err = inAuditedTx(ctx, conn, func(tx pgx.Tx) (audit.Record, error) {
		var err error
		event := "revoked"
		if f.lift != 0 {
			r, err = revocation.NewStore(tx).Lift(ctx, f.lift, f.operator())
			event = "lifted"
		} else {
			r, err = revocation.NewStore(tx).Revoke(ctx, req)
		}
		return revocationRecord(r, event, f.operator()), err
	})
	if err != nil {
		return schemaHint(err)
	}
	if f.lift != 0 {
		fmt.Fprintf(out, "lifted revocation %d (%s %s of tenant %s)\n", r.ID, r.Kind, target(r), r.Tenant)
		return nil
	}
	fmt.Fprintln(out, r.ID)
	return nil
}

// revocationRecord is the audit record of making or lifting r.
func revocationRecord(r revocation.Revocation, event, by string) audit.Record {
	return audit.Record{Tenant: r.Tenant, Subject: r.Subject, Agent: r.Agent, Outcome: "revocation",
		Detail: map[string]any{"event": event, "revocation_id": r.ID, "kind": string(r.Kind), "token_id": r.TokenID,
			"by": by, "reason": r.Reason}}
}

// check refuses combinations of the operations before connecting.
func (f *revokeFlags) check() error {
	ops := 0
	for _, on := range []bool{f.list, f.lift != 0, f.prune} {
		if on {
			ops++
		}
	}
	making := f.token != "" || f.subject != "" || f.agent != ""
	switch {
	case ops > 1 || (ops == 1 && making):
		return usagef("give one of: what to revoke, --list, --lift ID, --prune")
	case f.lift < 0:
		return usagef("--lift takes a revocation id (see --list)")
	case ops == 0 && !making:
		return usagef("name what to revoke: --token JTI, --subject ID or --agent ID (with --tenant)")
	case ops == 0 && f.tenant == "":
		return usagef("--tenant is required: a revocation belongs to one tenant")
	case f.forDur < 0:
		return usagef("--for must be a positive duration, e.g. 2h")
	}
	return nil
}

// request is the revocation the flags make, checked before connecting
// (zero when they list, lift or prune).
func (f *revokeFlags) request() (revocation.Request, error) {
	if err := f.check(); err != nil || f.list || f.lift != 0 || f.prune {
		return revocation.Request{}, err
	}
	req := revocation.Request{Tenant: f.tenant, TokenID: f.token, Subject: f.subject, Agent: f.agent,
		Reason: f.reason, By: f.operator(), For: f.forDur}
	if f.tokenExpires != "" {
		t, err := time.Parse(time.RFC3339, f.tokenExpires)
		if err != nil {
			return req, usagef("--token-expires must be an RFC 3339 time such as 2026-12-01T18:00:00Z")
		}
		req.TokenExpiresAt = t
	}
	var e *revocation.Error
	if err := req.Validate(); errors.As(err, &e) {
		return req, usagef("%s", e.Msg)
	}
	return req, nil
}

func (f *revokeFlags) operator() string { return operatorName(f.by) }

// operatorName is by, or the operating system user who runs the command.
func operatorName(by string) string {
	if by != "" {
		return by
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "ragfence-cli"
}

func target(r revocation.Revocation) string {
	switch r.Kind {
	case revocation.KindToken:
		return r.TokenID
	case revocation.KindSubject:
		return r.Subject
	}
	if r.Subject != "" {
		return r.Agent + " for " + r.Subject
	}
	return r.Agent
}

func printRevocations(out io.Writer, rs []revocation.Revocation) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tKIND\tTARGET\tSINCE\tENDS\tBY\tREASON")
	for _, r := range rs {
		ends := "until lifted"
		if !r.EndsAt.IsZero() {
			ends = r.EndsAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strconv.FormatInt(r.ID, 10), r.Tenant, r.Kind, target(r),
			r.CreatedAt.UTC().Format(time.RFC3339), ends, r.CreatedBy, r.Reason)
	}
	return tw.Flush()
}

// schemaHint turns a missing ragfence schema into what to do about it.
func schemaHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return fmt.Errorf("the database lacks ragfence's tables: run `ragfence migrate --db URL` first (%w)", err)
	}
	return err
}
