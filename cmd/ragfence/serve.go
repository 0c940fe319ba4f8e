package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/approval"
	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/replica"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/auth"
	"github.com/ragfence/ragfence/retriever/embed"
	"github.com/ragfence/ragfence/retriever/httpapi"
	"github.com/ragfence/ragfence/retriever/mcpserver"
	"github.com/ragfence/ragfence/retriever/service"
	"github.com/ragfence/ragfence/revocation"
)

func init() {
	register("serve", "run the retriever: POST /v1/retrieve with JWT authentication, audit log and metrics", runServe)
}

// serveSettings are serve's flags; each is also RAGFENCE_<NAME> or a key
// of the --config file.
type serveSettings struct {
	db, addr, config, policy                string
	jwtSecretFile, jwksFile, jwksURL        string
	issuer, audience                        string
	tenantClaim, rolesClaim, groupsClaim    string
	maxLifetime, skew, jwksRefresh          time.Duration
	defaultK, maxK, poolMax                 int
	maxBody                                 int64
	statementTimeout, shutdownTimeout, poll time.Duration
	trustedProxies, logLevel                string
	auditQueue, auditBatch                  int
	auditFlush                              time.Duration
	auditBlock                              bool
	auditMode                               audit.Mode
	embedURL, embedModel, embedKeyFile      string
	embedDims                               int
	listenDB                                string
	mcpResource, authServers, mcpClients    string
	mcpScopes, mcpCollectionScopes          bool
	alertWebhook                            string
	guardrailSync                           time.Duration
	replicas                                multiFlag
	maxReplicaLag                           time.Duration
	revocationStaleness, maxApprovalTTL     time.Duration
	approvalPending                         time.Duration
}

