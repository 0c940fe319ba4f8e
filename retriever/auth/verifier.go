package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/internal/strictjson"
)

// Defaults for zero Config fields.
const (
	DefaultMaxLifetime           = 15 * time.Minute
	DefaultSkew                  = 30 * time.Second
	DefaultJWKSRefresh           = 15 * time.Minute
	DefaultJWKSUnknownKIDRefresh = time.Minute
	DefaultTenantClaim           = "tenant"
	DefaultRolesClaim            = "roles"
	DefaultGroupsClaim           = "groups"
)

// MinSecretBytes is the shortest HMAC secret New and Mint accept: RFC 7518
// section 3.2 requires an HS256 key at least as long as the hash output.
const MinSecretBytes = 32

// maxSkew bounds Config.Skew: clocks that disagree by more than this are a
// problem to fix, not to paper over by widening every token's window.
const maxSkew = 5 * time.Minute

// maxTokenBytes bounds what Verify parses, so a huge header cannot make the
// server decode megabytes of JSON before the signature is checked.
const maxTokenBytes = 16 << 10

// builtinSubject are the policy.Subject fields that are not attributes.
var builtinSubject = []string{"id", "tenant", "roles", "groups"}

// Config says where keys come from and how claims map to a subject.
type Config struct {
	// HMACSecret enables HS256 with this secret (at least MinSecretBytes).
	// For development; it excludes JWKSFile and JWKSURL.
	HMACSecret []byte
	// JWKSFile is a JSON Web Key Set read once at New (restart to rotate).
	JWKSFile string
	// JWKSURL is a JSON Web Key Set fetched at New (New fails if it cannot
	// be fetched), every JWKSRefresh, and on a token with an unknown kid. It
	// must be https, or http on a loopback host.
	JWKSURL string
	// JWKSRefresh is how often JWKSURL is refetched, so revoked keys drop out.
	// Default DefaultJWKSRefresh.
	JWKSRefresh time.Duration
	// JWKSUnknownKIDRefresh is the least time between two on-demand fetches
	// of JWKSURL for unknown kids, so forged kids cannot hammer the issuer.
	// Default DefaultJWKSUnknownKIDRefresh.
	JWKSUnknownKIDRefresh time.Duration
	// JWKSClient fetches JWKSURL. Default http.DefaultClient.
	JWKSClient *http.Client

	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// ForeignAudiences are resources whose tokens this verifier refuses
	// even without an Audience of its own: an MCP token (aud the MCP
	// resource) is no user token for the HTTP API (RFC 8707).
	ForeignAudiences []string
	// MaxLifetime is the longest exp - iat (or exp - nbf) accepted.
	// Default DefaultMaxLifetime.
	MaxLifetime time.Duration
	// Skew is the clock difference tolerated on exp, nbf and iat, at most
	// 5 minutes. Default DefaultSkew (a zero Skew means the default).
	Skew time.Duration

	// TenantClaim, RolesClaim and GroupsClaim name the claims read into
	// Subject.Tenant, Roles and Groups. Defaults "tenant", "roles", "groups".
	TenantClaim, RolesClaim, GroupsClaim string
	// Attributes are the extra subject attributes the policy declares (not
	// id, tenant, roles or groups); each is read from the claim of the same
	// name unless AttributeClaims maps it to another claim.
	Attributes      []string
	AttributeClaims map[string]string

	// ClientClaims name the claims that identify the OAuth client a token
	// was issued to (for MCP: "client_id", then "azp"). When set, a token
	// without act speaks for the first of them present as its agent, so a
	// client acting for a user gets its grant intersected with the user's
	// exactly as an act claim would. Empty: the client is not an agent.
	ClientClaims []string

	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Identity is who a verified token speaks for.
type Identity struct {
	// Subject is the user; its Attributes still need policy.Set.CheckSubject.
	Subject *policy.Subject
	// Agent is act.sub, the current actor for the user, or "" if the token
	// carries no act claim.
	Agent string
	// PriorActors are the subs of nested act claims, outermost first. RFC
	// 8693 makes them informational: log them, never authorize on them.
	PriorActors []string
	// TokenID is the jti claim, or "".
	TokenID string
	// ExpiresAt is the exp claim.
	ExpiresAt time.Time
	// Scopes are the token's OAuth scopes: the space-separated "scope"
	// claim (RFC 9068), or the "scp" list some issuers send.
	Scopes []string
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	claims *strictjson.Object // what identity and the checks read of the payload
	parser *jwt.Parser
	keys   func(ctx context.Context) jwt.Keyfunc
	close  func()
}

// New checks cfg, loads its keys, and returns a Verifier. ctx bounds the
// first fetch of JWKSURL; the periodic refresh runs until Close.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, claims: claimsSchema(cfg), close: func() {}}
	var methods []string
	if cfg.HMACSecret != nil {
		methods = []string{jwt.SigningMethodHS256.Alg()}
		v.keys = hmacKeys(cfg.HMACSecret)
	} else {
		methods = asymmetricAlgs()
		v.keys, v.close, err = jwksKeys(ctx, cfg)
		if err != nil {
			return nil, err
		}
	}
	v.parser = jwt.NewParser(
		// The allowed algorithms come from the key kind alone; the token's
		// header only selects among them.
		jwt.WithValidMethods(methods),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
		jwt.WithExpirationRequired(),
		// A future iat would let a long-lived token pass the lifetime check.
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Skew),
		jwt.WithTimeFunc(cfg.Now),
	)
	return v, nil
}

