package retriever

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/retriever/embed"
	"github.com/ragfence/ragfence/retriever/internal/strictjson"
)

// Response is the body of a successful POST /v1/retrieve.
type Response struct {
	Results  []Result `json:"results"`
	Decision Decision `json:"decision"`
}

// Decision says how the policy decided a request.
type Decision struct {
	ID            string `json:"id"`
	PolicyVersion string `json:"policy_version"`
	// Rules are the rules in play: the active allow and deny rules.
	Rules  []string `json:"rules"`
	Masked []string `json:"masked"`
	Agent  string   `json:"agent,omitempty"`
}

// Outcomes recorded in the audit log and metrics.
const (
	outcomeAllowed         = "allowed"
	outcomeDenied          = "denied"
	outcomeUnauthenticated = "unauthenticated"
	outcomeInvalid         = "invalid"
	outcomeError           = "error"
)

// exchange is one request in flight: what the audit record needs.
type exchange struct {
	start    time.Time // the decision's time, by Config.Now
	began    time.Time // the wall clock's, for the latency: Now may be fixed
	id       string
	identity Identity
	resource string
	version  string
	rules    []string
	rowIDs   []string
	outcome  string
	detail   map[string]any
}

func (s *Server) retrieve(c echo.Context) error {
	x := &exchange{start: s.cfg.Now(), began: time.Now(), id: audit.NewDecisionID(), outcome: outcomeError}
	c.Response().Header().Set("X-Decision-Id", x.id)
	resp, err := s.serve(c, x)
	var body []byte
	if err == nil {
		// Encoded before the record is written, so that an answer that
		// cannot be sent is not recorded as allowed.
		body, err = encodeResponse(resp)
	}
	if err != nil {
		x.outcome = outcomeOf(err, x.outcome)
		x.detail = map[string]any{"error": string(codeOf(err))}
	}
	if aerr := s.recordDecision(c, x); aerr != nil {
		// No record, no answer: a decision that cannot be audited is refused.
		err = aerr
		resp = nil
	}
	s.metrics.latency.WithLabelValues(x.outcome).Observe(time.Since(x.began).Seconds())
	s.metrics.decisions.WithLabelValues(x.outcome).Inc()
	s.logRequest(c, x, err)
	if err != nil {
		return err
	}
	s.metrics.rows.Observe(float64(len(resp.Results)))
	return c.JSONBlob(http.StatusOK, body)
}

// encodeResponse is resp as c.JSON would send it.
func encodeResponse(resp *Response) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(resp); err != nil {
		return nil, &RequestError{Code: CodeInternal, Msg: "the answer could not be encoded; the server log has the details", Err: err}
	}
	return buf.Bytes(), nil
}

// serve authenticates, validates and searches.
func (s *Server) serve(c echo.Context, x *exchange) (*Response, error) {
	ctx := c.Request().Context()
	id, err := s.cfg.Auth.Authenticate(ctx, c.Request().Header.Get(echo.HeaderAuthorization))
	if err != nil {
		x.outcome = outcomeUnauthenticated
		return nil, &RequestError{Code: CodeUnauthenticated, Msg: err.Error(), Err: err}
	}
	x.identity = id
	x.outcome = outcomeInvalid
	q, err := s.decode(c)
	if err != nil {
		return nil, err
	}
	if q.Text != "" {
		if q.Embedding, err = s.embed(ctx, q.Text); err != nil {
			return nil, err
		}
	}
	p := s.cfg.Policies.Load()
	x.resource, x.version = q.Resource, p.Version()
	res, ok := p.Set().Resources[q.Resource]
	if !ok {
		return nil, &RequestError{Code: CodeUnknownCollection, Msg: fmt.Sprintf("unknown collection %q; this server has: %v", q.Resource, p.Set().Names)}
	}
	if err := s.checkEmbedding(ctx, res, q.Embedding); err != nil {
		return nil, err
	}
	// After the embedder too: a model can answer a zero vector.
	if err := checkNorm(q.Embedding); err != nil {
		return nil, err
	}
	subject, err := p.Set().CheckSubject(id.Subject)
	if err != nil {
		return nil, &RequestError{Code: CodeInvalidSubject, Msg: "the token's claims do not fit the policy: " + err.Error(), Err: err}
	}
	req := filter.Request{Subject: subject, Agent: id.Agent, Context: policy.Context{Time: x.start, IP: clientIP(c)}}
	x.outcome = outcomeError
	results, frag, err := Search(ctx, s.cfg.Pool, p, req, q, s.search)
	var pgErr *pgconn.PgError
	if len(q.Filter) > 0 && errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22") {
		// A data exception (such as "abc" for an integer column) comes from
		// a filter value, the only values the request puts into the SQL
		// besides the checked embedding: the client's mistake, not ours.
		return nil, &RequestError{Code: CodeInvalidFilter, Msg: "a filter value does not fit its field's type", Err: err}
	}
	if err != nil {
		return nil, s.classify(ctx, err)
	}
	return s.respond(x, p, frag, results), nil
}

