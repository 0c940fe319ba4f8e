package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/ragfence/ragfence/retriever/internal/strictjson"
)

// headerSchema is what the verifier and golang-jwt read of a token's
// header.
var headerSchema = &strictjson.Object{Open: true, Fields: map[string]*strictjson.Object{
	"alg": nil, "kid": nil, "typ": nil, "crit": nil,
}}

// claimsSchema is what Verify reads of a payload with cfg: the registered
// claims it checks, the subject's claims, and act, nested.
func claimsSchema(cfg Config) *strictjson.Object {
	act := &strictjson.Object{Open: true, Fields: map[string]*strictjson.Object{"sub": nil}}
	act.Fields["act"] = act
	o := &strictjson.Object{Open: true, Fields: map[string]*strictjson.Object{"act": act}}
	for _, name := range append([]string{"sub", "jti", "exp", "iat", "nbf", "iss", "aud", "scope", "scp",
		cfg.TenantClaim, cfg.RolesClaim, cfg.GroupsClaim}, cfg.ClientClaims...) {
		o.Fields[name] = nil
	}
	for _, name := range cfg.Attributes {
		claim := name
		if c, ok := cfg.AttributeClaims[name]; ok {
			claim = c
		}
		o.Fields[claim] = nil
	}
	return o
}

// strict refuses a token whose header or payload encoding/json would read
// differently from another JWT library (a gateway's, the issuer's): a
// repeated name (encoding/json keeps the last, others the first), a name
// that matches a claim the verifier reads only in another letter case (a
// struct-decoding reader takes "SUB" for sub; a map lookup does not), or
// data after the JSON object (golang-jwt's decoder stops at the object's
// end). Segments that do not decode are left to the parser, which refuses
// them as malformed.
func (v *Verifier) strict(token string) *Error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	for i, schema := range []*strictjson.Object{headerSchema, v.claims} {
		// As golang-jwt decodes with WithStrictDecoding.
		seg, err := base64.RawURLEncoding.Strict().DecodeString(parts[i])
		if err != nil {
			return nil
		}
		if !json.Valid(seg) {
			return newError(CodeMalformedToken, "malformed token", nil)
		}
		if err := strictjson.Check(seg, schema); err != nil {
			part := [...]string{"header", "payload"}[i]
			return newError(CodeMalformedToken, "token "+part+" "+strictProblem(err), err)
		}
	}
	return nil
}

// strictProblem says what strictjson refused without quoting the token.
func strictProblem(err error) string {
	var e *strictjson.Error
	if errors.As(err, &e) {
		switch e.Kind {
		case strictjson.Duplicate:
			return "repeats a name"
		case strictjson.CaseOnly:
			return "has a name that differs from a claim's only in letter case"
		case strictjson.Trailing:
			return "has data after its JSON object"
		}
	}
	return "is malformed"
}