func withDefaults(cfg Config) (Config, error) {
	hasJWKS := cfg.JWKSFile != "" || cfg.JWKSURL != ""
	switch {
	case cfg.HMACSecret == nil && !hasJWKS:
		return cfg, errors.New("auth: no keys: set HMACSecret, JWKSFile or JWKSURL")
	case cfg.HMACSecret != nil && hasJWKS:
		// One verifier, one kind of key: mixing them is how algorithm
		// confusion starts.
		return cfg, errors.New("auth: HMACSecret excludes JWKSFile and JWKSURL")
	case cfg.HMACSecret != nil && len(cfg.HMACSecret) < MinSecretBytes:
		return cfg, fmt.Errorf("auth: HMACSecret must be at least %d bytes", MinSecretBytes)
	case cfg.Skew < 0 || cfg.Skew > maxSkew:
		return cfg, fmt.Errorf("auth: Skew must be between 0 and %s", maxSkew)
	case cfg.MaxLifetime < 0 || cfg.JWKSRefresh < 0 || cfg.JWKSUnknownKIDRefresh < 0:
		return cfg, errors.New("auth: durations must not be negative")
	}
	cfg.MaxLifetime = cmp.Or(cfg.MaxLifetime, DefaultMaxLifetime)
	cfg.Skew = cmp.Or(cfg.Skew, DefaultSkew)
	cfg.JWKSRefresh = cmp.Or(cfg.JWKSRefresh, DefaultJWKSRefresh)
	cfg.JWKSUnknownKIDRefresh = cmp.Or(cfg.JWKSUnknownKIDRefresh, DefaultJWKSUnknownKIDRefresh)
	cfg.TenantClaim = cmp.Or(cfg.TenantClaim, DefaultTenantClaim)
	cfg.RolesClaim = cmp.Or(cfg.RolesClaim, DefaultRolesClaim)
	cfg.GroupsClaim = cmp.Or(cfg.GroupsClaim, DefaultGroupsClaim)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	seen := map[string]bool{}
	for _, name := range cfg.Attributes {
		switch {
		case name == "":
			return cfg, errors.New("auth: empty attribute name")
		case slices.Contains(builtinSubject, name):
			return cfg, fmt.Errorf("auth: attribute %q is a built-in subject field; configure its claim instead", name)
		case seen[name]:
			return cfg, fmt.Errorf("auth: attribute %q listed twice", name)
		}
		seen[name] = true
	}
	for name, claim := range cfg.AttributeClaims {
		if !seen[name] {
			return cfg, fmt.Errorf("auth: AttributeClaims maps %q, which is not in Attributes", name)
		}
		if claim == "" {
			return cfg, fmt.Errorf("auth: AttributeClaims maps %q to an empty claim name", name)
		}
	}
	return cfg, nil
}

// Close stops refreshing the JWKS URL. The Verifier still verifies with the
// keys it holds. Close is idempotent.
func (v *Verifier) Close() { v.close() }

