package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ragfence/ragfence/internal/doctor"
	"github.com/ragfence/ragfence/policy"
)

func init() {
	register("doctor", "check that the database has the indexes, statistics and pgvector the policy needs", runDoctor)
}

func runDoctor(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("doctor", "doctor --db URL --policy PATH [--json] [--strict]\n\n"+
		"Checks, for every resource of the policy: its table and columns, a cosine vector index on the\n"+
		"embedding, indexes on the columns its rules use, planner statistics; and the pgvector version.\n"+
		"Exits 1 when a check fails with an error, or with --strict also on a warning.", out)
	db := dbFlag(fs)
	fs.StringVar(db, "url", *db, "same as --db")
	var paths multiFlag
	fs.Var(&paths, "policy", "policy file or folder (repeatable)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	strict := fs.Bool("strict", false, "exit 1 on warnings too")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if len(paths) == 0 {
		return usagef("--policy is required (the policy file or folder)")
	}
	set, err := loadPolicy(errOut, paths...)
	if err != nil {
		return err
	}
	// Without pgvector doctor still runs: saying so is one of its findings.
	conn, _, err := connectPlain(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rep, err := doctor.Check(ctx, conn, set)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // keep <=> readable
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(out)
	}
	if err != nil {
		return err
	}
	errs, warns := rep.Count(doctor.Error), rep.Count(doctor.Warning)
	switch {
	case errs > 0:
		return &exitError{code: exitFailure, msg: fmt.Sprintf("doctor: %d error(s), %d warning(s)", errs, warns)}
	case *strict && warns > 0:
		return &exitError{code: exitFailure, msg: fmt.Sprintf("doctor: %d warning(s) (--strict)", warns)}
	}
	return nil
}

// doctorTimeout bounds the checks serve runs at start.
const doctorTimeout = 10 * time.Second

// logDoctor runs the doctor's checks at serve's start and logs what they
// find. It never fails the start: a check that cannot run is logged too.
func logDoctor(ctx context.Context, db doctor.Querier, set *policy.Set, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	rep, err := doctor.Check(ctx, db, set)
	if err != nil {
		logger.Warn("doctor: database checks did not run", "error", oneLine(err.Error()))
		return
	}
	doctor.LogFindings(logger, rep)
}
