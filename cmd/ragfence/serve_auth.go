package main

import (
	"bytes"
	"context"
	"os"
	"sort"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/auth"
)

// envJWTSecret holds the HS256 secret itself, for development setups that
// prefer the environment to a file.
const envJWTSecret = envPrefix + "JWT_SECRET"

// newVerifier configures token verification from the settings. Subject
// attributes are those the policy declares at start; a reload that adds an
// attribute needs a restart for tokens to carry it.
// clientClaims name the OAuth client's claims, read as the agent (MCP).
func newVerifier(ctx context.Context, s *serveSettings, policies *retriever.PolicyStore, clientClaims ...string) (*auth.Verifier, error) {
	secret, err := readSecret(s.jwtSecretFile)
	if err != nil {
		return nil, err
	}
	if secret == nil && s.jwksFile == "" && s.jwksURL == "" {
		return nil, usagef("no token verification configured: give --jwt-secret-file (development), --jwks-file or --jwks-url")
	}
	var attrs []string
	for name := range policies.Load().Set().Subject {
		switch name {
		case "id", "tenant", "roles", "groups":
		default:
			attrs = append(attrs, name)
		}
	}
	sort.Strings(attrs)
	return auth.New(ctx, auth.Config{
		HMACSecret: secret, JWKSFile: s.jwksFile, JWKSURL: s.jwksURL, JWKSRefresh: s.jwksRefresh,
		Issuer: s.issuer, Audience: s.audience, MaxLifetime: s.maxLifetime, Skew: s.skew,
		TenantClaim: s.tenantClaim, RolesClaim: s.rolesClaim, GroupsClaim: s.groupsClaim, Attributes: attrs,
		ClientClaims: clientClaims,
		// An MCP token is for the MCP endpoint only; the MCP verifier's own
		// Audience is the resource, which it accepts.
		ForeignAudiences: nonEmpty(s.mcpResource),
	})
}

// readSecret reads the HS256 secret from a file (trailing newline dropped)
// or $RAGFENCE_JWT_SECRET; nil when neither is given.
func readSecret(file string) ([]byte, error) {
	if file == "" {
		if v := os.Getenv(envJWTSecret); v != "" {
			return []byte(v), nil
		}
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("--jwt-secret-file: %v", err)
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