// Verify checks the Authorization header value ("Bearer <JWT>") and returns
// the identity it carries. Every error is an *Error. ctx bounds an on-demand
// JWKS fetch.
func (v *Verifier) Verify(ctx context.Context, authorizationHeader string) (*Identity, error) {
	raw, e := bearer(authorizationHeader)
	if e != nil {
		return nil, e
	}
	if e := v.strict(raw); e != nil {
		return nil, e
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, v.keys(ctx))
	if err != nil {
		return nil, parseError(err)
	}
	if _, ok := tok.Header["crit"]; ok {
		// RFC 7515 4.1.11: a recipient must refuse critical extensions it
		// does not understand, and we understand none.
		return nil, newError(CodeMalformedToken, "token has unsupported critical header parameters", nil)
	}
	if e := v.checkIssuerAudience(claims); e != nil {
		return nil, e
	}
	exp, e := v.checkLifetime(claims)
	if e != nil {
		return nil, e
	}
	id, e := v.identity(claims)
	if e != nil {
		return nil, e
	}
	id.ExpiresAt = exp
	return id, nil
}

// bearer extracts the token from an Authorization header value.
func bearer(h string) (string, *Error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", newError(CodeMissingToken, "missing bearer token", nil)
	}
	scheme, tok, _ := strings.Cut(h, " ")
	// RFC 7235: the scheme is case-insensitive.
	if !strings.EqualFold(scheme, "Bearer") {
		return "", newError(CodeMissingToken, "authorization scheme must be Bearer", nil)
	}
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "":
		return "", newError(CodeMissingToken, "missing bearer token", nil)
	case len(tok) > maxTokenBytes:
		return "", newError(CodeMalformedToken, "token is too large", nil)
	case strings.ContainsAny(tok, " \t"):
		return "", newError(CodeMalformedToken, "malformed token", nil)
	}
	return tok, nil
}

// parseError maps golang-jwt's errors to ours. Signature errors come first
// because golang-jwt only validates claims once the signature holds.
func parseError(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return newError(CodeMalformedToken, "malformed token", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return newError(CodeInvalidSignature, "invalid token signature", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// exp is the only claim the parser is told to require.
		return newError(CodeMissingClaim, `token has no "exp" claim`, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return newError(CodeExpired, "token has expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return newError(CodeNotYetValid, "token is not valid yet", err)
	default:
		// For example exp as a string: ErrInvalidType under ErrTokenInvalidClaims.
		return newError(CodeMalformedToken, "malformed token", err)
	}
}

func (v *Verifier) checkIssuerAudience(claims jwt.MapClaims) *Error {
	if v.cfg.Issuer != "" {
		iss, err := claims.GetIssuer()
		switch {
		case err != nil:
			return newError(CodeMalformedToken, `claim "iss" must be a string`, err)
		case iss == "":
			return newError(CodeMissingClaim, `token has no "iss" claim`, nil)
		case iss != v.cfg.Issuer:
			return newError(CodeWrongIssuer, "token issuer is not accepted", nil)
		}
	}
	if len(v.cfg.ForeignAudiences) > 0 {
		aud, err := claims.GetAudience()
		if err != nil {
			return newError(CodeMalformedToken, `claim "aud" must be a string or a list of strings`, err)
		}
		for _, a := range aud {
			if slices.Contains(v.cfg.ForeignAudiences, a) && a != v.cfg.Audience {
				return newError(CodeWrongAudience, "the token is for another resource", nil)
			}
		}
	}
	if v.cfg.Audience != "" {
		aud, err := claims.GetAudience()
		switch {
		case err != nil:
			return newError(CodeMalformedToken, `claim "aud" must be a string or a list of strings`, err)
		case len(aud) == 0:
			return newError(CodeMissingClaim, `token has no "aud" claim`, nil)
		case !slices.Contains(aud, v.cfg.Audience):
			return newError(CodeWrongAudience, "token audience is not accepted", nil)
		}
	}
	return nil
}

// checkLifetime refuses tokens minted to live longer than MaxLifetime, and
// returns exp. The parser has already checked exp, nbf and iat against now.
func (v *Verifier) checkLifetime(claims jwt.MapClaims) (time.Time, *Error) {
	// Type errors were reported by the parser's validation already.
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	nbf, _ := claims.GetNotBefore()
	start := iat
	if start == nil {
		start = nbf
	}
	if start == nil {
		return time.Time{}, newError(CodeMissingClaim, `token has neither "iat" nor "nbf", so its lifetime is unknown`, nil)
	}
	if exp.Sub(start.Time) > v.cfg.MaxLifetime {
		return time.Time{}, newError(CodeLifetimeTooLong,
			fmt.Sprintf("token lifetime exceeds the maximum of %s", v.cfg.MaxLifetime), nil)
	}
	return exp.UTC(), nil
}