func serveFlags(out io.Writer) (*flagSet, *serveSettings) {
	fs := newFlags("serve", "serve --db URL --policy PATH --jwt-secret-file FILE [--addr HOST:PORT] [flags]\n\n"+
		"Every flag can also be set in the environment as RAGFENCE_<FLAG> (e.g. RAGFENCE_JWKS_URL,\n"+
		"RAGFENCE_JWT_SECRET_FILE) or in a YAML --config file whose keys are the flag names.\n"+
		"Precedence: flags, then environment, then the file. DATABASE_URL also sets --db.\n"+
		"SIGHUP (or a change of the policy file) reloads the policy; SIGTERM/SIGINT shut down gracefully.", out)
	s := &serveSettings{}
	fs.StringVar(&s.db, "db", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	fs.StringVar(&s.addr, "addr", ":8080", "listen address")
	fs.StringVar(&s.config, "config", os.Getenv(envName("config")), "YAML file with settings (keys are flag names)")
	fs.StringVar(&s.policy, "policy", "", "policy file or folder (comma-separated for several)")
	fs.StringVar(&s.jwtSecretFile, "jwt-secret-file", "", "file holding the HS256 secret (development); or set RAGFENCE_JWT_SECRET")
	fs.StringVar(&s.jwksFile, "jwks-file", "", "JWKS file with the RS256/ES256/EdDSA verification keys")
	fs.StringVar(&s.jwksURL, "jwks-url", "", "JWKS URL with the verification keys, refreshed periodically")
	fs.DurationVar(&s.jwksRefresh, "jwks-refresh", auth.DefaultJWKSRefresh, "how often to refresh --jwks-url (unknown key ids also trigger a refresh)")
	fs.StringVar(&s.issuer, "issuer", "", "required iss claim (empty: not checked)")
	fs.StringVar(&s.audience, "audience", "", "required aud claim (empty: not checked)")
	fs.DurationVar(&s.maxLifetime, "max-token-lifetime", auth.DefaultMaxLifetime, "refuse tokens valid for longer than this (exp - iat)")
	fs.DurationVar(&s.skew, "clock-skew", auth.DefaultSkew, "tolerance for exp and nbf")
	fs.StringVar(&s.tenantClaim, "tenant-claim", auth.DefaultTenantClaim, "claim holding the subject's tenant")
	fs.StringVar(&s.rolesClaim, "roles-claim", auth.DefaultRolesClaim, "claim holding the subject's roles")
	fs.StringVar(&s.groupsClaim, "groups-claim", auth.DefaultGroupsClaim, "claim holding the subject's groups")
	fs.IntVar(&s.defaultK, "default-k", service.DefaultK, "k when a request gives none")
	fs.IntVar(&s.maxK, "max-k", service.DefaultMaxK, "largest k a request may ask for")
	fs.Int64Var(&s.maxBody, "max-body-bytes", httpapi.DefaultMaxBodyBytes, "largest request body")
	fs.DurationVar(&s.statementTimeout, "statement-timeout", service.DefaultStatementTimeout, "per-request query timeout")
	fs.IntVar(&s.poolMax, "pool-max-conns", 0, "database pool size (0: pgxpool's default)")
	fs.StringVar(&s.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed for context.ip")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight requests and the audit flush may take on shutdown")
	fs.DurationVar(&s.poll, "policy-poll", 2*time.Second, "how often to check the policy files for changes (0: only on SIGHUP)")
	fs.IntVar(&s.auditQueue, "audit-queue", audit.DefaultQueueSize, "audit records that may wait to be written; when full, requests get 503")
	fs.IntVar(&s.auditBatch, "audit-batch", audit.DefaultBatchSize, "audit records per write")
	fs.DurationVar(&s.auditFlush, "audit-flush", audit.DefaultFlushInterval, "longest wait before queued audit records are written")
	fs.BoolVar(&s.auditBlock, "audit-block", false, "when the audit queue is full, make requests wait instead of failing with 503")
	fs.TextVar(&s.auditMode, "audit-mode", audit.ModeBatched, auditModeHelp)
	fs.StringVar(&s.embedURL, "embedder-url", "", "OpenAI-compatible embeddings endpoint, for requests that send query text (empty: requests must send embedding)")
	fs.StringVar(&s.embedModel, "embedder-model", "", "embedding model name sent to --embedder-url")
	fs.StringVar(&s.embedKeyFile, "embedder-key-file", "", "file holding the embedder's API key (or set RAGFENCE_EMBEDDER_KEY)")
	fs.IntVar(&s.embedDims, "embedder-dimensions", 0, "dimensions to request from the embedder (0: its default)")
	fs.StringVar(&s.listenDB, "listen-db", "", "PostgreSQL URL for the revocation and approval notifications (LISTEN needs a session: behind PgBouncer in transaction mode, point this at PostgreSQL itself; default --db)")
	fs.DurationVar(&s.revocationStaleness, "revocation-staleness", revocation.DefaultMaxStaleness,
		"longest the revocation and approval state may go unconfirmed (notification connection down) before every request gets 503 revocation_state_stale")
	fs.DurationVar(&s.maxApprovalTTL, "max-approval-ttl", service.DefaultMaxApprovalTTL, "longest an approval rule's ttl may be; a policy with a longer one is refused")
	fs.DurationVar(&s.approvalPending, "approval-pending", approval.DefaultPendingFor, "how long an agent's approval request waits for its user")
	fs.StringVar(&s.mcpResource, "mcp-resource", "", "serve MCP at /mcp with this canonical resource URI, e.g. https://rag.example.com/mcp: tokens must name it in aud")
	fs.StringVar(&s.authServers, "authorization-server", "", "with --mcp-resource: the OAuth authorization server(s) that issue its tokens, comma-separated (published in the resource metadata)")
	fs.BoolVar(&s.mcpScopes, "mcp-require-scopes", true, "MCP tools require their scopes (ragfence:retrieve, ragfence:query, ragfence:access)")
	fs.BoolVar(&s.mcpCollectionScopes, "mcp-collection-scopes", false, "the retrieve tool requires ragfence:retrieve:<collection> instead of ragfence:retrieve")
	fs.StringVar(&s.mcpClients, "mcp-client-claims", "client_id,azp,cid", "claims naming the OAuth client, the agent of an MCP token without act (comma-separated, first present wins)")
	fs.Var(&s.replicas, "db-replica", "PostgreSQL URL of a streaming replica of --db for searches and queries (repeatable, or comma-separated); writes stay on --db")
	fs.DurationVar(&s.maxReplicaLag, "max-replica-lag", replica.DefaultMaxLag, "a replica further behind than this, or down, takes no reads until it catches up")
	fs.StringVar(&s.alertWebhook, "alert-webhook", "", "URL that receives each guardrail event as a JSON POST (retried, from a bounded queue that never blocks requests)")
	fs.DurationVar(&s.guardrailSync, "guardrail-sync", guardrail.DefaultSyncEvery, "how often guardrail budgets are synced with the other servers through the database")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	return fs, s
}

// auditModeHelp says why batched is the default: upgrading keeps the
// latency and the behaviour servers had, and sync's price is paid by every
// request; deployments that must prove every served answer opt in.
const auditModeHelp = "`batched|sync`: batched (the default, as before) answers once the audit record is queued and waits for no commit, " +
	"but a crash (SIGKILL, OOM) loses about the last --audit-flush of records, answers already served included; " +
	"sync answers only once the record is committed (each request waits for a group commit, 1–2 ms on a local database; 503 if it fails), " +
	"so no served answer is ever unaudited. See docs/operations.md"

func runServe(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs, s := serveFlags(out)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyLayers(fs, s.config); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if s.policy == "" {
		return usagef("--policy is required (the policy file or folder)")
	}
	logger, err := newLogger(errOut, s.logLevel)
	if err != nil {
		return err
	}
	return serve(ctx, s, logger, out)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func serve(ctx context.Context, s *serveSettings, logger *slog.Logger, out io.Writer) error {
	policies, err := retriever.NewCheckedPolicyStore(func(set *policy.Set) error {
		return service.CheckApprovalTTLs(set, s.maxApprovalTTL)
	}, strings.Split(s.policy, ",")...)
	if err != nil {
		return err
	}
	verifier, err := newVerifier(ctx, s, policies)
	if err != nil {
		return err
	}
	defer verifier.Close()
	pool, err := openPool(ctx, s)
	if err != nil {
		return err
	}
	defer pool.Close()
	logDoctor(ctx, pool, policies.Load().Set(), logger)
	writer, err := audit.New(pool, audit.Config{QueueSize: s.auditQueue, BatchSize: s.auditBatch, FlushInterval: s.auditFlush, Block: s.auditBlock, Mode: s.auditMode, Logger: logger})
	if err != nil {
		return err
	}
	logger.Info("audit log", "mode", s.auditMode.String())
	proxies, err := parseCIDRs(s.trustedProxies)
	if err != nil {
		return err
	}
	embedder, err := newEmbedder(s)
	if err != nil {
		return err
	}
	revocations, approvals, err := watchAccess(ctx, s, logger)
	if err != nil {
		return err
	}
	queryPool, err := openQueryPool(ctx, s)
	if err != nil {
		return err
	}
	if queryPool != nil {
		defer queryPool.Close()
	}
	reads, closeReplicas, err := startReplicas(ctx, s, pool, queryPool, logger)
	if err != nil {
		return err
	}
	defer closeReplicas()
	defer revocations.Close()
	defer approvals.Close()
	var svcRef atomic.Pointer[service.Service] // events fire only once requests are served
	guards, alerts, err := startGuardrails(ctx, s, pool, policies, func(e guardrail.Event) {
		if svc := svcRef.Load(); svc != nil {
			svc.GuardrailEvent(e)
		}
	}, logger)
	if err != nil {
		return err
	}
	defer guards.Close()
	if alerts != nil {
		defer alerts.Close(context.WithoutCancel(ctx))
	}
	svc, err := service.New(service.Config{
		Embedder: embedder,
		Pool:     pool, Policies: policies, Auth: service.TokenAuth{Verifier: verifier}, Audit: writer,
		DefaultK: s.defaultK, MaxK: s.maxK, StatementTimeout: s.statementTimeout, Logger: logger,
		Revocations: revocations, Approvals: approvals, MaxApprovalTTL: s.maxApprovalTTL, PendingFor: s.approvalPending,
		QueryPool: queryPool, Guardrails: guards, Alerts: alertsOf(alerts), Reads: reads,
	})
	if err != nil {
		return err
	}
	svcRef.Store(svc)
	srv, err := httpapi.New(httpapi.Config{Service: svc, MaxBodyBytes: s.maxBody, TrustedProxies: proxies, Logger: logger})
	if err != nil {
		return err
	}
	go svc.SweepExpiredApprovals(ctx, time.Second)
	handler, err := withMCP(ctx, s, policies, svc, srv.Handler(), proxies, logger)
	if err != nil {
		return err
	}
	return listenAndServe(ctx, s, handler, writer, policies, func() { guards.SetPolicy(policies.Load().Set()) }, logger, out)
}

// withMCP mounts the MCP endpoint and its metadata beside api when
// --mcp-resource is set. Its tokens are verified as the API's, except that
// their audience must be the resource and the client is the agent.
func withMCP(ctx context.Context, s *serveSettings, policies *retriever.PolicyStore, svc *service.Service,
	api http.Handler, proxies []*net.IPNet, logger *slog.Logger) (http.Handler, error) {
	if s.mcpResource == "" {
		if s.authServers != "" {
			return nil, usagef("--authorization-server needs --mcp-resource")
		}
		return api, nil
	}
	mcpSettings := *s
	mcpSettings.audience = s.mcpResource
	verifier, err := newVerifier(ctx, &mcpSettings, policies, splitList(s.mcpClients)...)
	if err != nil {
		return nil, err
	}
	m, err := mcpserver.New(mcpserver.Config{
		Service: svc, Auth: service.TokenAuth{Verifier: verifier}, Resource: s.mcpResource,
		AuthorizationServers: splitList(s.authServers), RequireScopes: s.mcpScopes, CollectionScopes: s.mcpCollectionScopes,
		Collections: policies.Load().Set().Names, MaxBodyBytes: s.maxBody, Logger: logger, Version: version(),
		TrustedProxies: proxies,
	})
	if err != nil {
		return nil, usagef("%v", err)
	}
	mcpHandler := m.Handler()
	mux := http.NewServeMux()
	mux.Handle(mcpserver.Path, mcpHandler)
	mux.Handle("/.well-known/oauth-protected-resource", mcpHandler)
	mux.Handle("/.well-known/oauth-protected-resource/", mcpHandler)
	mux.Handle("/", api)
	logger.Info("serving MCP", "path", mcpserver.Path, "resource", s.mcpResource)
	return mux, nil
}

// startGuardrails starts the guardrail engine of the policy (budgets shared
// through the database, suspensions made as revocations) and, with
// --alert-webhook, the webhook its events go to.
func startGuardrails(ctx context.Context, s *serveSettings, pool *pgxpool.Pool, policies *retriever.PolicyStore,
	onEvent func(guardrail.Event), logger *slog.Logger) (*guardrail.Engine, *guardrail.Webhook, error) {
	var hook *guardrail.Webhook
	if s.alertWebhook != "" {
		var err error
		if hook, err = guardrail.NewWebhook(guardrail.WebhookConfig{URL: s.alertWebhook, Logger: logger}); err != nil {
			return nil, nil, usagef("--alert-webhook: %v", err)
		}
	}
	eng, err := guardrail.New(ctx, guardrail.Config{Pool: pool, Set: policies.Load().Set(), SyncEvery: s.guardrailSync,
		OnEvent: onEvent, Logger: logger})
	if err != nil {
		if hook != nil {
			hook.Close(context.WithoutCancel(ctx))
		}
		return nil, nil, schemaHint(err)
	}
	return eng, hook, nil
}

// alertsOf is hook as the service's Alerter, or none (a nil pointer in an
// interface would not be nil).
func alertsOf(hook *guardrail.Webhook) service.Alerter {
	if hook == nil {
		return nil
	}
	return hook
}

// watchAccess starts the revocation and approval watchers, each on a
// connection of its own; the server refuses requests (503) whenever either
// cannot confirm its state within --revocation-staleness.
func watchAccess(ctx context.Context, s *serveSettings, logger *slog.Logger) (*revocation.Watcher, *approval.Watcher, error) {
	cc, err := parseDB(cmp.Or(s.listenDB, s.db))
	if err != nil {
		return nil, nil, err
	}
	rw, err := revocation.Watch(ctx, revocation.WatchConfig{ConnConfig: cc, MaxStaleness: s.revocationStaleness, Logger: logger})
	if err != nil {
		return nil, nil, schemaHint(err)
	}
	aw, err := approval.Watch(ctx, approval.WatchConfig{ConnConfig: cc, MaxStaleness: s.revocationStaleness, Logger: logger})
	if err != nil {
		rw.Close()
		return nil, nil, schemaHint(err)
	}
	return rw, aw, nil
}

// startReplicas opens a search pool (and, with MCP, a query pool) on each
// --db-replica and starts checking their lag; nil without replicas.
func startReplicas(ctx context.Context, s *serveSettings, primary, primaryQuery *pgxpool.Pool,
	logger *slog.Logger) (*replica.Set, func(), error) {
	var urls []string
	for _, v := range s.replicas {
		urls = append(urls, splitList(v)...)
	}
	var pools []*pgxpool.Pool
	closeAll := func() {
		for _, p := range pools {
			p.Close()
		}
	}
	if len(urls) == 0 {
		return nil, closeAll, nil
	}
	var members []replica.Replica
	for i, u := range urls {
		cfg, err := pgpool.ParseConfig(u)
		if err != nil {
			closeAll()
			return nil, nil, usagef("--db-replica %d: expected a URL like postgres://user@host:5432/db", i+1)
		}
		boundSession(cfg.ConnConfig.RuntimeParams, s.statementTimeout)
		r := replica.Replica{Name: cfg.ConnConfig.Host + ":" + strconv.Itoa(int(cfg.ConnConfig.Port))}
		if r.Search, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			closeAll()
			return nil, nil, err
		}
		pools = append(pools, r.Search)
		if primaryQuery != nil {
			qcfg, _ := pgxpool.ParseConfig(u)
			service.ConfigureQueryPool(qcfg)
			qcfg.MaxConns = queryPoolConns
			if r.Query, err = pgxpool.NewWithConfig(ctx, qcfg); err != nil {
				closeAll()
				return nil, nil, err
			}
			pools = append(pools, r.Query)
		}
		members = append(members, r)
	}
	set := replica.Start(ctx, replica.Config{Primary: primary, PrimaryQuery: primaryQuery, Replicas: members,
		MaxLag: s.maxReplicaLag, Logger: logger})
	logger.Info("read replicas", "replicas", set.String())
	return set, func() { set.Close(); closeAll() }, nil
}

// boundSession makes the statement timeout the session's own as well as
// each request's: pgx prepares a batch's statements before the first of
// them (the request's set_config) runs, and a prepare that waits for a
// lock (an ALTER TABLE, a VACUUM FULL) would otherwise wait without bound,
// holding a pool connection. A load test with the table locked for 6 s
// measured answers of up to 6.0 s before this.
func boundSession(params map[string]string, timeout time.Duration) {
	if timeout > 0 {
		params["statement_timeout"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	}
}

// queryPoolConns bounds each pool of the MCP sql_query tool.
const queryPoolConns = 4

// openQueryPool opens the pool of the MCP sql_query tool (results as
// PostgreSQL's text, for the JSON rules), or none without --mcp-resource.
func openQueryPool(ctx context.Context, s *serveSettings) (*pgxpool.Pool, error) {
	if s.mcpResource == "" {
		return nil, nil
	}
	cfg, err := pgxpool.ParseConfig(s.db)
	if err != nil {
		return nil, usagef("invalid --db value: expected a URL like postgres://user@host:5432/db")
	}
	service.ConfigureQueryPool(cfg)
	cfg.MaxConns = queryPoolConns
	boundSession(cfg.ConnConfig.RuntimeParams, s.statementTimeout)
	return pgxpool.NewWithConfig(ctx, cfg)
}

func openPool(ctx context.Context, s *serveSettings) (*pgxpool.Pool, error) {
	if _, err := parseDB(s.db); err != nil {
		return nil, err
	}
	cfg, err := pgpool.ParseConfig(s.db)
	if err != nil {
		return nil, usagef("invalid --db value: expected a URL like postgres://user@host:5432/db")
	}
	if s.poolMax > 0 {
		cfg.MaxConns = int32(s.poolMax)
	}
	boundSession(cfg.ConnConfig.RuntimeParams, s.statementTimeout)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Fail at start, with the CLI's explanation, rather than at the first request.
	conn, err := connect(ctx, s.db)
	if err != nil {
		pool.Close()
		return nil, err
	}
	conn.Close(ctx)
	return pool, nil
}

func parseCIDRs(list string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, usagef("--trusted-proxies: %q is not a CIDR such as 10.0.0.0/8", c)
		}
		out = append(out, n)
	}
	return out, nil
}

