package auth_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ragfence/ragfence/retriever/auth"
)

// signRaw signs header and payload exactly as written, for JSON that
// jwt.MapClaims cannot produce (duplicate or case-variant names).
func signRaw(t *testing.T, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(signing, secret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// TestVerifyRefusesParserDifferentials: token JSON that encoding/json reads
// one way and another JWT library may read another is refused with
// malformed_token, header and payload alike, at any nesting of act; names
// the verifier does not read may still differ only in case.
func TestVerifyRefusesParserDifferentials(t *testing.T) {
	v := newVerifier(t, auth.Config{HMACSecret: secret, Attributes: []string{"clearance"},
		AttributeClaims: map[string]string{"clearance": "https://example.com/clearance"}})
	const hdr = `{"alg":"HS256","typ":"JWT"}`
	times := fmt.Sprintf(`"iat":%d,"exp":%d`, now.Add(-time.Minute).Unix(), now.Add(5*time.Minute).Unix())
	cases := []struct {
		name, header, payload string
		code                  auth.Code
	}{
		{"valid", hdr, `{"sub":"alice","tenant":"acme",` + times + `}`, ""},
		{"unread names may differ in case", hdr, `{"sub":"alice","tenant":"acme","note":1,"Note":2,` + times + `}`, ""},
		{"duplicate sub", hdr, `{"sub":"alice","sub":"bob","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"duplicate through an escape", hdr, `{"sub":"alice","\u0073ub":"bob","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"duplicate tenant", hdr, `{"sub":"alice","tenant":"acme","tenant":"globex",` + times + `}`, auth.CodeMalformedToken},
		{"duplicate exp", hdr, `{"sub":"alice","tenant":"acme",` + times + `,"exp":99999999999}`, auth.CodeMalformedToken},
		{"duplicate unread claim", hdr, `{"sub":"alice","tenant":"acme","note":1,"note":2,` + times + `}`, auth.CodeMalformedToken},
		{"case variant of sub", hdr, `{"sub":"alice","Sub":"bob","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"case variant alone", hdr, `{"SUB":"bob","sub":"alice","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"long s folds to s", hdr, `{"sub":"alice","tenant":"acme",` + times + `,"role\u017f":["admin"]}`, auth.CodeMalformedToken},
		{"case variant of a mapped attribute claim", hdr, `{"sub":"alice","tenant":"acme","https://EXAMPLE.com/clearance":3,` + times + `}`, auth.CodeMalformedToken},
		{"case variant of tenant", hdr, `{"sub":"alice","Tenant":"globex","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"duplicate act sub", hdr, `{"sub":"alice","tenant":"acme","act":{"sub":"a1","sub":"a2"},` + times + `}`, auth.CodeMalformedToken},
		{"case variant in nested act", hdr, `{"sub":"alice","tenant":"acme","act":{"sub":"a1","act":{"sub":"a0","Sub":"x"}},` + times + `}`, auth.CodeMalformedToken},
		{"duplicate inside a claim value", hdr, `{"sub":"alice","tenant":"acme","ext":{"a":1,"a":2},` + times + `}`, auth.CodeMalformedToken},
		{"trailing data", hdr, `{"sub":"alice","tenant":"acme",` + times + `}{"sub":"bob"}`, auth.CodeMalformedToken},
		{"duplicate alg", `{"alg":"HS256","alg":"none","typ":"JWT"}`, `{"sub":"alice","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"case variant of alg", `{"alg":"HS256","ALG":"none"}`, `{"sub":"alice","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
		{"case variant of kid", `{"alg":"HS256","Kid":"x"}`, `{"sub":"alice","tenant":"acme",` + times + `}`, auth.CodeMalformedToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), "Bearer "+signRaw(t, tc.header, tc.payload))
			wantCode(t, err, tc.code)
			if err != nil && strings.Contains(err.Error(), "bob") {
				t.Errorf("message quotes the token: %v", err)
			}
			if err == nil && id.Subject.ID != "alice" {
				t.Errorf("subject %q", id.Subject.ID)
			}
		})
	}
}
