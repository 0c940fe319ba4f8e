package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/auth"
)

var (
	secret = []byte("test-secret-test-secret-test-sec") // 32 bytes
	now    = time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
)

func clock() time.Time { return now }

// claims returns a valid claim set; each case edits its copy.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":    "alice",
		"tenant": "acme",
		"iat":    now.Add(-time.Minute).Unix(),
		"exp":    now.Add(5 * time.Minute).Unix(),
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func hs256(t *testing.T, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodHS256, secret, "", c)
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = clock
	}
	v, err := auth.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// wantCode checks err's code; "" means no error.
func wantCode(t *testing.T, err error, code auth.Code) {
	t.Helper()
	if got := auth.CodeOf(err); got != code {
		t.Fatalf("code = %q, want %q (err: %v)", got, code, err)
	}
	if code != "" {
		var e *auth.Error
		if !errors.As(err, &e) {
			t.Fatalf("err %T is not *auth.Error", err)
		}
	}
}

func TestVerifyHS256(t *testing.T) {
	with := func(edit func(c jwt.MapClaims)) jwt.MapClaims {
		c := claims()
		edit(c)
		return c
	}
	tests := []struct {
		name   string
		cfg    auth.Config // HMACSecret and Now are filled in
		header func(t *testing.T) string
		code   auth.Code
		want   *auth.Identity // checked when code is ""
	}{
		{
			name:   "good token",
			header: func(t *testing.T) string { return "Bearer " + hs256(t, claims()) },
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{}},
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name:   "scheme is case-insensitive",
			header: func(t *testing.T) string { return "bearer  " + hs256(t, claims()) + " " },
		},
		{
			name: "forged signature",
			header: func(t *testing.T) string {
				return "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), "", claims())
			},
			code: auth.CodeInvalidSignature,
		},
		{
			name: "tampered payload",
			header: func(t *testing.T) string {
				parts := strings.Split(hs256(t, claims()), ".")
				other := strings.Split(hs256(t, with(func(c jwt.MapClaims) { c["sub"] = "admin" })), ".")
				return "Bearer " + parts[0] + "." + other[1] + "." + parts[2]
			},
			code: auth.CodeInvalidSignature,
		},
		{
			name: "alg none",
			header: func(t *testing.T) string {
				return "Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims())
			},
			code: auth.CodeInvalidSignature,
		},
		{
			name:   "HS512 is not HS256",
			header: func(t *testing.T) string { return "Bearer " + sign(t, jwt.SigningMethodHS512, secret, "", claims()) },
			code:   auth.CodeInvalidSignature,
		},
		{
			name:   "missing header",
			header: func(*testing.T) string { return "" },
			code:   auth.CodeMissingToken,
		},
		{
			name:   "basic scheme",
			header: func(*testing.T) string { return "Basic YWxpY2U6cHc=" },
			code:   auth.CodeMissingToken,
		},
		{
			name:   "bearer without token",
			header: func(*testing.T) string { return "Bearer " },
			code:   auth.CodeMissingToken,
		},
		{
			name:   "not a JWT",
			header: func(*testing.T) string { return "Bearer abc.def" },
			code:   auth.CodeMalformedToken,
		},
		{
			name:   "oversized",
			header: func(*testing.T) string { return "Bearer " + strings.Repeat("a", 20<<10) },
			code:   auth.CodeMalformedToken,
		},
		{
			name: "crit header",
			header: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims())
				tok.Header["crit"] = []string{"exp-ext"}
				s, _ := tok.SignedString(secret)
				return "Bearer " + s
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "expired",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }))
			},
			code: auth.CodeExpired,
		},
		{
			name: "expired within skew",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }))
			},
		},
		{
			name: "nbf beyond skew",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }))
			},
			code: auth.CodeNotYetValid,
		},
		{
			name: "nbf within skew",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(20 * time.Second).Unix() }))
			},
		},
		{
			name: "nbf within a configured smaller skew is refused",
			cfg:  auth.Config{Skew: 5 * time.Second},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(20 * time.Second).Unix() }))
			},
			code: auth.CodeNotYetValid,
		},
		{
			// A future iat would otherwise let exp sit far beyond now + MaxLifetime.
			name: "iat in the future",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					c["iat"] = now.Add(time.Hour).Unix()
					c["exp"] = now.Add(time.Hour + time.Minute).Unix()
				}))
			},
			code: auth.CodeNotYetValid,
		},
		{
			name: "lifetime too long",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(15 * time.Minute).Unix() }))
			},
			code: auth.CodeLifetimeTooLong,
		},
		{
			name: "lifetime exactly the maximum",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(14 * time.Minute).Unix() }))
			},
		},
		{
			name: "lifetime from nbf when there is no iat",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					delete(c, "iat")
					c["nbf"] = now.Add(-time.Hour).Unix()
				}))
			},
			code: auth.CodeLifetimeTooLong,
		},
		{
			name: "configured max lifetime",
			cfg:  auth.Config{MaxLifetime: 2 * time.Minute},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, claims())
			},
			code: auth.CodeLifetimeTooLong,
		},
		{
			name: "neither iat nor nbf",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { delete(c, "iat") }))
			},
			code: auth.CodeMissingClaim,
		},
		{
			name: "missing exp",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { delete(c, "exp") }))
			},
			code: auth.CodeMissingClaim,
		},
		{
			name: "exp of the wrong type",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "issuer matches",
			cfg:  auth.Config{Issuer: "https://idp.example"},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["iss"] = "https://idp.example" }))
			},
		},
		{
			name: "wrong issuer",
			cfg:  auth.Config{Issuer: "https://idp.example"},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }))
			},
			code: auth.CodeWrongIssuer,
		},
		{
			name:   "missing issuer",
			cfg:    auth.Config{Issuer: "https://idp.example"},
			header: func(t *testing.T) string { return "Bearer " + hs256(t, claims()) },
			code:   auth.CodeMissingClaim,
		},
		{
			name: "issuer ignored when not configured",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["iss"] = "anyone" }))
			},
		},
		{
			name: "audience in a list",
			cfg:  auth.Config{Audience: "ragfence"},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["aud"] = []string{"other", "ragfence"} }))
			},
		},
		{
			name: "wrong audience",
			cfg:  auth.Config{Audience: "ragfence"},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["aud"] = "other" }))
			},
			code: auth.CodeWrongAudience,
		},
		{
			name:   "missing audience",
			cfg:    auth.Config{Audience: "ragfence"},
			header: func(t *testing.T) string { return "Bearer " + hs256(t, claims()) },
			code:   auth.CodeMissingClaim,
		},
		{
			name: "missing sub",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { delete(c, "sub") }))
			},
			code: auth.CodeMissingClaim,
		},
		{
			name:   "empty sub",
			header: func(t *testing.T) string { return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["sub"] = "" })) },
			code:   auth.CodeMissingClaim,
		},
		{
			name: "missing tenant",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { delete(c, "tenant") }))
			},
			code: auth.CodeMissingClaim,
		},
		{
			name: "tenant not a string",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["tenant"] = 7 }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "roles and groups as arrays",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					c["roles"] = []string{"analyst", "admin"}
					c["groups"] = []string{"eng"}
					c["jti"] = "tok-1"
				}))
			},
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"analyst", "admin"}, Groups: []string{"eng"}, Attributes: map[string]any{}},
				TokenID:   "tok-1",
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "roles as a string",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["roles"] = "admin" }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "groups with a number",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["groups"] = []any{"eng", 1} }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "custom claim names",
			cfg: auth.Config{
				TenantClaim: "https://example.com/org",
				RolesClaim:  "https://example.com/roles",
				GroupsClaim: "grp",
			},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					delete(c, "tenant")
					c["https://example.com/org"] = "globex"
					c["https://example.com/roles"] = []string{"viewer"}
					c["grp"] = []string{"ops"}
					c["roles"] = []string{"admin"} // not the configured claim
				}))
			},
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "globex", Roles: []string{"viewer"}, Groups: []string{"ops"}, Attributes: map[string]any{}},
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "attributes keep JSON types",
			cfg: auth.Config{
				Attributes:      []string{"clearance", "department", "regions", "contractor", "salary_band", "absent", "nulled"},
				AttributeClaims: map[string]string{"department": "dept"},
			},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					c["clearance"] = 3
					c["salary_band"] = 9007199254740993 // beyond float64's exact range
					c["dept"] = "sales"
					c["department"] = "ignored: mapped to dept"
					c["regions"] = []string{"eu", "us"}
					c["contractor"] = false
					c["nulled"] = nil
					c["undeclared"] = "not copied"
				}))
			},
			want: &auth.Identity{
				Subject: &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{
					"clearance":   json.Number("3"),
					"salary_band": json.Number("9007199254740993"),
					"department":  "sales",
					"regions":     []any{"eu", "us"},
					"contractor":  false,
				}},
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "act names the agent",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["act"] = map[string]any{"sub": "support-bot"} }))
			},
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{}},
				Agent:     "support-bot",
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "nested act: outermost is the agent",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					c["act"] = map[string]any{"sub": "summarizer", "act": map[string]any{"sub": "planner", "act": map[string]any{"sub": "gateway"}}}
				}))
			},
			want: &auth.Identity{
				Subject:     &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{}},
				Agent:       "summarizer",
				PriorActors: []string{"planner", "gateway"},
				ExpiresAt:   now.Add(5 * time.Minute),
			},
		},
		{
			name: "act chain too deep",
			header: func(t *testing.T) string {
				act := map[string]any{"sub": "a0"}
				for i := range 9 {
					act = map[string]any{"sub": "a" + string(rune('1'+i)), "act": act}
				}
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["act"] = act }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "act without sub",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["act"] = map[string]any{"iss": "x"} }))
			},
			code: auth.CodeMissingClaim,
		},
		{
			name: "act as a string",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["act"] = "support-bot" }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "a client claim names the agent when there is no act",
			cfg:  auth.Config{ClientClaims: []string{"client_id", "azp"}},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["azp"] = "ide-host"; c["scope"] = "ragfence:retrieve  ragfence:query" }))
			},
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{}},
				Agent:     "ide-host",
				Scopes:    []string{"ragfence:retrieve", "ragfence:query"},
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "act wins over the client",
			cfg:  auth.Config{ClientClaims: []string{"client_id"}},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) {
					c["client_id"] = "ide-host"
					c["act"] = map[string]any{"sub": "summarizer"}
					c["scp"] = []string{"ragfence:access"}
				}))
			},
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{}},
				Agent:     "summarizer",
				Scopes:    []string{"ragfence:access"},
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "client claims unused unless configured",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["client_id"] = "ide-host" }))
			},
			want: &auth.Identity{
				Subject:   &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{}, Groups: []string{}, Attributes: map[string]any{}},
				ExpiresAt: now.Add(5 * time.Minute),
			},
		},
		{
			name: "scope and scp disagree",
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["scope"] = "a"; c["scp"] = []string{"b"} }))
			},
			code: auth.CodeMalformedToken,
		},
		{
			name: "client claim not a string",
			cfg:  auth.Config{ClientClaims: []string{"client_id"}},
			header: func(t *testing.T) string {
				return "Bearer " + hs256(t, with(func(c jwt.MapClaims) { c["client_id"] = 7 }))
			},
			code: auth.CodeMalformedToken,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.HMACSecret = secret
			v := newVerifier(t, tt.cfg)
			header := tt.header(t)
			id, err := v.Verify(context.Background(), header)
			wantCode(t, err, tt.code)
			if err != nil {
				// Messages go to clients: they must not echo the token.
				if tok := strings.TrimSpace(strings.TrimPrefix(header, "Bearer")); len(tok) > 10 && strings.Contains(err.Error(), tok[:10]) {
					t.Errorf("error %q echoes the token", err)
				}
				return
			}
			if tt.want != nil && !reflect.DeepEqual(id, tt.want) {
				t.Errorf("identity\n got %+v %+v\nwant %+v %+v", id, id.Subject, tt.want, tt.want.Subject)
			}
		})
	}
}

