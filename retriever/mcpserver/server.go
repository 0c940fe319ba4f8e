package mcpserver

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/ragfence/ragfence/retriever/service"
)

// Scopes the tools require (Config.RequireScopes).
const (
	ScopeRetrieve = "ragfence:retrieve"
	ScopeQuery    = "ragfence:query"
	ScopeAccess   = "ragfence:access"
)

// Path is where the MCP endpoint is served.
const Path = "/mcp"

// Channel names MCP calls in the audit log.
const Channel = "mcp"

// Config is everything a Server needs.
type Config struct {
	Service *service.Service
	// Auth verifies the bearer tokens: its audience must be Resource (see
	// New), and it should read the client as the agent.
	Auth service.Authenticator
	// Resource is the canonical URI of the endpoint, e.g.
	// https://rag.example.com/mcp: what tokens must name in aud.
	Resource string
	// AuthorizationServers issue the tokens (at least one), published in
	// the metadata.
	AuthorizationServers []string
	// RequireScopes makes each tool require its scope.
	RequireScopes bool
	// CollectionScopes makes retrieve on a collection C require
	// ragfence:retrieve:C rather than ragfence:retrieve.
	CollectionScopes bool
	// Collections are the policy's collections, for scopes_supported.
	Collections []string
	// MaxBodyBytes bounds a request body; 0 means 1 MiB.
	MaxBodyBytes int64
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// for the client address (context.ip), as for the HTTP API.
	TrustedProxies []*net.IPNet
	Logger         *slog.Logger
	// Version is reported to clients as the server's version.
	Version string
}

// Server is the MCP endpoint and its metadata.
type Server struct {
	cfg         Config
	metadataURL string
	mcp         *mcp.Server
}

// New builds the server; Handler serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil || cfg.Auth == nil {
		return nil, errors.New("mcpserver: Config needs Service and Auth")
	}
	u, err := url.Parse(cfg.Resource)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.Path != Path {
		return nil, errors.New("mcpserver: the resource must be an absolute URI without fragment whose path is " + Path + ", e.g. https://rag.example.com/mcp")
	}
	if len(cfg.AuthorizationServers) == 0 {
		return nil, errors.New("mcpserver: at least one authorization server is required (--authorization-server)")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, metadataURL: metadataURL(u)}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "ragfence", Title: "ragfence knowledge base", Version: cfg.Version},
		&mcp.ServerOptions{Instructions: instructions})
	s.addTools()
	return s, nil
}

// metadataURL is where RFC 9728 puts the metadata of resource u: the
// well-known prefix inserted before its path.
func metadataURL(u *url.URL) string {
	m := *u
	m.Path = "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.Path, "/")
	m.RawQuery = ""
	return m.String()
}

// Handler serves the endpoint at Path and the metadata at
// /.well-known/oauth-protected-resource/mcp and
// /.well-known/oauth-protected-resource.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	meta := auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               s.cfg.Resource,
		AuthorizationServers:   s.cfg.AuthorizationServers,
		ScopesSupported:        s.scopesSupported(),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "ragfence knowledge base",
	})
	mux.Handle("/.well-known/oauth-protected-resource"+Path, meta)
	mux.Handle("/.well-known/oauth-protected-resource", meta)
	streamable := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp },
		&mcp.StreamableHTTPOptions{Logger: s.cfg.Logger})
	mux.Handle(Path, s.authenticate(streamable))
	return mux
}

func (s *Server) scopesSupported() []string {
	out := []string{ScopeRetrieve, ScopeQuery, ScopeAccess}
	if s.cfg.CollectionScopes {
		out = out[1:]
		for _, c := range s.cfg.Collections {
			out = append(out, ScopeRetrieve+":"+c)
		}
	}
	return out
}

const instructions = `This server answers from a company knowledge base, with only what the user you act for (and you, as their agent) may see. ` +
	`Use retrieve for passages relevant to a question, sql_query for exact lookups and counts with one read-only SELECT, ` +
	`and access to learn which collections you may read and what needs the user's approval. ` +
	`Rows you may not see are never returned, counted or hinted at; an empty answer means nothing visible matched.`
