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

// demoStep is one printed command and what it shows.
type demoStep struct {
	comment string
	args    []string
}

// demoSteps are the commands that show the demo policy at work: two users
// of one tenant, a user of another tenant, an agent, and the SQL behind it.
func demoSteps(dsn string, f demo.Files) []demoStep {
	topics := make([]string, 0, len(f.Requests))
	for t := range f.Requests {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	request := f.Requests[topics[0]]
	retrieve := func(user string, extra ...string) []string {
		args := []string{"retrieve", "--db", dsn, "--policy", f.Policy, "--subject", f.Subjects[user], "--request", request}
		return append(args, extra...)
	}
	return []demoStep{
		{"alice (acme, editor in eng) asks about " + topics[0] + ":", retrieve("alice")},
		{"bob (acme, viewer in sales) asks the same: tenant-wide chunks in common, his group's and his own differ:", retrieve("bob")},
		{"dave (globex) asks the same: only globex chunks, never acme's:", retrieve("dave")},
		{"alice's summarizer agent: only her wiki and drive pages, nothing classified:", retrieve("alice", "--agent", "summarizer")},
		{"why: the WHERE fragment ragfence adds for bob, its bound values and the rules in play:",
			[]string{"policy", "explain", "--policy", f.Policy, "--resource", "chunks", "--subject", f.Subjects["bob"]}},
	}
}

// printDemoCommands prints the demo steps as commands ready to paste.
func printDemoCommands(out io.Writer, dsn string, f demo.Files) {
	self := selfCommand()
	fmt.Fprintln(out, "\nTry it (paste these):")
	for _, s := range demoSteps(dsn, f) {
		fmt.Fprintf(out, "\n  # %s\n  %s\n", s.comment, shellJoin(append([]string{self}, s.args...)))
	}
}

// selfCommand is how the user ran this binary: bin/ragfence from make,
// ragfence from PATH.
func selfCommand() string {
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
