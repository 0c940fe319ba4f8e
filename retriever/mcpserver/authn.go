package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/strictjson"
	"github.com/ragfence/ragfence/retriever/service"
)

type admittedKey struct{}

// admitted is what authenticate established of a request, for the SDK's
// session binding (UserID) and for the tools (the client's address).
type admitted struct{ info *auth.TokenInfo }

// authenticate is the resource server's duty on every request to the
// endpoint: a bearer token in the Authorization header, verified with its
// audience, not revoked, with the scope of the tool it calls. Only then
// does the SDK see the request; it binds a session to the TokenInfo's
// UserID, so a session id sent with another user's token is refused.
func (s *Server) authenticate(next http.Handler) http.Handler {
	bind := auth.RequireBearerToken(func(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		if a, ok := r.Context().Value(admittedKey{}).(*admitted); ok {
			return a.info, nil
		}
		return nil, auth.ErrInvalidToken
	}, nil)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("access_token") {
			s.refuse(w, http.StatusBadRequest, "invalid_request", "invalid_request", "send the token in the Authorization header, never in the URL", nil)
			return
		}
		header := r.Header.Get("Authorization")
		if scheme, _, ok := strings.Cut(header, " "); !ok || !strings.EqualFold(scheme, "bearer") {
			s.refuse(w, http.StatusUnauthorized, "", string(retriever.CodeUnauthenticated), "the MCP endpoint needs a bearer token in the Authorization header", nil)
			return
		}
		id, err := s.cfg.Auth.Authenticate(r.Context(), header)
		if err != nil {
			s.refuse(w, http.StatusUnauthorized, "invalid_token", string(retriever.CodeUnauthenticated), err.Error(), nil)
			return
		}
		addr := s.remoteAddr(r)
		caller := service.Caller{Authorization: header, Authenticator: s.cfg.Auth, ClientAddr: addr, Channel: Channel}
		if err := s.cfg.Service.Admit(r.Context(), caller, id); err != nil {
			s.refuseAdmission(w, err)
			return
		}
		body, err := readBody(w, r, s.cfg.MaxBodyBytes)
		if err != nil {
			s.refuse(w, http.StatusRequestEntityTooLarge, "", "body_too_large", err.Error(), nil)
			return
		}
		need, err := s.missingScopes(id.Scopes, body)
		if err != nil {
			s.refuse(w, http.StatusBadRequest, "invalid_request", "invalid_request", err.Error(), nil)
			return
		}
		if len(need) > 0 {
			msg := "the token lacks the scope this call needs: " + strings.Join(need, " ")
			s.cfg.Service.RecordRefusal(r.Context(), caller, id, "insufficient_scope", map[string]any{"scopes": need})
			s.refuse(w, http.StatusForbidden, "insufficient_scope", "insufficient_scope", msg, need)
			return
		}
		info := &auth.TokenInfo{Scopes: id.Scopes, Expiration: id.ExpiresAt,
			UserID: id.Subject.Tenant + "\x00" + id.Subject.ID + "\x00" + id.Agent, Extra: map[string]any{addrKey: addr}}
		ctx := context.WithValue(r.Context(), admittedKey{}, &admitted{info: info})
		bind.ServeHTTP(w, r.WithContext(ctx))
	})
}

// refuseAdmission answers a revoked identity 401 (the token no longer
// grants anything) and stale revocation state 503.
func (s *Server) refuseAdmission(w http.ResponseWriter, err error) {
	var re *retriever.Error
	if !errors.As(err, &re) {
		re = &retriever.Error{Code: retriever.CodeInternal, Msg: "internal error"}
	}
	if re.Code == service.CodeRevocationStale {
		writeError(w, http.StatusServiceUnavailable, string(re.Code), re.Msg)
		return
	}
	s.refuse(w, http.StatusUnauthorized, "invalid_token", string(re.Code), re.Msg, nil)
}

