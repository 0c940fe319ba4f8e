package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever"
)

// TestDemoCommandsWork runs the demo end to end in its own database and then
// every command it prints, as a user would paste them.
func TestDemoCommandsWork(t *testing.T) {
	dsn := testdb.Database(t)
	dir := t.TempDir()
	ctx := context.Background()
	if out := mustRun(t, ctx, "migrate", "--db", dsn); !strings.Contains(out, "applied") {
		t.Fatalf("migrate: %s", out)
	}
	if out := mustRun(t, ctx, "migrate", "--db", dsn); !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate is not a no-op: %s", out)
	}
	out := mustRun(t, ctx, "demo", "--db", dsn, "--out", dir) // the size make run uses
	var printed []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " retrieve ") || strings.Contains(line, " policy explain ") {
			printed = append(printed, strings.TrimSpace(line))
		}
	}
	if len(printed) != 5 {
		t.Fatalf("demo printed %d commands, want 5:\n%s", len(printed), out)
	}
	for _, line := range printed {
		args := shellSplit(t, line)[1:] // drop the binary
		mustRun(t, ctx, args...)
	}

	// What the commands show, checked on their JSON output.
	steps := demoSteps(dsn, demoFiles(t, dir))
	alice := retrieveJSON(t, ctx, steps[0].args)
	bob := retrieveJSON(t, ctx, steps[1].args)
	dave := retrieveJSON(t, ctx, steps[2].args)
	agent := retrieveJSON(t, ctx, steps[3].args)
	if len(alice) == 0 || len(bob) == 0 || len(dave) == 0 {
		t.Fatalf("empty results: alice %d, bob %d, dave %d", len(alice), len(bob), len(dave))
	}
	if slices.Equal(ids(alice), ids(bob)) {
		t.Errorf("alice and bob of one tenant see the same chunks %v; the demo must show a difference", ids(alice))
	}
	for _, r := range dave {
		if r.Content == nil || !strings.HasPrefix(*r.Content, "globex ") {
			t.Errorf("dave (globex) got chunk %s: %v", r.ID, r.Content)
		}
	}
	for _, id := range ids(agent) {
		if !slices.Contains(allIDs(t, ctx, steps[0].args), id) {
			t.Errorf("alice's agent sees chunk %s that alice does not", id)
		}
	}
}

func mustRun(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(ctx, args, &out, &errOut); code != 0 {
		t.Fatalf("ragfence %s: exit %d: %s%s", strings.Join(args, " "), code, errOut.String(), out.String())
	}
	return out.String()
}

func retrieveJSON(t *testing.T, ctx context.Context, args []string) []retriever.Result {
	t.Helper()
	var resp struct{ Results []retriever.Result }
	if err := json.Unmarshal([]byte(mustRun(t, ctx, append(slices.Clone(args), "--json")...)), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Results
}

// allIDs is what the subject of a retrieve command sees with a large k.
func allIDs(t *testing.T, ctx context.Context, args []string) []string {
	t.Helper()
	var out []string
	for _, r := range retrieveJSON(t, ctx, withK(t, args, 200)) {
		out = append(out, r.ID)
	}
	return out
}

// withK rewrites a retrieve command's request file with another k.
func withK(t *testing.T, args []string, k int) []string {
	t.Helper()
	args = slices.Clone(args)
	i := slices.Index(args, "--request")
	q, err := readQuery(args[i+1])
	if err != nil {
		t.Fatal(err)
	}
	q.K = k
	b, _ := json.Marshal(q)
	path := filepath.Join(t.TempDir(), "request.json")
	writeFile(t, path, b)
	args[i+1] = path
	return args
}

func ids(rs []retriever.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// shellSplit undoes shellJoin: words separated by spaces, '...' quoted.
func shellSplit(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\'':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '\'':
			inQuote, inWord = true, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		t.Fatalf("unbalanced quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// demoFiles lists what the demo wrote into dir.
func demoFiles(t *testing.T, dir string) demo.Files {
	t.Helper()
	f := demo.Files{Dir: dir, Policy: filepath.Join(dir, "policy.yaml"), Subjects: map[string]string{}, Requests: map[string]string{}}
	for sub, m := range map[string]map[string]string{"subjects": f.Subjects, "requests": f.Requests} {
		paths, err := filepath.Glob(filepath.Join(dir, sub, "*.json"))
		if err != nil || len(paths) == 0 {
			t.Fatalf("no %s written under %s", sub, dir)
		}
		for _, p := range paths {
			m[strings.TrimSuffix(filepath.Base(p), ".json")] = p
		}
	}
	return f
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
