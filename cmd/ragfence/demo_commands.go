package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ragfence/ragfence/internal/demo"
)

// demoStep is one call the demo prints: a retrieval by a user (and maybe an
// agent) through the server, or a policy explanation.
type demoStep struct {
	comment string
	user    string
	agent   string
	request string   // request file, for retrievals
	args    []string // ragfence arguments, for explain
}

// demoSteps show the demo policy at work: two users of one tenant, a user
// of another tenant, an agent, and the SQL behind it.
func demoSteps(f demo.Files) []demoStep {
	topics := make([]string, 0, len(f.Requests))
	for t := range f.Requests {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	req := f.Requests[topics[0]]
	return []demoStep{
		{comment: "alice (acme, editor in eng) asks about " + topics[0] + ":", user: "alice", request: req},
		{comment: "bob (acme, viewer in sales) asks the same: tenant-wide chunks in common, his group's and his own differ:", user: "bob", request: req},
		{comment: "dave (globex) asks the same: only globex chunks, never acme's:", user: "dave", request: req},
		{comment: "alice's summarizer agent: only her wiki and drive pages, nothing classified until she approves:", user: "alice", agent: "summarizer", request: req},
		{comment: "why: the WHERE fragment ragfence adds for bob, its bound values and the rules in play:",
			args: []string{"policy", "explain", "--policy", f.Policy, "--resource", "chunks", "--subject", f.Subjects["bob"]}},
	}
}

// tokenArgs are the ragfence arguments that mint the step's token.
func (s demoStep) tokenArgs(f demo.Files) []string {
	args := []string{"token", "--jwt-secret-file", f.Secret, "--subject", f.Subjects[s.user]}
	if s.agent != "" {
		args = append(args, "--agent", s.agent)
	}
	return args
}

// commandLine renders the step as a shell command for self (the binary).
func (s demoStep) commandLine(self, url string, f demo.Files) string {
	if s.request == "" {
		return shellJoin(append([]string{self}, s.args...))
	}
	token := shellJoin(append([]string{self}, s.tokenArgs(f)...))
	return fmt.Sprintf(`curl -s %s -H "Authorization: Bearer $(%s)" -H 'Content-Type: application/json' -d @%s`,
		url+"/v1/retrieve", token, shellQuote(s.request))
}

// printDemoCommands prints the demo steps as commands ready to paste once
// the server runs at url.
func printDemoCommands(out io.Writer, url string, f demo.Files) {
	self := selfCommand()
	fmt.Fprintf(out, "\nWith the server running (make run starts it on %s), try (paste these):\n", url)
	for _, s := range demoSteps(f) {
		fmt.Fprintf(out, "\n  # %s\n  %s\n", s.comment, s.commandLine(self, url, f))
	}
}

// selfName overrides how the binary is named in printed commands (tests).
var selfName string

// selfCommand is how the user ran this binary: bin/ragfence from make,
// ragfence from PATH.
func selfCommand() string {
	if selfName != "" {
		return selfName
	}
	arg0 := os.Args[0]
	if !strings.ContainsRune(arg0, os.PathSeparator) {
		return arg0
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, arg0); err == nil && !strings.HasPrefix(rel, "..") {
			if !strings.ContainsRune(rel, os.PathSeparator) {
				return "./" + rel
			}
			return rel
		}
	}
	return arg0
}

// shellJoin quotes arguments for a POSIX shell where they need it.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
