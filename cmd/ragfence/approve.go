package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/service"
)

func init() {
	register("approve", "approve (or --deny) an agent's pending approval request as an operator", runApprove)
	register("grant", "approve an agent's approval rule ahead of time, for a window", runGrant)
}

func runApprove(ctx context.Context, args []string, out, _ io.Writer) error {
	fs := newFlags("approve", "approve --db URL [--deny] [--by NAME] ID\n\n"+
		"Decides a pending request (POST /v1/approvals) as an operator; its user can\n"+
		"decide it too, at POST /v1/approvals/{id}/approve or /deny.", out)
	db := dbFlag(fs)
	deny := fs.Bool("deny", false, "deny the request instead")
	by := fs.String("by", "", "who decides (default: the operating system user)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give the request's id (GET /v1/approvals lists them)")
	}
	conn, _, err := connectPlain(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var a approval.Approval
	err = inAuditedTx(ctx, conn, func(tx pgx.Tx) (audit.Record, error) {
		var err error
		a, err = approval.NewStore(tx).Decide(ctx, fs.Arg(0), !*deny, approval.Decider{By: operatorName(*by)})
		return approvalRecord(a, string(a.Status), operatorName(*by)), err
	})
	if err != nil {
		return schemaHint(err)
	}
	if a.Status == approval.StatusApproved {
		fmt.Fprintf(out, "approved %s until %s\n", a.ID, a.ValidUntil.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(out, "denied %s\n", a.ID)
	return nil
}

func runGrant(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("grant", "grant --db URL --tenant T --subject S --agent A --collection C --rule R [--from TIME] --until TIME [--policy P] [--reason TEXT]\n\n"+
		"Lifts the agent's approval rule for the user within the window (RFC 3339\n"+
		"times), without a request: permission for a planned task. Prints the id.\n"+
		"With --policy, the policy must have the rule; the window may not exceed --max-approval-ttl\n"+
		"(servers end any approval at their own maximum).", out)
	db := dbFlag(fs)
	var policies multiFlag
	fs.Var(&policies, "policy", "policy file or folder (repeatable): the agent's approval rule must be in it (recommended)")
	maxTTL := fs.Duration("max-approval-ttl", service.DefaultMaxApprovalTTL, "the longest window a grant may have (as the servers' --max-approval-ttl)")
	var t approval.Target
	fs.StringVar(&t.Tenant, "tenant", "", "the user's tenant")
	fs.StringVar(&t.Subject, "subject", "", "the user the agent acts for")
	fs.StringVar(&t.Agent, "agent", "", "the agent")
	fs.StringVar(&t.Resource, "collection", "", "the collection (the policy's resource)")
	fs.StringVar(&t.Rule, "rule", "", "the agent's approval rule")
	from := fs.String("from", "", "the window's start, RFC 3339 (default: now)")
	until := fs.String("until", "", "the window's end, RFC 3339")
	reason := fs.String("reason", "", "why, for the audit trail")
	by := fs.String("by", "", "who grants (default: the operating system user)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if t.Tenant == "" || t.Subject == "" || t.Agent == "" || t.Resource == "" || t.Rule == "" || *until == "" {
		return usagef("--tenant, --subject, --agent, --collection, --rule and --until are required")
	}
	start, end := time.Now(), time.Time{}
	var err error
	if *from != "" {
		if start, err = time.Parse(time.RFC3339, *from); err != nil {
			return usagef("--from must be an RFC 3339 time such as 2026-12-01T09:00:00Z")
		}
	}
	if end, err = time.Parse(time.RFC3339, *until); err != nil {
		return usagef("--until must be an RFC 3339 time such as 2026-12-01T17:00:00Z")
	}
	if !end.After(start) {
		return usagef("--until must be after --from")
	}
	if end.Sub(start) > *maxTTL {
		return usagef("the window lasts %s, longer than --max-approval-ttl %s: servers would end it early", end.Sub(start), *maxTTL)
	}
	if err := checkApprovalRule(errOut, policies, t); err != nil {
		return err
	}
	conn, _, err := connectPlain(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var a approval.Approval
	err = inAuditedTx(ctx, conn, func(tx pgx.Tx) (audit.Record, error) {
		var err error
		a, err = approval.NewStore(tx).Grant(ctx, t, start, end, operatorName(*by), *reason)
		return approvalRecord(a, "granted", operatorName(*by)), err
	})
	if err != nil {
		return schemaHint(err)
	}
	fmt.Fprintln(out, a.ID)
	return nil
}

// approvalRecord is the audit record of an operator's decision or grant.
func approvalRecord(a approval.Approval, event, by string) audit.Record {
	return audit.Record{Tenant: a.Tenant, Subject: a.Subject, Agent: a.Agent, Resource: a.Resource, Outcome: "approval",
		Detail: map[string]any{"event": event, "approval_id": a.ID, "rule": a.Rule, "by": by,
			"valid_from": a.ValidFrom, "valid_until": a.ValidUntil}}
}

// checkApprovalRule refuses a grant the policy has no approval rule for: it
// would lift nothing.
func checkApprovalRule(errOut io.Writer, policies multiFlag, t approval.Target) error {
	if len(policies) == 0 {
		fmt.Fprintf(errOut, "warning: without --policy the approval rule %q is not checked; a rule the policy lacks lifts nothing\n", t.Rule)
		return nil
	}
	set, err := loadPolicy(errOut, policies...)
	if err != nil {
		return err
	}
	res, ok := set.Resources[t.Resource]
	if !ok {
		return usagef("the policy has no collection %q; it has: %s", t.Resource, strings.Join(set.Names, ", "))
	}
	if g := res.Agents[t.Agent]; g == nil || g.ApprovalRule(t.Rule) == nil {
		return usagef("agent %q has no approval rule %q on %q in the policy", t.Agent, t.Rule, t.Resource)
	}
	return nil
}