// The subject Verify returns must pass the policy's own type conversion.
func TestAttributesConvert(t *testing.T) {
	v := newVerifier(t, auth.Config{HMACSecret: secret, Attributes: []string{"clearance", "regions"}})
	c := claims()
	c["clearance"] = 4
	c["regions"] = []string{"eu"}
	id, err := v.Verify(context.Background(), "Bearer "+hs256(t, c))
	if err != nil {
		t.Fatal(err)
	}
	n, err := policy.ConvertAttr(id.Subject.Attributes["clearance"], policy.Integer)
	if err != nil || n != int64(4) {
		t.Errorf("clearance = %v, %v; want int64 4", n, err)
	}
	r, err := policy.ConvertAttr(id.Subject.Attributes["regions"], policy.TextArray)
	if err != nil || !reflect.DeepEqual(r, []string{"eu"}) {
		t.Errorf("regions = %v, %v", r, err)
	}
}

func TestNewRefusesConfig(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	octOnly := filepath.Join(dir, "oct.json")
	if err := os.WriteFile(octOnly, []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  auth.Config
		want string
	}{
		{"no keys", auth.Config{}, "no keys"},
		{"secret and JWKS", auth.Config{HMACSecret: secret, JWKSFile: empty}, "excludes"},
		{"short secret", auth.Config{HMACSecret: []byte("short")}, "at least 32 bytes"},
		{"skew too large", auth.Config{HMACSecret: secret, Skew: time.Hour}, "Skew"},
		{"built-in attribute", auth.Config{HMACSecret: secret, Attributes: []string{"roles"}}, "built-in"},
		{"duplicate attribute", auth.Config{HMACSecret: secret, Attributes: []string{"a", "a"}}, "twice"},
		{"mapping for undeclared attribute", auth.Config{HMACSecret: secret, Attributes: []string{"a"}, AttributeClaims: map[string]string{"b": "c"}}, "not in Attributes"},
		{"missing JWKS file", auth.Config{JWKSFile: filepath.Join(dir, "nope.json")}, "JWKS file"},
		{"empty JWKS file", auth.Config{JWKSFile: empty}, "no usable"},
		// Symmetric keys do not belong in a JWKS: they are read as public
		// material only, which an oct key has none of.
		{"oct key in JWKS file", auth.Config{JWKSFile: octOnly}, "JWKS file"},
		{"plain http JWKS URL", auth.Config{JWKSURL: "http://idp.example/jwks.json"}, "must be https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := auth.New(context.Background(), tt.cfg)
			if err == nil {
				v.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestMint(t *testing.T) {
	v := newVerifier(t, auth.Config{
		HMACSecret: secret,
		Issuer:     "ragfence-dev",
		Audience:   "ragfence",
		Attributes: []string{"clearance"},
	})
	tok, err := auth.Mint(secret, auth.MintClaims{
		Subject:    "alice",
		Tenant:     "acme",
		Roles:      []string{"analyst"},
		Groups:     []string{"eng"},
		Attributes: map[string]any{"clearance": 2},
		Agent:      "support-bot",
		Issuer:     "ragfence-dev",
		Audience:   "ragfence",
		ID:         "dev-1",
		Lifetime:   10 * time.Minute,
		IssuedAt:   now.Add(-time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), "Bearer "+tok)
	if err != nil {
		t.Fatal(err)
	}
	want := &auth.Identity{
		Subject: &policy.Subject{ID: "alice", Tenant: "acme", Roles: []string{"analyst"}, Groups: []string{"eng"},
			Attributes: map[string]any{"clearance": json.Number("2")}},
		Agent:     "support-bot",
		TokenID:   "dev-1",
		ExpiresAt: now.Add(9 * time.Minute),
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("identity\n got %+v %+v\nwant %+v %+v", id, id.Subject, want, want.Subject)
	}

	refused := []struct {
		name string
		c    auth.MintClaims
	}{
		{"no subject", auth.MintClaims{Tenant: "acme"}},
		{"no tenant", auth.MintClaims{Subject: "alice"}},
		{"reserved claim", auth.MintClaims{Subject: "alice", Tenant: "acme", Attributes: map[string]any{"exp": 1}}},
		{"negative lifetime", auth.MintClaims{Subject: "alice", Tenant: "acme", Lifetime: -time.Second}},
	}
	for _, tt := range refused {
		if _, err := auth.Mint(secret, tt.c); err == nil {
			t.Errorf("%s: Mint succeeded", tt.name)
		}
	}
	if _, err := auth.Mint([]byte("short"), auth.MintClaims{Subject: "a", Tenant: "b"}); err == nil {
		t.Error("short secret: Mint succeeded")
	}
}
