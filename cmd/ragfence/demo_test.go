package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/doctor"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/service"
)

// TestDemoCommandsWork runs what make run runs (migrate, demo, serve) in
// its own database, then every command the demo prints, in bash, as a user
// pastes them, and checks what they show.
func TestDemoCommandsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the demo's printed commands use curl; install it")
	}
	dsn := testdb.Database(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if out := mustRun(t, ctx, "migrate", "--db", dsn); !strings.Contains(out, "applied") {
		t.Fatalf("migrate: %s", out)
	}
	if out := mustRun(t, ctx, "migrate", "--db", dsn); !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate is not a no-op: %s", out)
	}
	addr := freeAddr(t)
	url := "http://" + addr
	selfName = buildBinary(t)
	defer func() { selfName = "" }()
	out := mustRun(t, ctx, "demo", "--db", dsn, "--out", dir, "--url", url) // the size make run uses
	files := demoFiles(t, dir)
	assertDemoNeedsNoIndex(t, ctx, dsn, files.Policy)
	stop := startServer(t, ctx, "--db", dsn, "--policy", files.Policy, "--jwt-secret-file", files.Secret, "--addr", addr)
	defer stop()

	var printed []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "curl ") || strings.HasPrefix(line, selfName+" ") {
			printed = append(printed, line)
		}
	}
	if len(printed) != 5 {
		t.Fatalf("demo printed %d commands, want 5:\n%s", len(printed), out)
	}
	var results [][]retriever.Result
	for _, line := range printed {
		cmd := exec.CommandContext(ctx, "bash", "-c", line)
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pasted command failed: %s\n%v\n%s", line, err, got)
		}
		if strings.HasPrefix(line, "curl ") {
			var resp service.Response
			if err := json.Unmarshal(got, &resp); err != nil {
				t.Fatalf("%s\nprinted %s: %v", line, got, err)
			}
			results = append(results, resp.Results)
		}
	}
	alice, bob, dave, agent := results[0], results[1], results[2], results[3]
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
	aliceAll := ids(retrieveAs(t, ctx, dsn, files, "alice", 200))
	for _, id := range ids(agent) {
		if !slices.Contains(aliceAll, id) {
			t.Errorf("alice's agent sees chunk %s that alice does not", id)
		}
	}
}

// retrieveAs runs `ragfence retrieve` for a demo user with a larger k.
func retrieveAs(t *testing.T, ctx context.Context, dsn string, f demo.Files, user string, k int) []retriever.Result {
	t.Helper()
	args := []string{"retrieve", "--db", dsn, "--policy", f.Policy, "--subject", f.Subjects[user], "--json"}
	req := demoSteps(f)[0].request
	args = append(args, withK(t, []string{"--request", req}, k)...)
	var resp struct{ Results []retriever.Result }
	if err := json.Unmarshal([]byte(mustRun(t, ctx, args...)), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Results
}

// startServer runs `ragfence serve` in-process until stop is called.
func startServer(t *testing.T, ctx context.Context, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"serve"}, args...), &out, &errOut)
		done <- fmt.Sprintf("exit %d: %s", code, errOut.String())
	}()
	addr := args[slices.Index(args, "--addr")+1]
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case msg := <-done:
			t.Fatalf("serve stopped: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve not ready after 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		cancel()
		if msg := <-done; !strings.HasPrefix(msg, "exit 0") {
			t.Errorf("serve: %s", msg)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildBinary builds ragfence for the pasted commands (the build is cached).
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ragfence")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func mustRun(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(ctx, args, &out, &errOut); code != 0 {
		t.Fatalf("ragfence %s: exit %d: %s%s", strings.Join(args, " "), code, errOut.String(), out.String())
	}
	return out.String()
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

// demoFiles lists what the demo wrote into dir.
func demoFiles(t *testing.T, dir string) demo.Files {
	t.Helper()
	f := demo.Files{Dir: dir, Policy: filepath.Join(dir, "policy.yaml"), Secret: filepath.Join(dir, "jwt-secret"),
		Subjects: map[string]string{}, Requests: map[string]string{}}
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

// assertDemoNeedsNoIndex: the demo's schema has every index its policy
// needs, so a first run shows no doctor warning about its tables (the
// server's pgvector version may still earn one).
func assertDemoNeedsNoIndex(t *testing.T, ctx context.Context, dsn, policyFile string) {
	t.Helper()
	var rep doctor.Report
	if err := json.Unmarshal([]byte(mustRun(t, ctx, "doctor", "--db", dsn, "--policy", policyFile, "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range rep.Findings {
		if f.Resource == "" {
			continue
		}
		checked++
		if f.Severity != doctor.OK {
			t.Errorf("doctor on the demo: %s %s %s: %s", f.Severity, f.Resource, f.Code, f.Message)
		}
	}
	if checked == 0 {
		t.Fatal("doctor reported nothing about the demo's resources")
	}
}
