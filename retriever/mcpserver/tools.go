package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/service"
)

// Tool names.
const (
	toolRetrieve = "retrieve"
	toolSQL      = "sql_query"
	toolAccess   = "access"
)

type retrieveIn struct {
	Collection string         `json:"collection" jsonschema:"the collection to search, one of those the access tool lists"`
	Query      string         `json:"query,omitempty" jsonschema:"the question or passage to search for, as text (when the server has an embedder)"`
	Embedding  []float32      `json:"embedding,omitempty" jsonschema:"the query vector, instead of query text"`
	K          *int           `json:"k,omitempty" jsonschema:"how many passages to return, at least 1 (default 10)"`
	Filter     map[string]any `json:"filter,omitempty" jsonschema:"conditions on the collection's filterable metadata, e.g. {\"source\": \"wiki\", \"year\": {\"$gte\": 2024}}"`
	MinScore   *float64       `json:"min_score,omitempty" jsonschema:"drop passages less similar than this cosine similarity (-1 to 1)"`
}

type retrieveOut struct {
	DecisionID       string             `json:"decision_id"`
	Results          []retriever.Result `json:"results"`
	Masked           []string           `json:"masked"`
	ApprovalRequired []string           `json:"approval_required,omitempty"`
}

type sqlIn struct {
	SQL   string   `json:"sql" jsonschema:"one read-only SELECT statement in PostgreSQL syntax; parameters as $1, $2, ..."`
	Args  []string `json:"args,omitempty" jsonschema:"values for $1, $2, ..., as text"`
	Limit int      `json:"limit,omitempty" jsonschema:"the most rows to return (default 100, at most 1000)"`
}

type accessIn struct{}

func (s *Server) addTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{Name: toolRetrieve, Title: "Search the knowledge base",
		Description: "Returns the passages of a collection most similar to a query, among those the user you act for, and you, may see. " +
			"Give query (text) or embedding, and optionally k, filter and min_score. Each result has id, score, content and metadata; " +
			"masked fields read as null. decision.approval_required names rules whose rows need the user's approval (see access)."},
		s.retrieve)
	mcp.AddTool(s.mcp, &mcp.Tool{Name: toolSQL, Title: "Run a read-only SQL query",
		Description: "Runs one SELECT on the knowledge base's tables as the user you act for: only the rows you may see exist for it. " +
			"Expressions that could fail on some row's data are refused, as are writes and more than one statement. Rows come back as JSON objects."},
		s.sqlQuery)
	mcp.AddTool(s.mcp, &mcp.Tool{Name: toolAccess, Title: "What may I read?",
		Description: "Says, for each collection, whether you may read it, which rules apply, which fields are masked, " +
			"which rows need the user's approval and where each approval stands, and any revocation in force. Returns no rows."},
		s.access)
}

// lacks is the refusal of a call whose token misses scope, checked again
// on the arguments the SDK decoded (authenticate checked the body first).
func (s *Server) lacks(req *mcp.CallToolRequest, scope string) *mcp.CallToolResult {
	if !s.cfg.RequireScopes || (req.Extra != nil && req.Extra.TokenInfo != nil && slices.Contains(req.Extra.TokenInfo.Scopes, scope)) {
		return nil
	}
	return failure(&retriever.Error{Code: "insufficient_scope", Msg: "the token lacks the scope this call needs: " + scope})
}

func (s *Server) retrieve(ctx context.Context, req *mcp.CallToolRequest, in retrieveIn) (*mcp.CallToolResult, any, error) {
	scope := ScopeRetrieve
	if s.cfg.CollectionScopes {
		scope = collectionScope(in.Collection)
	}
	if res := s.lacks(req, scope); res != nil {
		return res, nil, nil
	}
	q := retriever.Query{Resource: in.Collection, Text: in.Query, Embedding: in.Embedding, MinScore: in.MinScore}
	if in.K != nil {
		if *in.K < 1 {
			return failure(&retriever.Error{Code: retriever.CodeInvalidK, Msg: "k must be at least 1; leave it out for the default"}), nil, nil
		}
		q.K = *in.K
	}
	if len(in.Filter) > 0 {
		q.Filter = retriever.Filter{}
		for k, v := range in.Filter {
			b, err := json.Marshal(v)
			if err != nil {
				return failure(&retriever.Error{Code: retriever.CodeInvalidFilter, Msg: "filter values must be JSON"}), nil, nil
			}
			q.Filter[k] = b
		}
	}
	resp, err := s.cfg.Service.Retrieve(ctx, service.Call{Authorization: authorization(req), Authenticator: s.cfg.Auth,
		Query: q, ClientAddr: clientAddr(req.Extra.TokenInfo), Channel: Channel, Tool: toolRetrieve})
	if err != nil {
		return failure(err), nil, nil
	}
	out := retrieveOut{DecisionID: resp.Decision.ID, Results: resp.Results, Masked: resp.Decision.Masked,
		ApprovalRequired: resp.Decision.ApprovalRequired}
	return success(out, renderResults(out)), nil, nil
}

