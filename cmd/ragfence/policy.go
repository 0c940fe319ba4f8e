package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/filter/policytest"
	"github.com/ragfence/ragfence/internal/pgcatalog"
	"github.com/ragfence/ragfence/internal/suggest"
	"github.com/ragfence/ragfence/policy"
)

func init() {
	register("policy", "check, explain and test row-level policies (policy check|explain|test)", runPolicy)
}

var policyCommands = map[string]func(context.Context, []string, io.Writer, io.Writer) error{
	"check":   runPolicyCheck,
	"explain": runPolicyExplain,
	"test":    runPolicyTest,
}

func runPolicy(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(out, "Usage: ragfence policy check|explain|test [flags]")
		fmt.Fprintln(out, "  check [--db URL] PATH...        validate a policy set; print every error as file:line:col: message")
		fmt.Fprintln(out, "  explain --policy PATH --resource R --subject FILE [--agent ID] [--context FILE] [--alias A] [--json]")
		fmt.Fprintln(out, "                                  the SQL fragment, its arguments and the rules in play")
		fmt.Fprintln(out, "  test --policy PATH [--db URL] TESTS.yaml...")
		fmt.Fprintln(out, "                                  run policy unit tests in a rolled-back transaction")
		if len(args) == 0 {
			return usagef("missing subcommand: check, explain or test")
		}
		return nil
	}
	sub, ok := policyCommands[args[0]]
	if !ok {
		return usagef("unknown subcommand %q%s; use check, explain or test", args[0], suggest.Hint(args[0], []string{"check", "explain", "test"}))
	}
	return sub(ctx, args[1:], out, errOut)
}

// loadPolicy loads a set, printing every error on errOut as file:line:col.
func loadPolicy(errOut io.Writer, paths ...string) (*policy.Set, error) {
	set, err := policy.Load(paths...)
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(errOut, e.Error())
		}
		return nil, &exitError{code: exitFailure, msg: fmt.Sprintf("policy: %d error(s)", len(list))}
	}
	return set, err
}

func runPolicyCheck(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("policy check", "policy check [--db URL] PATH...", out)
	db := fs.String("db", "", "also check tables and columns against this database")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("no policy files or folders given")
	}
	set, err := loadPolicy(errOut, fs.Args()...)
	if err != nil {
		return err
	}
	if *db != "" {
		if err := checkCatalog(ctx, *db, set, errOut); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "policy: ok: %d file(s), %d resource(s), version %s\n", len(set.Files), len(set.Names), set.Version())
	return nil
}

func checkCatalog(ctx context.Context, dsn string, set *policy.Set, errOut io.Writer) error {
	conn, _, err := connectPlain(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	list, err := policy.CheckCatalog(ctx, pgcatalog.Catalog{Q: conn}, set)
	if err != nil {
		return err
	}
	for _, e := range list {
		fmt.Fprintln(errOut, e.Error())
	}
	if len(list) > 0 {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("policy: %d error(s) against the database", len(list))}
	}
	return nil
}

func runPolicyExplain(_ context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("policy explain", "policy explain --policy PATH --resource R --subject FILE [--agent ID] [--context FILE] [--alias A] [--json]", out)
	var paths multiFlag
	fs.Var(&paths, "policy", "policy file or folder (repeatable)")
	resource := fs.String("resource", "", "resource name, e.g. chunks")
	subjectFile := fs.String("subject", "", `subject JSON file: {"id", "tenant", "roles", "groups", "attributes"}`)
	agent := fs.String("agent", "", "the AI agent acting for the subject")
	contextFile := fs.String("context", "", `context JSON file: {"time": RFC 3339, "ip": address}; default: now, no IP`)
	alias := fs.String("alias", "", "the table's alias in the query (default: the table name)")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(paths) == 0 || *resource == "" || *subjectFile == "" {
		return usagef("--policy, --resource and --subject are required")
	}
	set, err := loadPolicy(errOut, paths...)
	if err != nil {
		return err
	}
	p, req, err := explainRequest(set, *subjectFile, *contextFile, *agent, *alias)
	if err != nil {
		return err
	}
	frag, err := p.Fragment(*resource, req)
	if err != nil {
		return err
	}
	ex := p.Explain(frag)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	}
	return ex.WriteText(out)
}

func explainRequest(set *policy.Set, subjectFile, contextFile, agent, alias string) (*filter.Policy, filter.Request, error) {
	p, err := filter.Compile(set)
	if err != nil {
		return nil, filter.Request{}, err
	}
	s, err := policy.ReadSubject(subjectFile)
	if err != nil {
		return nil, filter.Request{}, err
	}
	if s, err = set.CheckSubject(s); err != nil {
		return nil, filter.Request{}, fmt.Errorf("%s: %w", subjectFile, err)
	}
	req := filter.Request{Subject: s, Agent: agent, Alias: alias, Context: policy.Context{Time: now()}}
	if contextFile != "" {
		if req.Context, err = policy.ReadContext(contextFile); err != nil {
			return nil, filter.Request{}, err
		}
	}
	return p, req, nil
}

// now is the CLI's clock; tests replace it.
var now = time.Now

func runPolicyTest(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("policy test", "policy test --policy PATH [--db URL] TESTS.yaml...", out)
	var paths multiFlag
	fs.Var(&paths, "policy", "policy file or folder (repeatable)")
	db := dbFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(paths) == 0 || fs.NArg() == 0 {
		return usagef("give --policy and at least one test file")
	}
	set, err := loadPolicy(errOut, paths...)
	if err != nil {
		return err
	}
	runner, err := policytest.NewRunner(set)
	if err != nil {
		return err
	}
	runner.Now = now
	conn, _, err := connectPlain(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pass, fail := 0, 0
	for _, path := range fs.Args() {
		f, err := policytest.ReadFile(path)
		if err != nil {
			return err
		}
		results, err := runner.Run(ctx, conn, f)
		if err != nil {
			return err
		}
		for _, r := range results {
			fmt.Fprintln(out, r.String())
			if r.Pass {
				pass++
			} else {
				fail++
			}
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", pass, fail)
	if fail > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
