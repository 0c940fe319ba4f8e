package service

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/guardrail"
	"github.com/ragfence/ragfence/internal/rowjson"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/audit"
	"github.com/ragfence/ragfence/rewrite"
)

// Bounds of QueryCall.Limit.
const (
	DefaultQueryLimit = 100  // the rows a call returns when it gives no limit
	MaxQueryLimit     = 1000 // the most rows a call may ask for
)

// CodeInvalidLimit (400): a QueryCall's Limit is negative or above
// MaxQueryLimit.
const CodeInvalidLimit retriever.Code = "invalid_limit"

// queryTool names Query's calls in their audit records and log lines when
// the front door gives no name of its own (Caller.Tool).
const queryTool = "sql_query"

// QueryCall is one SQL statement, written by an untrusted party (an AI
// agent, a user), as a front door received it.
type QueryCall struct {
	Caller
	// SQL is one SELECT; the rewriter refuses anything else.
	SQL string
	// Args bind $1..$n as text, which PostgreSQL converts to each
	// parameter's type: a string as it is, a number or boolean as its
	// JSON text, nil as NULL. Other values are refused (invalid_query).
	Args []any
	// Limit is how many rows are returned at most: DefaultQueryLimit when
	// 0, at most MaxQueryLimit.
	Limit int
}

// QueryResult is a statement's rows, each a JSON object by rowjson.Rule.
type QueryResult struct {
	DecisionID string            `json:"decision_id"`
	Columns    []string          `json:"columns"`
	Rows       []json.RawMessage `json:"rows"`
	// Truncated says the statement had more rows than Limit.
	Truncated bool `json:"truncated"`
}

// ConfigureQueryPool makes cfg's connections fit Config.QueryPool: they
// return PostgreSQL's text output, in the session settings the rows' JSON
// is stated in, and bind arguments as text.
func ConfigureQueryPool(cfg *pgxpool.Config) { rowjson.TextOutputPool(cfg) }

// Query runs one read-only statement for its caller in strict mode
// (filter.Untrusted), through the policy: exactly the rows the caller may
// see, the masked columns masked. Errors are as Retrieve's: an *Error with
// the audit record's decision id around a *retriever.Error, whose code is
// the rewriter's or filter's own for a refused statement. Every call is
// audited before it is answered; a call whose record cannot be written
// fails as unavailable. The record never holds the arguments.
func (s *Service) Query(ctx context.Context, call QueryCall) (*QueryResult, error) {
	x := &exchange{start: s.cfg.Now(), began: time.Now(), id: audit.NewDecisionID(),
		call: &Call{ClientAddr: call.ClientAddr, Channel: call.Channel, Tool: cmp.Or(call.Tool, queryTool)}, detail: map[string]any{}}
	bctx, cancel := s.bounded(ctx)
	res, err := s.serveQuery(bctx, x, &call)
	cancel()
	x.outcome, x.detail["rows"] = outcomeAllowed, 0
	if err != nil {
		x.outcome, x.detail["error"] = outcomeOf(err, outcomeError), string(codeOf(err))
	} else {
		x.detail["rows"], x.detail["truncated"] = len(res.Rows), res.Truncated
	}
	if aerr := s.recordDecision(ctx, x); aerr != nil {
		// No record, no answer, as for Retrieve.
		res, err = nil, aerr
	}
	s.metrics.decisions.WithLabelValues(x.outcome).Inc()
	rows, _ := x.detail["rows"].(int)
	s.logCall(x, err, "query", rows)
	if err != nil {
		return nil, &Error{DecisionID: x.id, Err: err}
	}
	res.DecisionID = x.id
	return res, nil
}

