package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// jwksHTTPTimeout bounds one fetch of the JWKS URL, including an on-demand
// fetch a request waits for.
const jwksHTTPTimeout = 10 * time.Second

// minRSABits is RFC 7518 section 3.3's floor for RS256 keys.
const minRSABits = 2048

// asymmetric is every algorithm a JWKS verifier accepts and the only key
// type each may verify against. A key of another type is never offered to
// an algorithm, whatever the token's header says.
var asymmetric = map[string]func(key any) bool{
	jwt.SigningMethodRS256.Alg(): func(key any) bool {
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N.BitLen() >= minRSABits
	},
	jwt.SigningMethodES256.Alg(): func(key any) bool {
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve.Params().Name == "P-256"
	},
	jwt.SigningMethodEdDSA.Alg(): func(key any) bool {
		_, ok := key.(ed25519.PublicKey)
		return ok
	},
}

func asymmetricAlgs() []string {
	algs := make([]string, 0, len(asymmetric))
	for alg := range asymmetric {
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	return algs
}

var errKeyType = errors.New("no key of the type the algorithm needs")

func hmacKeys(secret []byte) func(context.Context) jwt.Keyfunc {
	return func(context.Context) jwt.Keyfunc {
		return func(t *jwt.Token) (any, error) {
			// The parser allows only HS256 already; this guard keeps the
			// secret from ever reaching another method.
			if t.Method != jwt.SigningMethodHS256 {
				return nil, errKeyType
			}
			return secret, nil
		}
	}
}

// jwksKeys loads cfg's JWKS file and URL and returns a key lookup bound to
// each request's context, and a func stopping the URL's refresh.
func jwksKeys(ctx context.Context, cfg Config) (func(context.Context) jwt.Keyfunc, func(), error) {
	var file jwkset.Storage
	if cfg.JWKSFile != "" {
		var err error
		if file, err = readJWKSFile(ctx, cfg.JWKSFile); err != nil {
			return nil, nil, err
		}
	}
	// The refresh goroutine outlives New's ctx (it stops at Close) but New's
	// ctx still bounds the first fetch.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	storage := file
	if cfg.JWKSURL != "" {
		var err error
		if storage, err = jwksURLStorage(bg, cfg, file); err != nil {
			cancel()
			return nil, nil, err
		}
	}
	if !stop() {
		cancel()
		return nil, nil, fmt.Errorf("auth: loading JWKS: %w", ctx.Err())
	}
	if err := checkUsable(ctx, storage); err != nil {
		cancel()
		return nil, nil, err
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:     bg,
		Storage: storage,
		// Keys marked for encryption must not verify signatures; keys with
		// no "use" are common and allowed.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	return func(ctx context.Context) jwt.Keyfunc { return typedKeys(kf.KeyfuncCtx(ctx)) }, cancel, nil
}

// typedKeys wraps keyfunc's lookup (by kid, checking the JWK's own alg and
// use) so that only keys of the type the token's algorithm needs come back.
func typedKeys(lookup jwt.Keyfunc) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		fits, ok := asymmetric[t.Method.Alg()]
		if !ok {
			return nil, errKeyType
		}
		key, err := lookup(t)
		if err != nil {
			return nil, err
		}
		if set, ok := key.(jwt.VerificationKeySet); ok {
			// No kid in the token: try every key of the right type.
			var keys []jwt.VerificationKey
			for _, k := range set.Keys {
				if fits(k) {
					keys = append(keys, k)
				}
			}
			if len(keys) == 0 {
				return nil, errKeyType
			}
			return jwt.VerificationKeySet{Keys: keys}, nil
		}
		if !fits(key) {
			return nil, errKeyType
		}
		return key, nil
	}
}

// readJWKSFile reads public keys from a JWKS file. Unlike a fetched set, a
// file is local configuration, so any key it cannot read is an error.
func readJWKSFile(ctx context.Context, path string) (jwkset.Storage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	store := jwkset.NewMemoryStorage()
	for i, m := range set.Keys {
		// Private: false reads only public material; a private key left in
		// the file by mistake is reduced to its public half.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: key %d: %w", path, i, err)
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
		}
	}
	return store, nil
}

func jwksURLStorage(bg context.Context, cfg Config, given jwkset.Storage) (jwkset.Storage, error) {
	if err := checkJWKSURL(cfg.JWKSURL); err != nil {
		return nil, err
	}
	noErrorFirst := false // New fails when the issuer is unreachable: misconfiguration shows at start
	kf, err := keyfunc.NewDefaultOverrideCtx(bg, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    cfg.JWKSClient,
		Given:                     given,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noErrorFirst,
		// jwkset bounds both the wait for the limiter and the fetch itself
		// by this: a request with an unknown kid fails at once when the
		// next fetch is further off, instead of queueing behind it.
		RateLimitWaitMax:  jwksHTTPTimeout,
		RefreshInterval:   cfg.JWKSRefresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.JWKSUnknownKIDRefresh), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS URL: %w", err)
	}
	return kf.Storage(), nil
}

// checkJWKSURL refuses plain http except on loopback: whoever can rewrite
// the key set can mint any identity.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("auth: JWKS URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("auth: JWKS URL %q must be https (or http on a loopback host)", raw)
}

// checkUsable refuses a key set with no key any accepted algorithm can use,
// which would otherwise refuse every token with a puzzling error.
func checkUsable(ctx context.Context, storage jwkset.Storage) error {
	jwks, err := storage.KeyReadAll(ctx)
	if err != nil {
		return fmt.Errorf("auth: JWKS: %w", err)
	}
	for _, jwk := range jwks {
		key := jwk.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public()
		}
		for _, fits := range asymmetric {
			if fits(key) {
				return nil
			}
		}
	}
	return fmt.Errorf("auth: the JWKS has no usable %v key", asymmetricAlgs())
}