func (s *Server) respond(x *exchange, p *filter.Policy, frag *filter.Fragment, results []Result) *Response {
	x.outcome = outcomeAllowed
	if frag.Outcome == filter.AlwaysDenied {
		x.outcome = outcomeDenied
	}
	d := Decision{ID: x.id, PolicyVersion: p.Version(), Rules: []string{}, Masked: frag.Masked(), Agent: frag.Agent}
	for _, r := range frag.Rules() {
		if r.Active {
			name := r.Effect + ":" + r.Name
			if r.Agent != "" {
				name = "agent " + r.Agent + " " + name
			}
			d.Rules = append(d.Rules, name)
		}
	}
	x.rules = d.Rules
	for _, r := range results {
		x.rowIDs = append(x.rowIDs, r.ID)
	}
	return &Response{Results: results, Decision: d}
}

// wireSchema is what decode reads of a body, for strictjson.Check.
var wireSchema = strictjson.ForType(reflect.TypeFor[wireQuery]())

// decode reads the body strictly: JSON only, no unknown fields, no
// duplicate keys or case-insensitive matches, bounded.
func (s *Server) decode(c echo.Context) (Query, error) {
	var q Query
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType)); err != nil || mt != "application/json" {
		return q, &RequestError{Code: CodeUnsupportedMedia, Msg: "send the body as application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return q, &RequestError{Code: CodeBodyTooLarge, Msg: fmt.Sprintf("the body exceeds %d bytes", s.cfg.MaxBodyBytes)}
	}
	if err != nil {
		return q, &RequestError{Code: CodeInvalidJSON, Msg: "could not read the body", Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var w wireQuery
	if err := dec.Decode(&w); err != nil {
		return q, &RequestError{Code: CodeInvalidJSON, Msg: "invalid JSON body: " + jsonProblem(err), Err: err}
	}
	// What encoding/json accepted, a proxy in front may have read another
	// way: refuse duplicate keys, names matching a field only in another
	// letter case, and anything after the value.
	if err := strictjson.Check(body, wireSchema); err != nil {
		return q, &RequestError{Code: CodeInvalidJSON, Msg: "invalid JSON body: " + err.Error(), Err: err}
	}
	q = Query{Resource: w.Resource, Text: w.Text, K: w.K, Filter: w.Filter, MinScore: w.MinScore, Explain: w.Explain}
	if q.Embedding, err = parseEmbedding(w.Embedding); err != nil {
		return q, &RequestError{Code: CodeInvalidEmbedding, Msg: "embedding must be a list of finite numbers within float32 range", Err: err}
	}
	return q, s.validate(&q)
}

// jsonProblem describes a decoding error without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type (want %s)", typ.Field, typ.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return err.Error() // e.g. json: unknown field "x"
}

func (s *Server) validate(q *Query) error {
	if q.Resource == "" {
		return &RequestError{Code: CodeUnknownCollection, Msg: "collection is required"}
	}
	if q.K == 0 {
		q.K = s.cfg.DefaultK
	}
	if q.K < 1 || q.K > s.cfg.MaxK {
		return &RequestError{Code: CodeInvalidK, Msg: fmt.Sprintf("k must be between 1 and %d", s.cfg.MaxK)}
	}
	if q.MinScore != nil && (*q.MinScore < -1 || *q.MinScore > 1 || math.IsNaN(*q.MinScore)) {
		return &RequestError{Code: CodeInvalidMinScore, Msg: "min_score is a cosine similarity between -1 and 1"}
	}
	switch {
	case len(q.Embedding) > 0 && q.Text != "":
		return &RequestError{Code: CodeInvalidEmbedding, Msg: "send either embedding or query, not both"}
	case len(q.Embedding) == 0 && q.Text == "":
		return &RequestError{Code: CodeInvalidEmbedding, Msg: "embedding (the query vector) or query (text) is required"}
	case q.Text != "" && s.cfg.Embedder == nil:
		return &RequestError{Code: CodeInvalidEmbedding, Msg: "this server has no embedder configured; send embedding instead of query"}
	}
	for i, v := range q.Embedding {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return &RequestError{Code: CodeInvalidEmbedding, Msg: fmt.Sprintf("embedding[%d] is not a finite number", i)}
		}
	}
	return nil
}