// serveQuery authenticates, checks the call and the subject, and runs the
// statement.
func (s *Service) serveQuery(ctx context.Context, x *exchange, call *QueryCall) (*QueryResult, error) {
	id, err := s.queryIdentity(ctx, x, call.Caller)
	if err != nil {
		return nil, err
	}
	limit, args, err := checkQueryCall(call)
	if err != nil {
		return nil, err
	}
	p := s.cfg.Policies.Load()
	x.version = p.Version()
	subject, err := p.Set().CheckSubject(id.Subject)
	if err != nil {
		return nil, &retriever.Error{Code: retriever.CodeInvalidSubject, Msg: "the token's claims do not fit the policy: " + err.Error(), Err: err}
	}
	approved, err := s.approvedFor(id)
	if err != nil {
		return nil, err
	}
	req := filter.Request{Subject: subject, Agent: id.Agent, Context: policy.Context{Time: x.start, IP: call.ClientAddr}, Approved: approved}
	g := &queryGuard{s: s, x: x, id: id, subject: subject, limit: limit}
	res, err := s.runQuery(ctx, p, req, call.SQL, args, g)
	if err == nil {
		g.record(len(res.Rows))
	}
	return res, err
}

// queryGuard holds a statement to the guardrails of every collection it
// reads, once the rewriter knows them and before it runs: a refusal
// refuses the statement, a cap lowers its limit.
type queryGuard struct {
	s        *Service
	x        *exchange
	id       Identity
	subject  *policy.Subject
	limit    int
	verdicts []guardrail.Verdict
}

func (g *queryGuard) admit(ctx context.Context, resources []string) error {
	for _, r := range resources {
		v, err := g.s.guard(ctx, g.x, g.id, g.subject, r)
		if err != nil {
			g.x.outcome = outcomeDenied
			return err
		}
		if v.Action == guardrail.Cap {
			g.limit = min(g.limit, v.CapK)
		}
		g.verdicts = append(g.verdicts, v)
	}
	return nil
}

// record counts the rows returned against each collection's budgets.
func (g *queryGuard) record(rows int) {
	if g.s.cfg.Guardrails == nil {
		return
	}
	for _, v := range g.verdicts {
		g.s.cfg.Guardrails.Record(v, rows, nil)
	}
}

// queryIdentity is identify for a call that is audited in its own record:
// a revoked identity's refusal is recorded there, not apart.
func (s *Service) queryIdentity(ctx context.Context, x *exchange, c Caller) (Identity, error) {
	id, err := s.authenticate(ctx, c)
	if err != nil {
		return Identity{}, err
	}
	x.identity = id
	if r, err := s.checkRevoked(id); err != nil {
		if r != nil {
			maps.Copy(x.detail, revokedDetail(r))
		}
		return Identity{}, err
	}
	return id, nil
}

// checkQueryCall checks what needs no database: the statement is there,
// the limit in range, each argument a value JSON has.
func checkQueryCall(call *QueryCall) (int, []any, error) {
	if strings.TrimSpace(call.SQL) == "" {
		return 0, nil, &retriever.Error{Code: retriever.CodeInvalidQuery, Msg: "sql (one SELECT statement) is required"}
	}
	limit := call.Limit
	if limit == 0 {
		limit = DefaultQueryLimit
	}
	if limit < 1 || limit > MaxQueryLimit {
		return 0, nil, &retriever.Error{Code: CodeInvalidLimit, Msg: fmt.Sprintf("limit must be between 1 and %d", MaxQueryLimit)}
	}
	args, err := textArgs(call.Args)
	return limit, args, err
}

// textArgs are the arguments as the text PostgreSQL converts to each
// parameter's type. Numbers are written in full ('f'), so that an integral
// one fits an integer parameter.
func textArgs(args []any) ([]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case nil, string:
			out[i] = v
		case bool:
			out[i] = strconv.FormatBool(v)
		case json.Number:
			out[i] = v.String()
		case int:
			out[i] = strconv.Itoa(v)
		case int64:
			out[i] = strconv.FormatInt(v, 10)
		case float64:
			if !math.IsInf(v, 0) && !math.IsNaN(v) {
				out[i] = strconv.FormatFloat(v, 'f', -1, 64)
				continue
			}
			return nil, badArg(i)
		default:
			return nil, badArg(i)
		}
	}
	return out, nil
}