func (s *Server) sqlQuery(ctx context.Context, req *mcp.CallToolRequest, in sqlIn) (*mcp.CallToolResult, any, error) {
	if res := s.lacks(req, ScopeQuery); res != nil {
		return res, nil, nil
	}
	args := make([]any, len(in.Args))
	for i, a := range in.Args {
		args[i] = a
	}
	res, err := s.cfg.Service.Query(ctx, service.QueryCall{Caller: s.caller(req, toolSQL), SQL: in.SQL, Args: args, Limit: in.Limit})
	if err != nil {
		return failure(err), nil, nil
	}
	return success(res, renderRows(res)), nil, nil
}

func (s *Server) access(ctx context.Context, req *mcp.CallToolRequest, _ accessIn) (*mcp.CallToolResult, any, error) {
	if res := s.lacks(req, ScopeAccess); res != nil {
		return res, nil, nil
	}
	a, err := s.cfg.Service.Access(ctx, s.caller(req, toolAccess), "")
	if err != nil {
		return failure(err), nil, nil
	}
	b, _ := json.MarshalIndent(a, "", "  ")
	return success(a, string(b)), nil, nil
}

func (s *Server) caller(req *mcp.CallToolRequest, tool string) service.Caller {
	return service.Caller{Authorization: authorization(req), Authenticator: s.cfg.Auth,
		ClientAddr: clientAddr(req.Extra.TokenInfo), Channel: Channel, Tool: tool}
}

// authorization is the header of the HTTP request that carried the call;
// authenticate checked it before the SDK saw the request.
func authorization(req *mcp.CallToolRequest) string {
	if req.Extra == nil || req.Extra.Header == nil {
		return ""
	}
	return req.Extra.Header.Get("Authorization")
}

func success(structured any, text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}, StructuredContent: structured}
}

// failure is a refusal as an MCP tool error, with the code and message
// /v1/retrieve would answer, and the decision id when it was audited.
func failure(err error) *mcp.CallToolResult {
	var re *retriever.Error
	if !errors.As(err, &re) {
		re = &retriever.Error{Code: retriever.CodeInternal, Msg: "internal error; the server log has the details"}
	}
	body := map[string]any{"error": map[string]string{"code": string(re.Code), "message": re.Msg}}
	if id := service.DecisionID(err); id != "" {
		body["decision_id"] = id
	}
	if secs := re.RetryAfterSeconds(); secs > 0 {
		body["retry_after"] = secs
	}
	return &mcp.CallToolResult{IsError: true, StructuredContent: body,
		Content: []mcp.Content{&mcp.TextContent{Text: string(re.Code) + ": " + re.Msg}}}
}

// renderResults is the passages as a model reads them best: numbered, with
// their id and score, then the text.
func renderResults(out retrieveOut) string {
	var b strings.Builder
	if len(out.Results) == 0 {
		b.WriteString("No passage you may see matched.\n")
	}
	for i, r := range out.Results {
		content := "(masked)"
		if r.Content != nil {
			content = *r.Content
		}
		fmt.Fprintf(&b, "[%d] id %s, score %.3f\n%s\n\n", i+1, r.ID, r.Score, content)
	}
	if len(out.ApprovalRequired) > 0 {
		fmt.Fprintf(&b, "Some rows need the user's approval first (rules: %s); ask with the approvals API.\n", strings.Join(out.ApprovalRequired, ", "))
	}
	fmt.Fprintf(&b, "decision %s", out.DecisionID)
	return b.String()
}

func renderRows(res *service.QueryResult) string {
	var b strings.Builder
	for _, r := range res.Rows {
		b.Write(r)
		b.WriteByte('\n')
	}
	if res.Truncated {
		b.WriteString("(more rows exist; raise limit or narrow the query)\n")
	}
	fmt.Fprintf(&b, "%d rows; decision %s", len(res.Rows), res.DecisionID)
	return b.String()
}
