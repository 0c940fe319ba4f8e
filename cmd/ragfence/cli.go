package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ragfence/ragfence/internal/suggest"
)

// command is one `ragfence` subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) error
}

var commands = map[string]command{}

func register(name, summary string, run func(context.Context, []string, io.Writer, io.Writer) error) {
	commands[name] = command{summary: summary, run: run}
}

// Exit codes: 1 for a failure, 2 for bad usage or a refused request.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is bad input on the command line; it exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitError carries its own exit code, for commands whose failures are not
// all alike (e.g. `policy test` failing a case exits 1 without a message).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// run is the whole CLI: every error ends in one line on errOut and a non-zero
// code, never a panic or a stack trace.
func run(ctx context.Context, args []string, out, errOut io.Writer) (code int) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(out)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(errOut, "ragfence: unknown command %q%s; run 'ragfence help' for the list\n", name, suggest.Hint(name, commandNames()))
		return exitUsage
	}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(errOut, "ragfence %s: internal error: %v; please report it\n", name, r)
			code = exitFailure
		}
	}()
	err := cmd.run(ctx, args[1:], out, errOut)
	return report(errOut, name, err)
}

func report(errOut io.Writer, name string, err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(errOut, "ragfence %s: %s (see 'ragfence %s -h')\n", name, oneLine(ue.msg), name)
		return exitUsage
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(errOut, oneLine(ee.msg))
		}
		return ee.code
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(errOut, "ragfence %s: interrupted\n", name)
		return exitFailure
	default:
		fmt.Fprintf(errOut, "ragfence %s: %s\n", name, oneLine(err.Error()))
		return exitFailure
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "ragfence: authorization-aware retrieval for PostgreSQL + pgvector")
	fmt.Fprintln(w, "\nUsage: ragfence COMMAND [flags]\n\nCommands:")
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'ragfence COMMAND -h' for a command's flags.")
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// flagSet is a command's flags plus the usage line printed for -h.
type flagSet struct {
	*flag.FlagSet
	usage string
	out   io.Writer
}

// newFlags returns a flag set that reports errors through the caller instead
// of printing usage on every mistake and exiting.
func newFlags(name, usage string, out io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, usage: usage, out: out}
}

// parseFlags parses args, printing usage for -h and turning other flag errors
// into a usageError.
func parseFlags(fs *flagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(fs.out, "Usage: ragfence %s\n\nFlags:\n", fs.usage)
		fs.SetOutput(fs.out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return err
	}
	if err != nil {
		return usagef("%v", err)
	}
	return nil
}

// dbFlag registers --db with DATABASE_URL as its default.
func dbFlag(fs *flagSet) *string {
	return fs.String("db", os.Getenv("DATABASE_URL"), "PostgreSQL URL, e.g. postgres://user@host:5432/db (default $DATABASE_URL)")
}
