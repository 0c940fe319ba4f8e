package demo

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ragfence/ragfence/policy/schema"
)

// Policy is the demo knowledge base's policy file.
//
//go:embed policy.yaml
var Policy []byte

// Subject is a user as a policy subject file holds it.
type Subject struct {
	ID         string         `json:"id"`
	Tenant     string         `json:"tenant"`
	Roles      []string       `json:"roles"`
	Groups     []string       `json:"groups"`
	Attributes map[string]any `json:"attributes"`
}

// Request is a body for POST /v1/retrieve: the k chunks nearest a topic.
type Request struct {
	Collection string    `json:"collection"`
	Embedding  []float32 `json:"embedding"`
	K          int       `json:"k"`
}

// Files lists what WriteFiles wrote, for the commands the CLI prints.
type Files struct {
	Dir    string
	Policy string
	// Secret is the development JWT secret the demo server and tokens share.
	Secret   string
	Subjects map[string]string // user id -> subject file
	Requests map[string]string // topic -> request file
}

// WriteFiles writes the policy, a subject file per user and a retrieve
// request per topic into dir, so the printed commands can name them.
func WriteFiles(dir string, d *Dataset) (Files, error) {
	f := Files{Dir: dir, Policy: filepath.Join(dir, "policy.yaml"), Secret: filepath.Join(dir, "jwt-secret"),
		Subjects: map[string]string{}, Requests: map[string]string{}}
	for _, sub := range []string{"subjects", "requests"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return f, fmt.Errorf("demo: %w", err)
		}
	}
	if err := os.WriteFile(f.Policy, Policy, 0o644); err != nil {
		return f, fmt.Errorf("demo: %w", err)
	}
	if err := writeSecret(f.Secret); err != nil {
		return f, err
	}
	// The policy's first line points editors at this schema.
	if err := os.WriteFile(filepath.Join(dir, "policy.schema.json"), schema.Policy, 0o644); err != nil {
		return f, fmt.Errorf("demo: %w", err)
	}
	for _, u := range d.Users {
		s := Subject{ID: u.ID, Tenant: u.TenantID, Roles: u.Roles, Groups: u.Groups, Attributes: map[string]any{"clearance": u.Clearance}}
		path := filepath.Join(dir, "subjects", u.ID+".json")
		if err := writeJSON(path, s); err != nil {
			return f, err
		}
		f.Subjects[u.ID] = path
	}
	for _, t := range d.Topics {
		path := filepath.Join(dir, "requests", t.Name+".json")
		if err := writeJSON(path, Request{Collection: "chunks", Embedding: t.Centre, K: 5}); err != nil {
			return f, err
		}
		f.Requests[t.Name] = path
	}
	return f, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// writeSecret creates a random development secret once; later runs keep it,
// so tokens minted earlier stay valid.
func writeSecret(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
