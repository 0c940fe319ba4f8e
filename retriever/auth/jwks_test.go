package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ragfence/ragfence/retriever/auth"
)

// keyPair is a signing key, the public key a JWKS publishes, and the
// algorithm that uses it.
type keyPair struct {
	method jwt.SigningMethod
	priv   crypto.Signer
	kid    string
}

func newKey(t *testing.T, alg, kid string) keyPair {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{method: jwt.GetSigningMethod(alg), priv: priv, kid: kid}
}

func (k keyPair) sign(t *testing.T, c jwt.MapClaims) string {
	return sign(t, k.method, k.priv, k.kid, c)
}

// jwks renders the public halves of keys as a JWK Set.
func jwks(t *testing.T, keys ...keyPair) []byte {
	t.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		opts := jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig}}
		if k.method != nil {
			opts.Metadata.ALG = jwkset.ALG(k.method.Alg())
		}
		jwk, err := jwkset.NewJWKFromKey(k.priv.Public(), opts)
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJWKS(t *testing.T, keys ...keyPair) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwksServer serves a JWK Set that tests can swap, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
}

func TestJWKS(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		key := newKey(t, alg, alg+"-1")
		other := newKey(t, alg, alg+"-1") // same kid, different key
		sources := map[string]func(t *testing.T) auth.Config{
			"file": func(t *testing.T) auth.Config { return auth.Config{JWKSFile: writeJWKS(t, key)} },
			"url":  func(t *testing.T) auth.Config { return auth.Config{JWKSURL: newJWKSServer(t, jwks(t, key)).URL} },
		}
		for source, cfg := range sources {
			t.Run(alg+"/"+source, func(t *testing.T) {
				v := newVerifier(t, cfg(t))
				noKid := key
				noKid.kid = ""
				unknown := key
				unknown.kid = "unknown"
				tests := []struct {
					name  string
					token string
					code  auth.Code
				}{
					{"good", key.sign(t, claims()), ""},
					{"no kid tries every key", noKid.sign(t, claims()), ""},
					{"other key", other.sign(t, claims()), auth.CodeInvalidSignature},
					{"unknown kid", unknown.sign(t, claims()), auth.CodeInvalidSignature},
					{"HS256 with the secret", hs256(t, claims()), auth.CodeInvalidSignature},
					{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, key.kid, claims()), auth.CodeInvalidSignature},
				}
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						id, err := v.Verify(context.Background(), "Bearer "+tt.token)
						wantCode(t, err, tt.code)
						if err == nil && id.Subject.ID != "alice" {
							t.Errorf("subject = %q", id.Subject.ID)
						}
					})
				}
			})
		}
	}
}

// An HS256 token "signed" with the RSA public key's PEM as HMAC secret must
// not verify against that public key: a verifier configured with a JWKS
// never runs HMAC, and never hands an RSA key to anything but RS256.
func TestAlgorithmConfusion(t *testing.T) {
	rsaKey := newKey(t, "RS256", "rsa-1")
	der, err := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	ecKey := newKey(t, "ES256", "ec-1")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A P-384 key published under an ES256 kid, without alg: ES256 must not use it.
	p384Key := keyPair{method: nil, priv: p384, kid: "p384"}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakKey := keyPair{method: nil, priv: weak, kid: "weak"}

	path := writeJWKS(t, rsaKey, ecKey, p384Key, weakKey)
	v := newVerifier(t, auth.Config{JWKSFile: path})
	tests := []struct {
		name  string
		token string
	}{
		{"HS256 with PEM as secret, RSA kid", sign(t, jwt.SigningMethodHS256, pemBytes, "rsa-1", claims())},
		{"HS256 with PEM as secret, no kid", sign(t, jwt.SigningMethodHS256, pemBytes, "", claims())},
		{"HS256 with DER as secret", sign(t, jwt.SigningMethodHS256, der, "rsa-1", claims())},
		{"ES256 token naming the RSA kid", sign(t, jwt.SigningMethodES256, ecKey.priv, "rsa-1", claims())},
		{"RS256 token naming the EC kid", sign(t, jwt.SigningMethodRS256, rsaKey.priv, "ec-1", claims())},
		{"ES384 signed by the P-384 key", sign(t, jwt.SigningMethodES384, p384, "p384", claims())},
		{"RS256 by a 1024-bit key", sign(t, jwt.SigningMethodRS256, weak, "weak", claims())},
		{"RS256 by a 1024-bit key, no kid", sign(t, jwt.SigningMethodRS256, weak, "", claims())},
		// The P-384 JWK has no alg for keyfunc to compare, so the key-type
		// checks (ours, then golang-jwt's) must refuse it.
		{"RS256 token naming the EC kid without alg", sign(t, jwt.SigningMethodRS256, rsaKey.priv, "p384", claims())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), "Bearer "+tt.token)
			wantCode(t, err, auth.CodeInvalidSignature)
		})
	}

	// And the HMAC verifier never accepts an asymmetric algorithm.
	h := newVerifier(t, auth.Config{HMACSecret: pemBytes})
	_, err = h.Verify(context.Background(), "Bearer "+rsaKey.sign(t, claims()))
	wantCode(t, err, auth.CodeInvalidSignature)
}

