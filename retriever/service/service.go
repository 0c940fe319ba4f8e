package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/replica"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
)

// Defaults of Config's bounds on k.
const (
	DefaultK    = 10  // k when a query gives none
	DefaultMaxK = 100 // the largest k a query may ask for
)

// DefaultStatementTimeout is what ragfence serve bounds each statement by
// (Config.StatementTimeout; zero there keeps the database's own).
const DefaultStatementTimeout = 5 * time.Second

// Identity is who a call acts for, as authentication established it.
type Identity struct {
	Subject *policy.Subject
	// Agent is the AI agent acting for Subject (the token's act claim), or "".
	Agent string
	// PriorActors are the agents before Agent in the delegation chain
	// (nested act claims): not authorized on, but refused when revoked.
	PriorActors []string
	// TokenID is the token's jti, or "": what a token revocation names.
	TokenID string
	// ExpiresAt is when the credential expires, or zero.
	ExpiresAt time.Time
	// Scopes are the credential's OAuth scopes, for front doors that
	// require them (MCP).
	Scopes []string
}

// Authenticator turns a call's credential (an Authorization header's value)
// into an Identity. Every error it returns refuses the call as
// unauthenticated with the error's message, so its messages must be safe to
// show a client.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (Identity, error)
}

// AuditLog receives a record of every decision. Enqueue must fail, rather
// than drop the record, when it cannot keep up; the call then fails too.
type AuditLog interface {
	Enqueue(ctx context.Context, r audit.Record) error
	Depth() int
	Healthy() error
}

// Embedder turns query text into a vector (see retriever/embed). Errors for
// which embed.IsClientError reports true are the caller's fault
// (invalid_query); others are the embedding service's (embedder_unavailable).
type Embedder interface {
	Embed(ctx context.Context, text string) ([]float32, error)
}

// Config is everything a Service needs.
type Config struct {
	Pool     *pgxpool.Pool
	Policies *retriever.PolicyStore
	Auth     Authenticator
	Audit    AuditLog
	// Embedder embeds a query's text; nil means queries must carry an
	// embedding.
	Embedder Embedder
	// Search tunes how searches run (zero: the defaults). Its Estimates
	// default to a cache of retriever.DefaultEstimates subjects' estimates,
	// each kept retriever.DefaultEstimateTTL; its StatementTimeout, to
	// StatementTimeout.
	Search retriever.Config
	// DefaultK applies when a query gives no k (DefaultK when 0); MaxK
	// bounds k (DefaultMaxK when 0).
	DefaultK, MaxK int
	// StatementTimeout bounds each search query.
	StatementTimeout time.Duration
	// RequestTimeout bounds a call's database work, waiting for a pool
	// connection included, so that a saturated pool answers 503 quickly
	// instead of queueing callers; 0 means twice StatementTimeout (at least
	// a second), or none without a StatementTimeout.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Now is the clock for context.time and the audit record's time;
	// time.Now by default.
	Now func() time.Time
	// Registry receives the metrics; a new one when nil (see Registry).
	Registry *prometheus.Registry
	// Revocations, when set, refuses revoked tokens, users and agents, and
	// every call while its state is stale (see revocation.Watcher).
	Revocations Revocations
	// Approvals, when set, lifts an agent's approval rules while its
	// user's approval is in force; without it they withhold their rows.
	Approvals Approvals
	// MaxApprovalTTL bounds how long any approval lasts; 0 means
	// DefaultMaxApprovalTTL. A policy whose approval rule's ttl exceeds it
	// is refused by CheckPolicy.
	MaxApprovalTTL time.Duration
	// PendingFor is how long an approval request waits for its user; 0
	// means approval.DefaultPendingFor.
	PendingFor time.Duration
	// Guardrails, when set, holds every read to the policy's guardrails
	// (budgets, anomalies); give its OnEvent Service.GuardrailEvent.
	Guardrails *guardrail.Engine
	// Alerts receives guardrail events (a webhook), when set.
	Alerts Alerter
	// Reads, when set, runs searches and SQL queries on the replicas in
	// rotation (the primary when none is); everything written (audit,
	// approvals, guardrail counts) stays on Pool.
	Reads *replica.Set
	// QueryPool runs Query's statements: a pool configured with
	// ConfigureQueryPool, whose text output the rows' JSON starts from.
	// Without it Query fails as internal.
	QueryPool *pgxpool.Pool
}

