package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/service"
)

func init() {
	register("retrieve", "run one retrieval as a subject: the k nearest chunks it may see", runRetrieve)
}

func runRetrieve(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("retrieve", "retrieve --db URL --policy PATH --subject FILE --request FILE [--agent ID] [--context FILE] [--json]", out)
	as := asSubjectFlags(fs)
	requestFile := fs.String("request", "", `request JSON file, as POST /v1/retrieve takes it: {"collection", "embedding", "k"}`)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *requestFile == "" {
		return usagef("--request is required")
	}
	q, err := readQuery(*requestFile)
	if err != nil {
		return err
	}
	p, req, conn, err := as.open(ctx, errOut)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	searcher, err := retriever.NewSearcher(retriever.Config{})
	if err != nil {
		return err
	}
	results, frag, err := searcher.Search(ctx, conn, p, req, q)
	if err != nil {
		return withCause(err)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"results": results, "policy_version": p.Version(), "outcome": frag.Outcome.String()})
	}
	who := req.Subject.ID + " (tenant " + req.Subject.Tenant + ")"
	if req.Agent != "" {
		who = "agent " + req.Agent + " for " + who
	}
	fmt.Fprintf(out, "%d result(s) for %s, %s, k=%d\n", len(results), who, q.Resource, q.K)
	for _, r := range results {
		fmt.Fprintf(out, "  %-8s %.4f  %s\n", r.ID, r.Score, excerpt(r.Content, 70))
	}
	return nil
}

func readQuery(path string) (retriever.Query, error) {
	var q retriever.Query
	b, err := os.ReadFile(path)
	if err != nil {
		return q, err
	}
	if err := json.Unmarshal(b, &q); err != nil {
		return q, fmt.Errorf("%s: invalid request JSON: %w", path, err)
	}
	if q.K == 0 {
		q.K = service.DefaultK
	}
	return q, nil
}

// withCause adds a search error's cause to its message: the operator at the
// terminal may see what a client is not told ("the server log has the
// details", and there is no server).
func withCause(err error) error {
	var re *retriever.Error
	if errors.As(err, &re) && re.Err != nil {
		return fmt.Errorf("%w (%v)", err, re.Err)
	}
	return err
}

func excerpt(s *string, n int) string {
	if s == nil {
		return "(masked)"
	}
	t := strings.Join(strings.Fields(*s), " ")
	if len(t) > n {
		return t[:n-3] + "..."
	}
	return t
}