// checkEmbedding compares the vector's length with the column's dimension,
// read once per table from the catalog.
func (s *Server) checkEmbedding(ctx context.Context, res *policy.Resource, v []float32) error {
	key := res.Table + "." + res.Embedding
	dim, ok := s.dims.Load(key)
	if !ok {
		var typmod int
		b := &pgx.Batch{}
		b.Queue(requestSettingsSQL, timeoutSetting(s.search.StatementTimeout))
		b.Queue(`SELECT atttypmod FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`, res.Table, res.Embedding).
			QueryRow(func(row pgx.Row) error { return row.Scan(&typmod) })
		err := s.cfg.Pool.SendBatch(ctx, b).Close()
		if errors.Is(err, pgx.ErrNoRows) {
			return &RequestError{Code: CodeInternal, Msg: "the collection's table has no embedding column; run ragfence policy check --db", Err: err}
		}
		if err != nil {
			return s.classify(ctx, err)
		}
		dim = typmod
		s.dims.Store(key, dim)
	}
	if d := dim.(int); d > 0 && len(v) != d {
		return &RequestError{Code: CodeInvalidEmbedding, Msg: fmt.Sprintf("embedding has %d dimensions, the collection has %d", len(v), d)}
	}
	return nil
}

// classify maps a search failure to the answer the client gets.
func (s *Server) classify(ctx context.Context, err error) error {
	var fe *filter.Error
	var re *RequestError
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &re):
		return re
	case errors.As(err, &fe):
		return filterError(fe, err)
	case errors.As(err, &pgErr) && pgErr.Code == "57014" && ctx.Err() == nil:
		return &RequestError{Code: CodeTimeout, Msg: "the search took longer than the statement timeout", Err: err}
	case ctx.Err() != nil:
		return &RequestError{Code: CodeUnavailable, Msg: "the request was cancelled", Err: err}
	case errors.As(err, &pgErr) && connectionLost(pgErr.Code):
		return &RequestError{Code: CodeUnavailable, Msg: "the database is unavailable; retry later", Err: err}
	case errors.As(err, &pgErr):
		return &RequestError{Code: CodeInternal, Msg: "the search failed; the server log has the details", Err: err}
	}
	// Anything else is the connection: the database is down or unreachable.
	return &RequestError{Code: CodeUnavailable, Msg: "the database is unavailable; retry later", Err: err}
}

// filterError maps the filter's refusal to the client's code: each code
// its own, and a refusal the client cannot have caused (an alias the server
// chose) internal.
func filterError(fe *filter.Error, err error) *RequestError {
	switch fe.Code {
	case filter.CodeAgentNotGranted:
		return &RequestError{Code: CodeAgentNotGranted, Msg: fmt.Sprintf("agent %q has no grant on collection %q", fe.Agent, fe.Resource), Err: err}
	case filter.CodeInvalidSubject:
		return &RequestError{Code: CodeInvalidSubject, Msg: fe.Msg, Err: err}
	case filter.CodeUnknownResource:
		return &RequestError{Code: CodeUnknownCollection, Msg: fe.Msg, Err: err}
	case filter.CodeNoSubject:
		return &RequestError{Code: CodeUnauthenticated, Msg: "the token names no subject or no tenant", Err: err}
	}
	return &RequestError{Code: CodeInternal, Msg: "the search failed; the server log has the details", Err: err}
}