// refuse answers with the challenge RFC 6750 and RFC 9728 ask of a
// resource server: WWW-Authenticate names the metadata, the scopes, and
// the error.
func (s *Server) refuse(w http.ResponseWriter, status int, oauthErr, code, msg string, scopes []string) {
	params := []string{fmt.Sprintf("resource_metadata=%q", s.metadataURL)}
	if len(scopes) == 0 && s.cfg.RequireScopes && status == http.StatusUnauthorized {
		scopes = s.scopesSupported()
	}
	if len(scopes) > 0 {
		params = append(params, fmt.Sprintf("scope=%q", strings.Join(scopes, " ")))
	}
	if oauthErr != "" {
		params = append(params, fmt.Sprintf("error=%q", oauthErr), fmt.Sprintf("error_description=%q", quoteSafe(msg)))
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden || oauthErr == "invalid_request" {
		w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
	}
	writeError(w, status, code, msg)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// quoteSafe keeps a description within RFC 6750's character set.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}

// readBody reads the body, bounded, and puts it back for the SDK.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		return nil, fmt.Errorf("the body exceeds %d bytes", max)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// call is what missingScopes reads of a JSON-RPC message.
type call struct {
	Method string `json:"method"`
	Params struct {
		Name      string `json:"name"`
		Arguments struct {
			Collection string `json:"collection"`
		} `json:"arguments"`
	} `json:"params"`
}

// callSchema is what the SDK reads of a message that decides its scope:
// strictjson refuses the spellings two JSON readers could read apart
// (duplicate keys, keys matching only in letter case, data after the
// message), so the scope is checked on the call the SDK runs.
var callSchema = &strictjson.Object{Open: true, Fields: map[string]*strictjson.Object{
	"jsonrpc": nil, "id": nil, "method": nil,
	"params": {Open: true, Fields: map[string]*strictjson.Object{
		"name": nil, "arguments": {Open: true, Fields: map[string]*strictjson.Object{"collection": nil}},
	}},
}}

// missingScopes are the scopes the body's call needs that have is
// missing. A body that is not one JSON-RPC message, read the same by
// every reader, is an error: batches are refused (MCP removed them).
func (s *Server) missingScopes(have []string, body []byte) ([]string, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] != '{' {
		return nil, errors.New("send one JSON-RPC message as a JSON object (batches are not supported)")
	}
	var c call
	if err := json.Unmarshal(trimmed, &c); err != nil {
		return nil, errors.New("the body is not a JSON-RPC message this server can read")
	}
	if err := strictjson.Check(trimmed, callSchema); err != nil {
		return nil, fmt.Errorf("the message is ambiguous: %v", err)
	}
	if !s.cfg.RequireScopes {
		return nil, nil
	}
	if sc := s.scopeOf(c); sc != "" && !slices.Contains(have, sc) {
		return []string{sc}, nil
	}
	return nil, nil
}

// scopeOf is the scope a call needs, or "".
func (s *Server) scopeOf(c call) string {
	switch {
	case c.Method == "resources/read":
		return ScopeAccess
	case c.Method != "tools/call":
		return ""
	}
	switch c.Params.Name {
	case toolRetrieve:
		if s.cfg.CollectionScopes {
			return collectionScope(c.Params.Arguments.Collection)
		}
		return ScopeRetrieve
	case toolSQL:
		return ScopeQuery
	case toolAccess:
		return ScopeAccess
	}
	return ""
}

// collectionScope is retrieve's scope on collection; a name that is not
// a policy's resource name (lower-case letters, digits, _ and $) needs a
// scope no token has, and cannot put other scopes into a challenge.
func collectionScope(collection string) string {
	valid := collection != ""
	for _, r := range collection {
		valid = valid && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '$')
	}
	if !valid {
		return ScopeRetrieve + ":-"
	}
	return ScopeRetrieve + ":" + collection
}

// remoteAddr is the caller's address: the TCP peer, or behind trusted
// proxies the right-most X-Forwarded-For entry no trusted proxy added, as
// the HTTP API reads it.
func (s *Server) remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer, _ := netip.ParseAddr(host)
	if !s.trusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer
		}
		if !s.trusted(a) {
			return a
		}
	}
	return peer
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, n := range s.cfg.TrustedProxies {
		if a.IsValid() && n.Contains(a.AsSlice()) {
			return true
		}
	}
	return false
}

// addrKey holds the client's address in TokenInfo.Extra, which the SDK
// hands each tool call.
const addrKey = "ragfence.client_addr"

// clientAddr is the address authenticate saw for the request of a call.
func clientAddr(info *auth.TokenInfo) netip.Addr {
	if info != nil {
		if a, ok := info.Extra[addrKey].(netip.Addr); ok {
			return a
		}
	}
	return netip.Addr{}
}