// listenAndServe runs until ctx ends, then shuts down in order: stop
// accepting, finish in-flight requests, flush the audit log.
func listenAndServe(ctx context.Context, s *serveSettings, handler http.Handler, writer *audit.Writer,
	policies *retriever.PolicyStore, onReload func(), logger *slog.Logger, out io.Writer) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another --addr", s.addr, err)
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	fmt.Fprintf(out, "serve: listening on %s (policy version %s)\n", ln.Addr(), policies.Load().Version())
	logger.Info("listening", "addr", ln.Addr().String(), "policy_version", policies.Load().Version())
	watchPolicy(ctx, policies, s.poll, logger, onReload)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "deadline", s.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	shutdownErr := hs.Shutdown(sctx)
	auditErr := writer.Close(sctx)
	if auditErr != nil {
		logger.Error("audit log not fully flushed", "error", auditErr)
	}
	if err := errors.Join(shutdownErr, auditErr); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// watchPolicy reloads the policy on SIGHUP and when its files change, until
// ctx ends, logging each outcome (retriever.PolicyStore.Watch).
func watchPolicy(ctx context.Context, policies *retriever.PolicyStore, every time.Duration, logger *slog.Logger, onReload func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	now := make(chan struct{})
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case now <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	policies.Watch(ctx, every, now, func(changed bool, err error) {
		switch {
		case err != nil:
			logger.Error("policy reload failed; keeping the current policy", "error", oneLine(err.Error()))
		case changed:
			logger.Info("policy reloaded", "policy_version", policies.Load().Version())
			onReload()
		}
	})
}

// newEmbedder configures query-text embedding, or returns nil when no
// embedder URL is set.
func newEmbedder(s *serveSettings) (service.Embedder, error) {
	if s.embedURL == "" {
		return nil, nil
	}
	key := os.Getenv(envPrefix + "EMBEDDER_KEY")
	if s.embedKeyFile != "" {
		b, err := os.ReadFile(s.embedKeyFile)
		if err != nil {
			return nil, usagef("--embedder-key-file: %v", err)
		}
		key = strings.TrimSpace(string(b))
	}
	c, err := embed.New(embed.Config{URL: s.embedURL, Model: s.embedModel, APIKey: key, Dimensions: s.embedDims})
	if err != nil {
		return nil, usagef("%v", err)
	}
	return c, nil
}