func badArg(i int) error {
	return &retriever.Error{Code: retriever.CodeInvalidQuery,
		Msg: fmt.Sprintf("argument $%d must be a string, a finite number, a boolean or null", i+1)}
}

// queryPool is Config.QueryPool, refused when the rows could not be
// rendered from it.
func (s *Service) queryPool() (*pgxpool.Pool, error) {
	pool := s.cfg.QueryPool
	if s.cfg.Reads != nil {
		if rp := s.cfg.Reads.Query(); rp != nil {
			pool = rp
		}
	}
	if pool == nil || pool.Config().ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeExec {
		return nil, &retriever.Error{Code: retriever.CodeInternal, Msg: "this server is not configured for SQL queries",
			Err: errors.New("service: Config.QueryPool is nil or not configured with ConfigureQueryPool")}
	}
	return pool, nil
}

// runQuery runs the statement in a read-only transaction (a second wall
// behind the rewriter) on a connection of the query pool.
func (s *Service) runQuery(ctx context.Context, p *filter.Policy, req filter.Request, sql string, args []any, g *queryGuard) (*QueryResult, error) {
	pool, err := s.queryPool()
	if err != nil {
		return nil, err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, dbError(ctx, err)
	}
	defer rollback(ctx, tx)
	path, types, err := rowjson.LoadSession(ctx, tx)
	if err != nil {
		return nil, dbError(ctx, err)
	}
	db := filter.Wrap(tx, p, filter.Untrusted(), filter.WithSearchPath(path...), filter.WithStatementTimeout(s.cfg.StatementTimeout),
		filter.BeforeRun(g.admit))
	qctx := filter.WithRequestContext(filter.WithAgent(filter.WithSubject(ctx, req.Subject), req.Agent), req.Context)
	rows, err := db.Query(filter.WithApproved(qctx, req.Approved), sql, args...)
	if err != nil {
		return nil, s.statementError(ctx, err)
	}
	res, err := collect(ctx, tx.Conn().PgConn(), types, rows, g.limit)
	if err != nil {
		return nil, s.statementError(ctx, err)
	}
	return res, nil
}

// rollback ends the read-only transaction, also for a caller that hung
// up; a connection that cannot roll back is closed by pgx.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// collect renders at most limit rows, reading one more to know whether
// there were more. The rows past it are not wanted: a cancel request stops
// the server sending them, which closing the rows would otherwise read to
// the end of a large result or the statement timeout. Whatever ends the
// statement after that (the cancel, among others) leaves the answer as it
// is.
func collect(ctx context.Context, conn *pgconn.PgConn, types *rowjson.Types, rows pgx.Rows, limit int) (*QueryResult, error) {
	defer rows.Close()
	fields := rows.FieldDescriptions()
	if err := rowjson.CheckText(fields); err != nil {
		return nil, &retriever.Error{Code: retriever.CodeInternal, Msg: "the rows could not be rendered; the server log has the details", Err: err}
	}
	res := &QueryResult{Columns: make([]string, len(fields)), Rows: []json.RawMessage{}}
	for i, f := range fields {
		res.Columns[i] = f.Name
	}
	for rows.Next() {
		if len(res.Rows) == limit {
			res.Truncated = true
			stopSending(ctx, conn)
			return res, nil
		}
		res.Rows = append(res.Rows, types.AppendRow(nil, fields, rows.RawValues()))
	}
	return res, rows.Err()
}

// stopSending cancels the statement running on conn. A cancel that
// arrives once the statement has ended is ignored by the server; one that
// fails leaves the rows to be read to their end.
func stopSending(ctx context.Context, conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = conn.CancelRequest(ctx)
}

// statementClasses are the SQLSTATE classes of errors the statement itself
// causes, with or without its arguments, and how the caller is told of
// them.
var statementClasses = map[string]string{
	"0A": "a feature PostgreSQL does not support",
	"21": "a cardinality violation",
	"22": "a data exception",
	"23": "an integrity constraint violation",
	"42": "a syntax error or access rule violation",
}

