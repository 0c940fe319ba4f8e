package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigPrecedence: flags, then RAGFENCE_* environment, then the file.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ragfence.yaml")
	if err := os.WriteFile(file, []byte("addr: :7000\nmax-k: 50\nissuer: from-file\ntrusted-proxies: [10.0.0.0/8, 192.168.0.0/16]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAGFENCE_MAX_K", "70")
	t.Setenv("RAGFENCE_ISSUER", "from-env")
	fs, s := serveFlags(&bytes.Buffer{})
	if err := parseFlags(fs, []string{"--issuer", "from-flag", "--config", file}); err != nil {
		t.Fatal(err)
	}
	if err := applyLayers(fs, s.config); err != nil {
		t.Fatal(err)
	}
	if s.issuer != "from-flag" || s.maxK != 70 || s.addr != ":7000" || s.trustedProxies != "10.0.0.0/8,192.168.0.0/16" {
		t.Fatalf("issuer %q max-k %d addr %q proxies %q", s.issuer, s.maxK, s.addr, s.trustedProxies)
	}
	if s.defaultK != 10 {
		t.Fatalf("default-k %d, want the default 10", s.defaultK)
	}
}

func TestConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ragfence.yaml")
	if err := os.WriteFile(file, []byte("max_k: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, s := serveFlags(&bytes.Buffer{})
	if err := parseFlags(fs, []string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	if err := applyLayers(fs, s.config); err == nil || !strings.Contains(err.Error(), `unknown setting "max_k"`) {
		t.Fatalf("got %v", err)
	}
	t.Setenv("RAGFENCE_MAX_K", "many")
	fs, s = serveFlags(&bytes.Buffer{})
	_ = parseFlags(fs, nil)
	if err := applyLayers(fs, s.config); err == nil || !strings.Contains(err.Error(), "RAGFENCE_MAX_K") {
		t.Fatalf("got %v", err)
	}
}

// TestServeHelpDocumentsEverySetting: -h lists every flag and the env rule.
func TestServeHelpDocumentsEverySetting(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "-h"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	fs, _ := serveFlags(&bytes.Buffer{})
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "-"+f.Name) {
			t.Errorf("serve -h does not document --%s", f.Name)
		}
	})
	if !strings.Contains(out.String(), "RAGFENCE_") {
		t.Error("serve -h does not say how the environment sets flags")
	}
}

func TestServeBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, exitUsage, "--policy is required"},
		{[]string{"serve", "--policy", "../../testdata/policies/rbac.yaml", "--db", "postgres://x@127.0.0.1:1/db"}, exitUsage, "no token verification configured"},
		{[]string{"serve", "--policy", "../../testdata/policies/rbac.yaml", "--jwt-secret-file", "/nonexistent"}, exitUsage, "--jwt-secret-file"},
		{[]string{"serve", "--policy", "/nonexistent.yaml"}, exitFailure, "nonexistent"},
		{[]string{"serve", "--log-level", "loud", "--policy", "x"}, exitUsage, "--log-level"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if code != tc.code || len(lines) != 1 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
