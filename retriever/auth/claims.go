package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ragfence/ragfence/policy"
)

// maxActDepth bounds how many nested act claims are read; deeper chains are
// refused rather than silently truncated in the audit trail.
const maxActDepth = 8

// identity reads the subject and agent from verified claims.
func (v *Verifier) identity(claims jwt.MapClaims) (*Identity, *Error) {
	id := &Identity{Subject: &policy.Subject{Attributes: map[string]any{}}}
	var e *Error
	s := id.Subject
	if s.ID, e = requiredString(claims, "sub"); e != nil {
		return nil, e
	}
	if s.Tenant, e = requiredString(claims, v.cfg.TenantClaim); e != nil {
		return nil, e
	}
	if s.Roles, e = stringList(claims, v.cfg.RolesClaim); e != nil {
		return nil, e
	}
	if s.Groups, e = stringList(claims, v.cfg.GroupsClaim); e != nil {
		return nil, e
	}
	for _, name := range v.cfg.Attributes {
		claim := name
		if c, ok := v.cfg.AttributeClaims[name]; ok {
			claim = c
		}
		// The parser decoded with UseNumber, so numbers are json.Number
		// and policy.Set.CheckSubject sees exact integers. A JSON null is
		// absent, as CheckSubject treats it.
		if val, ok := claims[claim]; ok && val != nil {
			s.Attributes[name] = val
		}
	}
	if id.TokenID, _, e = optionalString(claims, "jti"); e != nil {
		return nil, e
	}
	if id.Agent, id.PriorActors, e = actors(claims); e != nil {
		return nil, e
	}
	if id.Agent == "" {
		if id.Agent, e = v.client(claims); e != nil {
			return nil, e
		}
	}
	if id.Scopes, e = scopes(claims); e != nil {
		return nil, e
	}
	return id, nil
}

// client is the first of Config.ClientClaims the token carries, or "".
func (v *Verifier) client(claims map[string]any) (string, *Error) {
	for _, name := range v.cfg.ClientClaims {
		s, ok, e := optionalString(claims, name)
		if e != nil || ok {
			return s, e
		}
	}
	return "", nil
}

// scopes reads "scope" (a space-separated string) or, without it, "scp"
// (a list of strings). A token with both must agree, or is refused: two
// readers must not see different scopes.
func scopes(claims map[string]any) ([]string, *Error) {
	scope, hasScope, e := optionalString(claims, "scope")
	if e != nil {
		return nil, e
	}
	scp, e := stringList(claims, "scp")
	if e != nil {
		return nil, e
	}
	fields := strings.Fields(scope)
	switch {
	case hasScope && len(scp) > 0 && !slices.Equal(fields, scp):
		return nil, newError(CodeMalformedToken, `claims "scope" and "scp" disagree`, nil)
	case hasScope:
		return fields, nil
	case len(scp) == 0:
		return nil, nil
	}
	return scp, nil
}

// actors reads RFC 8693's act claim: the outermost act is the current actor
// (the agent); nested ones are prior actors, outermost first.
func actors(claims map[string]any) (string, []string, *Error) {
	var subs []string
	for depth := 0; ; depth++ {
		raw, ok := claims["act"]
		if !ok || raw == nil {
			break
		}
		if depth == maxActDepth {
			return "", nil, newError(CodeMalformedToken, fmt.Sprintf(`"act" claims nest deeper than %d`, maxActDepth), nil)
		}
		act, ok := raw.(map[string]any)
		if !ok {
			return "", nil, newError(CodeMalformedToken, `claim "act" must be an object`, nil)
		}
		sub, e := requiredString(act, "sub")
		if e != nil {
			return "", nil, newError(e.Code, `claim "act" must name its actor in "sub"`, nil)
		}
		subs = append(subs, sub)
		claims = act
	}
	switch len(subs) {
	case 0:
		return "", nil, nil
	case 1:
		return subs[0], nil, nil
	}
	return subs[0], subs[1:], nil
}

func optionalString(claims map[string]any, name string) (string, bool, *Error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		return "", false, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", false, newError(CodeMalformedToken, fmt.Sprintf("claim %q must be a string", name), nil)
	}
	return s, s != "", nil
}

func requiredString(claims map[string]any, name string) (string, *Error) {
	s, ok, e := optionalString(claims, name)
	if e != nil {
		return "", e
	}
	if !ok {
		return "", newError(CodeMissingClaim, fmt.Sprintf("token has no %q claim", name), nil)
	}
	return s, nil
}

// stringList reads a list-of-strings claim; absent or null is empty. A bare
// string is refused rather than guessed to be a one-element list or a
// space-separated one.
func stringList(claims map[string]any, name string) ([]string, *Error) {
	out := []string{}
	raw, ok := claims[name]
	if !ok || raw == nil {
		return out, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, newError(CodeMalformedToken, fmt.Sprintf("claim %q must be a list of strings", name), nil)
	}
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, newError(CodeMalformedToken, fmt.Sprintf("claim %q must be a list of strings", name), nil)
		}
		out = append(out, s)
	}
	return out, nil
}
