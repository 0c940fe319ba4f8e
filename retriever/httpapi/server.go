package httpapi

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/service"
)

// OpenAPI is the API's OpenAPI 3 description, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Channel is how the audit log and the log lines name this front door.
const Channel = "http"

// DefaultMaxBodyBytes is Config.MaxBodyBytes' default.
const DefaultMaxBodyBytes = 1 << 20

// Config is everything a Server needs.
type Config struct {
	// Service answers the retrievals. Required.
	Service *service.Service
	// MaxBodyBytes bounds a request body (413 above it);
	// DefaultMaxBodyBytes when 0.
	MaxBodyBytes int64
	// TrustedProxies are the networks whose X-Forwarded-For is believed for
	// the client address (context.ip). Empty: the TCP peer's address.
	TrustedProxies []*net.IPNet
	Logger         *slog.Logger
	// Registry is what /metrics serves; the service's registry when nil.
	Registry prometheus.Gatherer
}

// Server is the retriever's HTTP service.
type Server struct {
	cfg  Config
	svc  *service.Service
	echo *echo.Echo
}

// New builds the HTTP service; it does not listen (see Handler).
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil {
		return nil, errors.New("httpapi: Config needs Service")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = cfg.Service.Registry()
	}
	s := &Server{cfg: cfg, svc: cfg.Service}
	s.echo = s.routes()
	return s, nil
}

// Handler is the service's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Shutdown stops the HTTP side (see http.Server.Shutdown for listeners).
func (s *Server) Shutdown(ctx context.Context) error { return s.echo.Shutdown(ctx) }

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = echo.ExtractIPDirect()
	if len(s.cfg.TrustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range s.cfg.TrustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	e.POST("/v1/retrieve", s.retrieve)
	e.POST("/v1/approvals", s.requestApproval)
	e.GET("/v1/approvals", s.listApprovals)
	e.POST("/v1/approvals/:id/approve", s.decideApproval(true))
	e.POST("/v1/approvals/:id/deny", s.decideApproval(false))
	e.GET("/v1/access", s.access)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})))
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/json", OpenAPI)
	})
	return e
}

// errorBody is every error response: {"error": {"code", "message"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    retriever.Code `json:"code"`
	Message string         `json:"message"`
}

func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var re *retriever.Error
	if !errors.As(err, &re) {
		re = fromEcho(err)
	}
	if re.Code == retriever.CodeUnauthenticated || re.Code == service.CodeTokenRevoked {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
	}
	if secs := re.RetryAfterSeconds(); secs > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	}
	if re.Code == retriever.CodeInternal {
		s.cfg.Logger.Error("request failed", "path", c.Path(), "error", err)
	}
	_ = c.JSON(Status(re.Code), errorBody{Error: errorDetail{Code: re.Code, Message: re.Msg}})
}

// fromEcho maps echo's own errors (routing) to the API's envelope.
func fromEcho(err error) *retriever.Error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return &retriever.Error{Code: CodeNotFound, Msg: "no such endpoint; see /openapi.json"}
		case http.StatusMethodNotAllowed:
			return &retriever.Error{Code: CodeMethodNotAllowed, Msg: "method not allowed on this endpoint; see /openapi.json"}
		}
	}
	return &retriever.Error{Code: retriever.CodeInternal, Msg: "internal error; the server log has the details", Err: err}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports whether a request could be served now.
func (s *Server) readyz(c echo.Context) error {
	ready, checks := s.svc.Ready(c.Request().Context())
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"ready": ready, "checks": checks})
}