// conditionNames name the commonest of those errors, as PostgreSQL's
// errcodes do: a fixed text, which holds nothing of the rows.
var conditionNames = map[string]string{
	"22001": "string_data_right_truncation", "22003": "numeric_value_out_of_range",
	"22007": "invalid_datetime_format", "22008": "datetime_field_overflow",
	"22012": "division_by_zero", "22P02": "invalid_text_representation",
	"42601": "syntax_error", "42501": "insufficient_privilege",
	"42702": "ambiguous_column", "42703": "undefined_column",
	"42803": "grouping_error", "42804": "datatype_mismatch",
	"42883": "undefined_function", "42P01": "undefined_table",
	"42P18": "indeterminate_datatype",
}

// statementError classifies the statement's failure. The database's message
// is never passed on: it can quote the values of rows (invalid input
// syntax for type integer: "..."); the SQLSTATE says what went wrong.
func (s *Service) statementError(ctx context.Context, err error) error {
	if re := refusal(err); re != nil {
		return re
	}
	var own *retriever.Error
	if errors.As(err, &own) {
		return own // a guardrail's, from BeforeRun
	}
	var pe *pgconn.PgError
	switch {
	case !errors.As(err, &pe) || ctx.Err() != nil:
		return dbError(ctx, err)
	case pe.Code == "57014":
		limit := "the server's statement_timeout"
		if s.cfg.StatementTimeout > 0 {
			limit = "the statement timeout (" + s.cfg.StatementTimeout.String() + ")"
		}
		return &retriever.Error{Code: retriever.CodeTimeout, Msg: "the statement ran longer than " + limit + " and was cancelled", Err: err}
	case pe.Code == "25006": // read_only_sql_transaction: the second wall held
		return &retriever.Error{Code: retriever.Code(rewrite.CodeWrite), Msg: "the statement tried to write; it runs read-only", Err: err}
	}
	if kind, ok := statementClasses[pe.Code[:2]]; ok {
		if name, ok := conditionNames[pe.Code]; ok {
			kind = name
		}
		return &retriever.Error{Code: retriever.CodeInvalidQuery, Err: err,
			Msg: fmt.Sprintf("the statement failed with %s (SQLSTATE %s); PostgreSQL's message is withheld, as it can hold row values", kind, pe.Code)}
	}
	return dbError(ctx, err)
}

// refusal is a statement the rewriter or the filter refused, with its own
// stable code, or nil. The policy's refusals (policy_refused) are told by
// the filter's code (agent_not_granted).
func refusal(err error) *retriever.Error {
	var re *rewrite.Error
	var fe *filter.Error
	switch {
	case errors.As(err, &fe) && (!errors.As(err, &re) || re.Code == rewrite.CodePolicy):
		msg := fe.Msg
		if fe.Resource != "" {
			msg = fmt.Sprintf("resource %q: %s", fe.Resource, msg)
		}
		return &retriever.Error{Code: retriever.Code(fe.Code), Msg: msg, Err: err}
	case errors.As(err, &re):
		msg := re.Msg
		if re.Position >= 0 {
			msg += fmt.Sprintf(" (at byte %d)", re.Position)
		}
		return &retriever.Error{Code: retriever.Code(re.Code), Msg: msg, Err: err}
	}
	return nil
}

// dbError is a failure of the database rather than of the statement: the
// connection lost, the call cancelled, or something the caller cannot have
// caused.
func dbError(ctx context.Context, err error) error {
	var re *retriever.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &re):
		return re
	case ctx.Err() != nil:
		return retriever.Interrupted(ctx, err)
	case errors.As(err, &pe) && !retriever.ConnectionLost(pe.Code):
		return &retriever.Error{Code: retriever.CodeInternal, Msg: "the statement failed; the server log has the details", Err: err}
	}
	return &retriever.Error{Code: retriever.CodeUnavailable, Msg: "the database is unavailable; retry later", Err: err}
}
