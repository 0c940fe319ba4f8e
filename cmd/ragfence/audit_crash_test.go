package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/retriever/auth"
)

// crashLoad is the concurrency and duration of the load each server takes
// before it is signalled: long enough to be mid-stride, short enough to
// keep the four runs well under 30 s.
const (
	crashConcurrency = 8
	crashLoadFor     = 1500 * time.Millisecond
)

// TestAuditSurvivesKill runs `ragfence serve` as a separate process under
// concurrent load, signals it mid-load and checks the audit log against
// every 200 answer the clients received. In sync mode a SIGKILL leaves no
// served answer unaudited; batched mode's loss is reported, not asserted
// (it is what sync mode exists to prevent). SIGTERM loses nothing in either
// mode. Run with -v for the latency and throughput of each mode.
func TestAuditSurvivesKill(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Database(t)
	dir := t.TempDir()
	mustRun(t, ctx, "migrate", "--db", dsn)
	mustRun(t, ctx, "demo", "--db", dsn, "--out", dir, "--chunks", "2000")
	files := demoFiles(t, dir)
	load := crashLoadSetup(t, files.Secret, files.Requests)
	bin := buildBinary(t)
	for _, mode := range []string{"sync", "batched"} {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			t.Run(mode+"/"+sig.String(), func(t *testing.T) {
				srv := startServeProcess(t, bin, "--db", dsn, "--policy", files.Policy,
					"--jwt-secret-file", files.Secret, "--log-level", "error", "--audit-mode", mode)
				res := load.drive(t, srv, sig)
				t.Logf("%s: %s", mode, res.summary())
				missing := unaudited(t, dsn, res.served)
				switch {
				case sig == syscall.SIGKILL && mode == "batched":
					t.Logf("batched, SIGKILL: %d of %d served answers (%.1f%%, the last %v of traffic) have no audit record",
						len(missing), len(res.served), 100*float64(len(missing))/float64(len(res.served)), res.span(len(missing)))
				case len(missing) > 0:
					t.Errorf("%s, %v: %d of %d served answers have no audit record, e.g. %s",
						mode, sig, len(missing), len(res.served), missing[0])
				}
			})
		}
	}
}

// crashLoad is what every request of the load sends.
type crashLoad struct {
	token string
	body  []byte
}

func crashLoadSetup(t *testing.T, secretFile string, requests map[string]string) crashLoad {
	t.Helper()
	secret := bytes.TrimSpace(mustRead(t, secretFile))
	tok, err := auth.Mint(secret, auth.MintClaims{Subject: "crash-user", Tenant: "acme",
		Attributes: map[string]any{"clearance": 3}, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(requests))
	for name := range requests {
		names = append(names, name)
	}
	slices.Sort(names)
	return crashLoad{token: tok, body: mustRead(t, requests[names[0]])}
}

// serveProcess is `ragfence serve` in a child process, so it can be killed.
type serveProcess struct {
	url    string
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan error
}

// startServeProcess starts bin serve on a free loopback port and waits
// until it is ready. The process is killed at cleanup if still running.
func startServeProcess(t *testing.T, bin string, args ...string) *serveProcess {
	t.Helper()
	addr := freeAddr(t)
	p := &serveProcess{url: "http://" + addr, log: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"serve", "--addr", addr}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // an error means it has exited already
		<-p.exited
		if t.Failed() {
			t.Logf("serve output:\n%s", p.log)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("serve exited before it was ready: %v\n%s", err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 20s:\n%s", p.log)
		}
	}
}

// loadResult is what the clients saw: the decision id of every 200 answer
// they received, and the latencies of the answers before the signal.
type loadResult struct {
	served  []string
	latency []time.Duration // of 200 answers completed before the signal
	others  int             // non-200 answers before the signal
	took    time.Duration   // from the first request to the signal
}

// drive runs the load against p for crashLoadFor, sends sig while it runs,
// and returns once every client has stopped and the process has exited.
func (l crashLoad) drive(t *testing.T, p *serveProcess, sig syscall.Signal) loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), crashLoadFor+5*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: crashConcurrency}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var res loadResult
	var signalled time.Time // zero until the signal is sent; guarded by mu
	start := time.Now()
	var wg sync.WaitGroup
	for range crashConcurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				began := time.Now()
				status, id := l.retrieve(ctx, client, p.url)
				if status == 0 {
					return // the server is gone or shutting down
				}
				mu.Lock()
				if status == http.StatusOK {
					res.served = append(res.served, id)
				}
				if signalled.IsZero() {
					if status == http.StatusOK {
						res.latency = append(res.latency, time.Since(began))
					} else {
						res.others++
					}
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(crashLoadFor)
	mu.Lock()
	signalled, res.took = time.Now(), time.Since(start)
	mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	l.waitExit(t, p, sig)
	return res
}

// waitExit waits for p to exit as sig makes it: killed, or cleanly.
func (l crashLoad) waitExit(t *testing.T, p *serveProcess, sig syscall.Signal) {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		if sig == syscall.SIGTERM && err != nil {
			t.Errorf("serve after SIGTERM: %v, want a clean exit", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still running 20s after %v", sig)
	}
}

// retrieve is one search: the status (0 when no answer came) and the
// decision id. An answer counts as served once its status line and headers
// have arrived, whether or not its body does: the server let it go.
func (l crashLoad) retrieve(ctx context.Context, client *http.Client, url string) (int, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/retrieve", bytes.NewReader(l.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Decision-Id")
}

func (r loadResult) summary() string {
	lat := slices.Clone(r.latency)
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(f*float64(len(lat)-1))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("concurrency %d: %d answers 200 in %v (%.0f/s), p50 %v, p99 %v, %d other answers; %d served in all",
		crashConcurrency, len(lat), r.took.Round(time.Millisecond), float64(len(lat))/r.took.Seconds(),
		q(0.50), q(0.99), r.others, len(r.served))
}

// span is how long the load took to be served n answers, at its rate.
func (r loadResult) span(n int) time.Duration {
	if len(r.latency) == 0 {
		return 0
	}
	return (time.Duration(n) * r.took / time.Duration(len(r.latency))).Round(time.Millisecond)
}

// unaudited returns the decision ids among served that have no row in
// ragfence.audit_log.
func unaudited(t *testing.T, dsn string, served []string) []string {
	t.Helper()
	if len(served) == 0 {
		t.Fatal("no answer was served before the signal")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id FROM unnest($1::text[]) AS s(id)
		WHERE NOT EXISTS (SELECT FROM ragfence.audit_log a WHERE a.decision_id = s.id) ORDER BY id`, served)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return missing
}