// DefaultMaxApprovalTTL is Config.MaxApprovalTTL's default.
const DefaultMaxApprovalTTL = 24 * time.Hour

// Service is the retriever's request pipeline. Safe for concurrent use.
type Service struct {
	cfg      Config
	searcher *retriever.Searcher
	metrics  *metrics
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Pool == nil || cfg.Policies == nil || cfg.Auth == nil || cfg.Audit == nil {
		return nil, errors.New("service: Config needs Pool, Policies, Auth and Audit")
	}
	cfg = withDefaults(cfg)
	s := &Service{cfg: cfg, metrics: newMetrics(cfg.Registry, cfg.Pool, cfg.Audit)}
	search := cfg.Search
	next := search.OnPlan
	search.OnPlan = func(p retriever.Plan) {
		s.metrics.plans.WithLabelValues(string(p)).Inc()
		if next != nil {
			next(p)
		}
	}
	var err error
	if s.searcher, err = retriever.NewSearcher(search); err != nil {
		return nil, err
	}
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.DefaultK <= 0 {
		cfg.DefaultK = DefaultK
	}
	if cfg.MaxK <= 0 {
		cfg.MaxK = DefaultMaxK
	}
	cfg.DefaultK = min(cfg.DefaultK, cfg.MaxK)
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
		cfg.Search.Estimates = retriever.NewEstimates(retriever.DefaultEstimates, retriever.DefaultEstimateTTL)
	}
	if cfg.RequestTimeout <= 0 && cfg.StatementTimeout > 0 {
		cfg.RequestTimeout = max(2*cfg.StatementTimeout, time.Second)
	}
	if cfg.MaxApprovalTTL <= 0 {
		cfg.MaxApprovalTTL = DefaultMaxApprovalTTL
	}
	if cfg.PendingFor <= 0 {
		cfg.PendingFor = approval.DefaultPendingFor
	}
	if cfg.Search.StatementTimeout == 0 {
		cfg.Search.StatementTimeout = cfg.StatementTimeout
	}
	return cfg
}

// Registry is the registry holding the service's metrics, for a transport
// to expose.
func (s *Service) Registry() *prometheus.Registry { return s.cfg.Registry }

// Ready reports whether a call could be served now, and each check's state
// by name (database, policy, audit). The states never hold a cause (an
// address, a user name): they may be shown to anyone; causes go to the log.
func (s *Service) Ready(ctx context.Context) (bool, map[string]string) {
	checks := map[string]string{"database": "ok", "policy": "ok", "audit": "ok"}
	ready := true
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.cfg.Pool.Ping(ctx); err != nil {
		checks["database"], ready = "unreachable", false
	}
	if s.cfg.Policies.Load() == nil {
		checks["policy"], ready = "not loaded", false
	}
	if err := s.cfg.Audit.Healthy(); err != nil {
		// The cause names the database's user, host and port.
		checks["audit"], ready = "failing", false
		if errors.Is(err, audit.ErrClosed) {
			checks["audit"] = "closed"
		}
		s.cfg.Logger.Warn("not ready: audit log unhealthy", "error", err)
	}
	return ready, checks
}

// searchPool is where a search runs: a replica in rotation, or Pool.
func (s *Service) searchPool() *pgxpool.Pool {
	if s.cfg.Reads != nil {
		return s.cfg.Reads.Search()
	}
	return s.cfg.Pool
}

// bounded is ctx limited by RequestTimeout, for a call's database work.
func (s *Service) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.RequestTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}