// connectionLost reports whether a SQLSTATE means the connection or the
// server went away (class 08; 57P01-57P03: terminated by an administrator,
// a crash or a restart; 53300: too many connections), which a retry on a new
// connection may fix, rather than that the search itself failed.
func connectionLost(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "53300":
		return true
	}
	return strings.HasPrefix(code, "08")
}

func outcomeOf(err error, current string) string {
	if re, ok := asRequestError(err); ok {
		switch re.Code {
		case CodeAgentNotGranted:
			return outcomeDenied
		case CodeUnauthenticated:
			return outcomeUnauthenticated
		case CodeUnavailable, CodeTimeout, CodeInternal:
			return outcomeError
		}
		if re.Status() < 500 {
			return outcomeInvalid
		}
	}
	return current
}

func codeOf(err error) Code {
	if re, ok := asRequestError(err); ok {
		return re.Code
	}
	return CodeInternal
}

func clientIP(c echo.Context) netip.Addr {
	ip, err := netip.ParseAddr(c.RealIP())
	if err != nil {
		return netip.Addr{}
	}
	return ip
}

// recordDecision writes the audit record before the client gets an answer.
func (s *Server) recordDecision(c echo.Context, x *exchange) error {
	r := audit.Record{
		DecidedAt: x.start, DecisionID: x.id, Resource: x.resource, PolicyVersion: x.version,
		Rules: x.rules, RowIDs: x.rowIDs, ClientAddr: clientIP(c), Latency: time.Since(x.began),
		Outcome: x.outcome, Detail: x.detail, Agent: x.identity.Agent,
	}
	if sub := x.identity.Subject; sub != nil {
		r.Subject, r.Tenant = sub.ID, sub.Tenant
	}
	// A client that hung up still leaves its record.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
	defer cancel()
	err := s.cfg.Audit.Enqueue(ctx, r)
	if err == nil {
		return nil
	}
	s.cfg.Logger.Error("audit record not accepted; refusing the request", "decision_id", x.id, "error", err)
	x.outcome = outcomeError
	return &RequestError{Code: CodeUnavailable, Msg: "the audit log cannot keep up; retry later", Err: err}
}

// logRequest writes one structured line per request.
func (s *Server) logRequest(c echo.Context, x *exchange, err error) {
	attrs := []any{
		"decision_id", x.id, "outcome", x.outcome, "resource", x.resource,
		"rows", len(x.rowIDs), "latency_ms", float64(time.Since(x.began).Microseconds()) / 1000,
		"client", c.RealIP(),
	}
	if sub := x.identity.Subject; sub != nil {
		attrs = append(attrs, "subject", sub.ID, "tenant", sub.Tenant)
	}
	if x.identity.Agent != "" {
		attrs = append(attrs, "agent", x.identity.Agent)
	}
	if err != nil {
		attrs = append(attrs, "code", codeOf(err))
		if re, ok := asRequestError(err); ok && re.Err != nil {
			attrs = append(attrs, "error", re.Err.Error())
		}
	}
	s.cfg.Logger.Info("retrieve", attrs...)
}

// embed turns query text into a vector with the configured embedder.
func (s *Server) embed(ctx context.Context, text string) ([]float32, error) {
	v, err := s.cfg.Embedder.Embed(ctx, text)
	switch {
	case err == nil:
		return v, nil
	case embed.IsClientError(err):
		return nil, &RequestError{Code: CodeInvalidQuery, Msg: err.Error(), Err: err}
	default:
		return nil, &RequestError{Code: CodeEmbedderFailed, Msg: "the embedding service failed: " + err.Error(), Err: err}
	}
}
