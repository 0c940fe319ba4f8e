package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/auth"
)

func init() {
	register("token", "mint a short-lived development token (HS256) for a subject file", runToken)
}

func runToken(_ context.Context, args []string, out, _ io.Writer) error {
	fs := newFlags("token", "token --jwt-secret-file FILE --subject FILE [--agent ID] [--lifetime 10m] [--issuer I] [--audience A] [--client-id ID] [--scope S]\n\n"+
		"Prints a JWT for the subject, signed with the development secret, for curl:\n"+
		"  curl -H \"Authorization: Bearer $(ragfence token ...)\" ...\n"+
		"For the MCP endpoint, mint it as an MCP host's token: --audience the server's --mcp-resource,\n"+
		"--client-id the host (its agent in the policy) and --scope the tools' scopes.", out)
	secretFile := fs.String("jwt-secret-file", "", "file holding the HS256 secret the server uses (or set RAGFENCE_JWT_SECRET)")
	subjectFile := fs.String("subject", "", `subject JSON file: {"id", "tenant", "roles", "groups", "attributes"}`)
	agent := fs.String("agent", "", "the AI agent acting for the subject (the act claim)")
	lifetime := fs.Duration("lifetime", 10*time.Minute, "how long the token is valid (the server refuses more than its --max-token-lifetime)")
	issuer := fs.String("issuer", "", "iss claim")
	audience := fs.String("audience", "", "aud claim (for MCP: the server's --mcp-resource URL)")
	clientID := fs.String("client-id", "", "client_id claim: the OAuth client (an MCP host) the token is issued to, read as the agent by the MCP endpoint")
	scope := fs.String("scope", "", `scope claim, space-separated (e.g. "ragfence:retrieve ragfence:query ragfence:access")`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *subjectFile == "" {
		return usagef("--subject is required")
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		return err
	}
	if secret == nil {
		return usagef("give --jwt-secret-file (the file the server reads) or set RAGFENCE_JWT_SECRET")
	}
	s, err := policy.ReadSubject(*subjectFile)
	if err != nil {
		return err
	}
	tok, err := auth.Mint(secret, auth.MintClaims{
		Subject: s.ID, Tenant: s.Tenant, Roles: s.Roles, Groups: s.Groups, Attributes: s.Attributes,
		Agent: *agent, Issuer: *issuer, Audience: *audience, Lifetime: *lifetime,
		ClientID: *clientID, Scopes: strings.Fields(*scope),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, tok)
	return nil
}
