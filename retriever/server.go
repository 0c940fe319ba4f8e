package retriever

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/audit"
)

// OpenAPI is the API's OpenAPI 3 description, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Identity is who a request acts for, as authentication established it.
type Identity struct {
	Subject *policy.Subject
	// Agent is the AI agent acting for Subject (the token's act claim), or "".
	Agent string
}

// Authenticator turns an Authorization header into an Identity. Every error
// it returns is answered with 401 and its message, so its messages must be
// safe to show a client.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (Identity, error)
}

// AuditLog receives a record of every decision. Enqueue must fail, rather
// than drop the record, when it cannot keep up; the request then fails too.
type AuditLog interface {
	Enqueue(ctx context.Context, r audit.Record) error
	Depth() int
	Healthy() error
}

// Embedder turns query text into a vector (see retriever/embed). Errors for
// which ClientError reports true are the caller's fault (400); others are
// the embedding service's (502).
type Embedder interface {
	Embed(ctx context.Context, text string) ([]float32, error)
}

// Config is everything a Server needs.
type Config struct {
	Pool     *pgxpool.Pool
	Policies *PolicyStore
	Auth     Authenticator
	Audit    AuditLog
	// DefaultK applies when a request gives no k; MaxK bounds k.
	DefaultK, MaxK int
	// MaxBodyBytes bounds a request body (413 above it).
	MaxBodyBytes int64
	// StatementTimeout bounds each search query.
	StatementTimeout time.Duration
	// Search tunes how searches run (zero: the defaults). Its Estimates
	// default to a cache of DefaultEstimates subjects' estimates, each kept
	// DefaultEstimateTTL; its StatementTimeout, to StatementTimeout.
	Search Options
	// TrustedProxies are the networks whose X-Forwarded-For is believed for
	// the client address (context.ip). Empty: the TCP peer's address.
	TrustedProxies []*net.IPNet
	Logger         *slog.Logger
	// Now is the clock for context.time; time.Now by default.
	Now func() time.Time
	// Embedder embeds a request's query text; nil means requests must send
	// an embedding.
	Embedder Embedder
	// Registry receives the metrics; a new one when nil.
	Registry *prometheus.Registry
}

// Server is the retriever's HTTP service.
type Server struct {
	cfg     Config
	echo    *echo.Echo
	metrics *metrics
	search  Options  // cfg.Search with the defaults and the plan metric
	dims    sync.Map // table.column -> int (the embedding dimension)
}

// New builds the service; it does not listen (see Handler).
func New(cfg Config) (*Server, error) {
	if cfg.Pool == nil || cfg.Policies == nil || cfg.Auth == nil || cfg.Audit == nil {
		return nil, errors.New("retriever: Config needs Pool, Policies, Auth and Audit")
	}
	if cfg.DefaultK <= 0 {
		cfg.DefaultK = 10
	}
	if cfg.MaxK <= 0 {
		cfg.MaxK = 100
	}
	if cfg.DefaultK > cfg.MaxK {
		cfg.DefaultK = cfg.MaxK
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Search.Estimates == nil {
		cfg.Search.Estimates = NewEstimates(DefaultEstimates, DefaultEstimateTTL)
	}
	if cfg.Search.StatementTimeout == 0 {
		cfg.Search.StatementTimeout = cfg.StatementTimeout
	}
	s := &Server{cfg: cfg}
	s.metrics = newMetrics(cfg.Registry, cfg.Pool, cfg.Audit)
	s.search = cfg.Search
	next := s.search.OnPlan
	s.search.OnPlan = func(p Plan) {
		s.metrics.plans.WithLabelValues(string(p)).Inc()
		if next != nil {
			next(p)
		}
	}
	s.echo = s.routes()
	return s, nil
}

// Handler is the service's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

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
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	re, ok := asRequestError(err)
	if !ok {
		re = fromEcho(err)
	}
	if re.Code == CodeUnauthenticated {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
	}
	if re.Code == CodeInternal {
		s.cfg.Logger.Error("request failed", "path", c.Path(), "error", err)
	}
	_ = c.JSON(re.Status(), errorBody{Error: errorDetail{Code: re.Code, Message: re.Msg}})
}

// fromEcho maps echo's own errors (routing) to the API's envelope.
func fromEcho(err error) *RequestError {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return &RequestError{Code: CodeNotFound, Msg: "no such endpoint; see /openapi.json"}
		case http.StatusMethodNotAllowed:
			return &RequestError{Code: CodeMethodNotAllowed, Msg: "method not allowed on this endpoint; see /openapi.json"}
		}
	}
	return &RequestError{Code: CodeInternal, Msg: "internal error; the server log has the details", Err: err}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports whether a request could be served now.
func (s *Server) readyz(c echo.Context) error {
	checks := map[string]string{"database": "ok", "policy": "ok", "audit": "ok"}
	ready := true
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Pool.Ping(ctx); err != nil {
		checks["database"], ready = "unreachable", false
	}
	if s.cfg.Policies.Load() == nil {
		checks["policy"], ready = "not loaded", false
	}
	if err := s.cfg.Audit.Healthy(); err != nil {
		// The cause goes to the log only: it names the database's user,
		// host and port, and /readyz answers anyone.
		checks["audit"], ready = "failing", false
		if errors.Is(err, audit.ErrClosed) {
			checks["audit"] = "closed"
		}
		s.cfg.Logger.Warn("not ready: audit log unhealthy", "error", err)
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"ready": ready, "checks": checks})
}

// Shutdown stops the HTTP side (see http.Server.Shutdown for listeners).
func (s *Server) Shutdown(ctx context.Context) error { return s.echo.Shutdown(ctx) }