func TestJWKSRotation(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			old, next := newKey(t, alg, "k1"), newKey(t, alg, "k2")
			srv := newJWKSServer(t, jwks(t, old))
			v := newVerifier(t, auth.Config{
				JWKSURL:               srv.URL,
				JWKSRefresh:           time.Hour,
				JWKSUnknownKIDRefresh: time.Hour,
			})
			ctx := context.Background()
			if _, err := v.Verify(ctx, "Bearer "+old.sign(t, claims())); err != nil {
				t.Fatalf("old key before rotation: %v", err)
			}
			if n := srv.fetches.Load(); n != 1 {
				t.Fatalf("fetches after New = %d, want 1", n)
			}

			// The issuer rotates: k2 replaces k1. The first k2 token fetches it.
			srv.serve(jwks(t, next))
			if _, err := v.Verify(ctx, "Bearer "+next.sign(t, claims())); err != nil {
				t.Fatalf("new key after rotation: %v", err)
			}
			if n := srv.fetches.Load(); n != 2 {
				t.Fatalf("fetches after rotation = %d, want 2", n)
			}
			// The refetch replaced the set: k1 is revoked.
			_, err := v.Verify(ctx, "Bearer "+old.sign(t, claims()))
			wantCode(t, err, auth.CodeInvalidSignature)

			// More unknown kids within the limit fail fast without a fetch.
			forged := newKey(t, alg, "k3")
			start := time.Now()
			for range 5 {
				_, err := v.Verify(ctx, "Bearer "+forged.sign(t, claims()))
				wantCode(t, err, auth.CodeInvalidSignature)
			}
			if n := srv.fetches.Load(); n != 2 {
				t.Errorf("fetches after unknown kids = %d, want 2 (rate limited)", n)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("rate-limited lookups took %s; they should not wait", d)
			}
		})
	}
}

func TestJWKSRefreshAndClose(t *testing.T) {
	key := newKey(t, "ES256", "k1")
	srv := newJWKSServer(t, jwks(t, key))
	v, err := auth.New(context.Background(), auth.Config{JWKSURL: srv.URL, JWKSRefresh: 20 * time.Millisecond, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.fetches.Load() < 3 {
		if time.Now().After(deadline) {
			v.Close()
			t.Fatalf("fetches = %d, want periodic refreshes", srv.fetches.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	v.Close()
	v.Close()                         // idempotent
	time.Sleep(50 * time.Millisecond) // let an in-flight refresh finish
	n := srv.fetches.Load()
	time.Sleep(150 * time.Millisecond)
	if m := srv.fetches.Load(); m != n {
		t.Errorf("fetches went from %d to %d after Close", n, m)
	}
	// Keys already held still verify.
	if _, err := v.Verify(context.Background(), "Bearer "+key.sign(t, claims())); err != nil {
		t.Errorf("Verify after Close: %v", err)
	}
}

func TestJWKSURLUnavailableAtStart(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.status = http.StatusInternalServerError
	if v, err := auth.New(context.Background(), auth.Config{JWKSURL: srv.URL}); err == nil {
		v.Close()
		t.Fatal("New succeeded with an unreachable JWKS")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok := newJWKSServer(t, jwks(t, newKey(t, "EdDSA", "k")))
	if v, err := auth.New(ctx, auth.Config{JWKSURL: ok.URL}); err == nil {
		v.Close()
		t.Fatal("New succeeded with a cancelled context")
	}
}

// File and URL together: file keys are known without a fetch; URL keys too.
func TestJWKSFileAndURL(t *testing.T) {
	fileKey, urlKey := newKey(t, "EdDSA", "file"), newKey(t, "RS256", "url")
	srv := newJWKSServer(t, jwks(t, urlKey))
	v := newVerifier(t, auth.Config{JWKSFile: writeJWKS(t, fileKey), JWKSURL: srv.URL})
	for _, k := range []keyPair{fileKey, urlKey} {
		if _, err := v.Verify(context.Background(), "Bearer "+k.sign(t, claims())); err != nil {
			t.Errorf("%s: %v", k.kid, err)
		}
	}
}
