package main

import (
	"context"
	"io"

	"github.com/jackc/pgx/v5"

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
	return p, req, conn, nil
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
