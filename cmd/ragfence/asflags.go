package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/filter"
)

// asSubject are the flags of commands that act as a subject: the database,
// the policy, the subject, its agent and the request's context.
type asSubject struct {
	db          *string
	policies    multiFlag
	subjectFile *string
	agent       *string
	contextFile *string
}

func asSubjectFlags(fs *flagSet) *asSubject {
	a := &asSubject{db: dbFlag(fs)}
	fs.Var(&a.policies, "policy", "policy file or folder (repeatable)")
	a.subjectFile = fs.String("subject", "", `subject JSON file: {"id", "tenant", "roles", "groups", "attributes"}`)
	a.agent = fs.String("agent", "", "the AI agent acting for the subject")
	a.contextFile = fs.String("context", "", `context JSON file: {"time": RFC 3339, "ip": address}; default: now, no IP`)
	return a
}

// open loads and compiles the policy, reads the subject and connects.
func (a *asSubject) open(ctx context.Context, errOut io.Writer) (*filter.Policy, filter.Request, *pgx.Conn, error) {
	p, req, err := a.load(errOut)
	if err != nil {
		return nil, filter.Request{}, nil, err
	}
	conn, err := connect(ctx, *a.db)
	if err != nil {
		return nil, filter.Request{}, nil, err
	}
	req.Approved = approvedNow(ctx, conn, p, req, errOut)
	return p, req, conn, nil
}

// approvedNow is the agent's approvals in force now, as a server would
// bind them. Without ragfence's tables (the database may be anyone's) the
// agent's approval rules keep withholding their rows, and a warning says so.
func approvedNow(ctx context.Context, conn *pgx.Conn, p *filter.Policy, req filter.Request, errOut io.Writer) func(string, string) bool {
	if req.Agent == "" || !hasApprovalRules(p, req.Agent) {
		return nil
	}
	approved, err := approval.NewStore(conn).InForceFor(ctx, req.Subject.Tenant, req.Subject.ID, req.Agent)
	if err != nil {
		fmt.Fprintf(errOut, "warning: cannot read the approvals in force (%v); the agent's approval rules withhold their rows\n", oneLine(err.Error()))
		return nil
	}
	return approved
}

func hasApprovalRules(p *filter.Policy, agent string) bool {
	for _, res := range p.Set().Resources {
		if g := res.Agents[agent]; g != nil && len(g.Approval) > 0 {
			return true
		}
	}
	return false
}

// load loads and compiles the policy and reads the subject.
func (a *asSubject) load(errOut io.Writer) (*filter.Policy, filter.Request, error) {
	if len(a.policies) == 0 || *a.subjectFile == "" {
		return nil, filter.Request{}, usagef("--policy and --subject are required")
	}
	set, err := loadPolicy(errOut, a.policies...)
	if err != nil {
		return nil, filter.Request{}, err
	}
	return explainRequest(set, *a.subjectFile, *a.contextFile, *a.agent, "")
}
