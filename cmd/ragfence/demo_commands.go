package main

import (
	"fmt"
	"io"

	"github.com/ragfence/ragfence/internal/demo"
)

// printDemoCommands prints commands that show the policy at work.
func printDemoCommands(out io.Writer, f demo.Files) {
	fmt.Fprintf(out, "\nThe demo policy is %s; its users' subject files are in %s/subjects.\n", f.Policy, f.Dir)
}
