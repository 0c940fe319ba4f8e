package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintClaims is what a development token says. Tenant, roles and groups go
// into the default claim names ("tenant", "roles", "groups").
type MintClaims struct {
	Subject string // sub; required
	Tenant  string // required
	Roles   []string
	Groups  []string
	// Attributes become top-level claims of the same name.
	Attributes map[string]any
	// Agent, if set, becomes act.sub: the agent acting for Subject.
	Agent    string
	Issuer   string
	Audience string
	ID       string // jti
	// ClientID is the OAuth client the token is issued to (client_id), as
	// an MCP host's tokens name it.
	ClientID string
	// Scopes become the space-separated scope claim.
	Scopes []string
	// Lifetime is exp - iat; default DefaultMaxLifetime.
	Lifetime time.Duration
	// IssuedAt is iat and nbf; default now. Truncated to whole seconds.
	IssuedAt time.Time
}

// reservedClaims are the claim names Mint sets itself; attributes may not
// use them.
var reservedClaims = []string{"sub", "iss", "aud", "exp", "nbf", "iat", "jti", "act", "scope", "client_id",
	DefaultTenantClaim, DefaultRolesClaim, DefaultGroupsClaim}

// Mint returns an HS256 token for c signed with secret, for `ragfence token`
// and tests. Production tokens should come from an identity provider and be
// verified with a JWKS.
func Mint(secret []byte, c MintClaims) (string, error) {
	switch {
	case len(secret) < MinSecretBytes:
		return "", fmt.Errorf("auth: secret must be at least %d bytes", MinSecretBytes)
	case c.Subject == "":
		return "", errors.New("auth: mint: subject is required")
	case c.Tenant == "":
		return "", errors.New("auth: mint: tenant is required")
	case c.Lifetime < 0:
		return "", errors.New("auth: mint: lifetime must not be negative")
	}
	if c.Lifetime == 0 {
		c.Lifetime = DefaultMaxLifetime
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	iat := c.IssuedAt.Truncate(time.Second)
	claims := jwt.MapClaims{}
	for name, v := range c.Attributes {
		for _, r := range reservedClaims {
			if name == r {
				return "", fmt.Errorf("auth: mint: attribute %q would overwrite a claim Mint sets", name)
			}
		}
		claims[name] = v
	}
	claims["sub"] = c.Subject
	claims[DefaultTenantClaim] = c.Tenant
	claims["iat"] = iat.Unix()
	claims["nbf"] = iat.Unix()
	claims["exp"] = iat.Add(c.Lifetime).Unix()
	set := func(name string, v string) {
		if v != "" {
			claims[name] = v
		}
	}
	set("iss", c.Issuer)
	set("aud", c.Audience)
	set("jti", c.ID)
	set("client_id", c.ClientID)
	set("scope", strings.Join(c.Scopes, " "))
	if c.Roles != nil {
		claims[DefaultRolesClaim] = c.Roles
	}
	if c.Groups != nil {
		claims[DefaultGroupsClaim] = c.Groups
	}
	if c.Agent != "" {
		claims["act"] = map[string]any{"sub": c.Agent}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return tok, nil
}
