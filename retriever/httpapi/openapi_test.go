package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/httpapi"
	"github.com/ragfence/ragfence/retriever/internal/e2e"
	"github.com/ragfence/ragfence/retriever/service"
)

// openapiURL is where the compiler files the document; schemas are compiled
// as openapiURL#<JSON pointer>, so their $refs resolve inside it.
const openapiURL = "https://ragfence.invalid/openapi.json"

// apiDoc is httpapi.OpenAPI, decoded, with a schema compiler over it.
type apiDoc struct {
	Paths map[string]map[string]apiOperation `json:"paths"`

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by JSON pointer
	raw      map[string]any
}

type apiOperation struct {
	Responses map[string]json.RawMessage `json:"responses"`
}

// apiResponse is a response object, after its $ref is followed.
type apiResponse struct {
	Ref     string                     `json:"$ref"`
	Headers map[string]json.RawMessage `json:"headers"`
	Content map[string]json.RawMessage `json:"content"`
}

var loadOpenAPIOnce = sync.OnceValues(func() (*apiDoc, error) {
	d := &apiDoc{schemas: map[string]*jsonschema.Schema{}}
	if err := json.Unmarshal(httpapi.OpenAPI, d); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(httpapi.OpenAPI, &d.raw); err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(httpapi.OpenAPI))
	if err != nil {
		return nil, err
	}
	d.compiler = jsonschema.NewCompiler()
	// OpenAPI 3.1's schema objects are JSON Schema 2020-12.
	d.compiler.DefaultDraft(jsonschema.Draft2020)
	if err := d.compiler.AddResource(openapiURL, doc); err != nil {
		return nil, err
	}
	return d, nil
})

func loadOpenAPI(t testing.TB) *apiDoc {
	t.Helper()
	d, err := loadOpenAPIOnce()
	if err != nil {
		t.Fatalf("httpapi.OpenAPI: %v", err)
	}
	return d
}

// schema compiles the schema at the JSON pointer (tokens unescaped).
func (d *apiDoc) schema(tokens ...string) (*jsonschema.Schema, error) {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
	}
	ptr := b.String()
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.schemas[ptr]; ok {
		return s, nil
	}
	s, err := d.compiler.Compile(openapiURL + "#" + ptr)
	if err != nil {
		return nil, err
	}
	d.schemas[ptr] = s
	return s, nil
}

// response returns the documented response of an operation for status,
// following a local $ref, and the JSON pointer tokens where it lives.
func (d *apiDoc) response(op apiOperation, path, method string, status int) (apiResponse, []string, bool) {
	raw, ok := op.Responses[strconv.Itoa(status)]
	if !ok {
		return apiResponse{}, nil, false
	}
	loc := []string{"paths", path, method, "responses", strconv.Itoa(status)}
	var r apiResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return apiResponse{}, nil, false
	}
	if name, ok := strings.CutPrefix(r.Ref, "#/components/responses/"); ok {
		loc = []string{"components", "responses", name}
		comps := d.raw["components"].(map[string]any)["responses"].(map[string]any)
		b, _ := json.Marshal(comps[name])
		r = apiResponse{}
		if err := json.Unmarshal(b, &r); err != nil {
			return apiResponse{}, nil, false
		}
	}
	return r, loc, true
}

// checkAgainstOpenAPI checks an answer of the server against the document:
// an undocumented path is 404 and an undocumented method 405, both with the
// Error envelope; any other status must be documented for the operation,
// with its headers and a body valid against its schema.
// template is the documented path that path matches, a {parameter}
// matching one segment; path itself when none does.
func (d *apiDoc) template(path string) string {
	if _, ok := d.Paths[path]; ok {
		return path
	}
	segs := strings.Split(path, "/")
	for tmpl := range d.Paths {
		ts := strings.Split(tmpl, "/")
		if len(ts) == len(segs) && slices.EqualFunc(ts, segs, func(a, b string) bool {
			return a == b || (strings.HasPrefix(a, "{") && strings.HasSuffix(a, "}") && b != "")
		}) {
			return tmpl
		}
	}
	return path
}

func checkAgainstOpenAPI(t testing.TB, r reply) {
	t.Helper()
	d := loadOpenAPI(t)
	path := d.template(r.path)
	item, ok := d.Paths[path]
	if !ok {
		if r.status != http.StatusNotFound {
			t.Errorf("%v: the path is not documented, want 404", r)
		}
		validateJSON(t, d, r, "components", "schemas", "Error")
		return
	}
	method := strings.ToLower(r.method)
	op, ok := item[method]
	if !ok {
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("%v: the method is not documented for the path, want 405", r)
		}
		validateJSON(t, d, r, "components", "schemas", "Error")
		return
	}
	resp, loc, ok := d.response(op, path, method, r.status)
	if !ok {
		t.Errorf("%v: status %d is not documented for %s %s", r, r.status, r.method, path)
		return
	}
	for name := range resp.Headers {
		if r.header.Get(name) == "" {
			t.Errorf("%v: documented header %s is missing", r, name)
		}
	}
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil {
		t.Errorf("%v: Content-Type %q: %v", r, r.header.Get("Content-Type"), err)
		return
	}
	if _, ok := resp.Content[mt]; !ok {
		t.Errorf("%v: content type %s is not documented (have %v)", r, mt, e2e.SortedKeys(resp.Content))
		return
	}
	validate(t, d, r, append(loc, "content", mt, "schema"), mt)
}

func validateJSON(t testing.TB, d *apiDoc, r reply, ptr ...string) {
	t.Helper()
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "application/json" {
		t.Errorf("%v: Content-Type %q, want application/json", r, r.header.Get("Content-Type"))
		return
	}
	validate(t, d, r, ptr, mt)
}

func validate(t testing.TB, d *apiDoc, r reply, ptr []string, mediaType string) {
	t.Helper()
	s, err := d.schema(ptr...)
	if err != nil {
		t.Errorf("compile the schema at %v: %v", ptr, err)
		return
	}
	var v any = string(r.body)
	if mediaType == "application/json" {
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(r.body)); err != nil {
			t.Errorf("%v: body is not JSON: %v", r, err)
			return
		}
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%v: body does not match the schema at %v: %v", r, ptr, err)
	}
}

// TestOpenAPIIsJSONSchema2020 checks the document is OpenAPI 3.1, whose
// schemas are JSON Schema 2020-12 (3.0's nullable would be silently ignored),
// and that every component schema compiles.
func TestOpenAPIIsJSONSchema2020(t *testing.T) {
	d := loadOpenAPI(t)
	if v, _ := d.raw["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi is %q, want 3.1.x", v)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "nullable" {
					t.Errorf("%s uses nullable, which OpenAPI 3.1 ignores; use a type list with \"null\"", path)
				}
				walk(path+"/"+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s/%d", path, i), e)
			}
		}
	}
	walk("#", d.raw)
	schemas := d.raw["components"].(map[string]any)["schemas"].(map[string]any)
	for _, name := range e2e.SortedKeys(schemas) {
		if _, err := d.schema("components", "schemas", name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
	// The schemas must refuse what they describe as impossible, or the
	// response checks prove nothing.
	bad := map[string]string{
		"RetrieveResponse": `{"results": [{"id": "1", "score": 0.5, "content": 7, "metadata": null}], "decision": {"id": "x", "policy_version": "v", "rules": [], "masked": []}}`,
		"Error":            `{"error": {"code": "no_such_code", "message": "m"}}`,
		"Result":           `{"id": "1", "score": 0.5, "content": null}`,
	}
	for name, body := range bad {
		s, err := d.schema("components", "schemas", name)
		if err != nil {
			t.Errorf("schema %s: %v", name, err)
			continue
		}
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if s.Validate(v) == nil {
			t.Errorf("schema %s accepts %s", name, body)
		}
	}
	good := `{"id": "1", "score": 0.5, "content": null, "metadata": null}`
	s, err := d.schema("components", "schemas", "Result")
	if err == nil {
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(good))
		if err := s.Validate(v); err != nil {
			t.Errorf("schema Result refuses masked columns (null): %v", err)
		}
	}
}

// TestRoutesMatchOpenAPI checks every route the server registers is
// documented and every documented operation is served, from the inside (the
// echo router) and from the outside (requests).
func TestRoutesMatchOpenAPI(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	d := loadOpenAPI(t)
	var documented []string
	for path, item := range d.Paths {
		for method := range item {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(documented)

	e, ok := ts.srv.Handler().(*echo.Echo)
	if !ok {
		t.Fatalf("Handler is a %T, not the echo router this test walks", ts.srv.Handler())
	}
	var registered []string
	for _, r := range e.Routes() {
		path := r.Path
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, ":") {
				path = strings.Replace(path, seg, "{"+seg[1:]+"}", 1)
			}
		}
		registered = append(registered, r.Method+" "+path)
	}
	sort.Strings(registered)
	if !slices.Equal(registered, documented) {
		t.Errorf("routes registered:\n  %s\ndocumented:\n  %s", strings.Join(registered, "\n  "), strings.Join(documented, "\n  "))
	}

	// From the outside: each documented operation succeeds when asked
	// rightly, with one of its documented statuses (httpDo checks that),
	// never 404 or 405.
	tok, agentTok := f.Token(t, "alice", ""), f.Token(t, "alice", "summarizer")
	body, _ := json.Marshal(retrieveBody{Collection: "chunks", Embedding: f.Topic(0), K: 3})
	asked := []byte(`{"collection": "chunks", "rule": "classified", "reason": "the routes test"}`)
	pending := func() string {
		r := httpDo(t, http.MethodPost, ts.URL+"/v1/approvals", "application/json", "Bearer "+agentTok, asked)
		var a struct{ ID string }
		if err := json.Unmarshal(r.body, &a); err != nil || a.ID == "" {
			t.Fatalf("%v: no approval id", r)
		}
		return a.ID
	}
	type call struct {
		token string
		body  []byte
		path  string
		want  int
	}
	calls := map[string]call{
		"POST /v1/retrieve":               {tok, body, "", http.StatusOK},
		"POST /v1/approvals":              {agentTok, asked, "", http.StatusCreated},
		"GET /v1/approvals":               {tok, nil, "", http.StatusOK},
		"POST /v1/approvals/{id}/approve": {tok, nil, "/v1/approvals/" + pending() + "/approve", http.StatusOK},
		"POST /v1/approvals/{id}/deny":    {tok, nil, "/v1/approvals/" + pending() + "/deny", http.StatusOK},
		"GET /v1/access":                  {tok, nil, "", http.StatusOK},
	}
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		c, ok := calls[op]
		if !ok {
			c = call{want: http.StatusOK} // the unauthenticated operations
		}
		if c.path != "" {
			path = c.path
		}
		var r reply
		switch {
		case c.body != nil:
			r = httpDo(t, method, ts.URL+path, "application/json", "Bearer "+c.token, c.body)
		case c.token != "":
			r = httpDo(t, method, ts.URL+path, "", "Bearer "+c.token, nil)
		default:
			r = httpDo(t, method, ts.URL+path, "", "", nil)
		}
		if r.status != c.want {
			t.Errorf("%v: want %d", r, c.want)
		}
	}
	served := httpDo(t, http.MethodGet, ts.URL+"/openapi.json", "", "", nil)
	if !bytes.Equal(served.body, httpapi.OpenAPI) {
		t.Errorf("/openapi.json serves something other than httpapi.OpenAPI")
	}
	// Undocumented paths are 404 and undocumented methods 405, with the
	// error envelope (httpDo checks both).
	for _, path := range []string{"/", "/v1", "/v1/retrieve/", "/v2/retrieve", "/debug/pprof/", "/openapi.yaml", "/healthz/x"} {
		r := httpDo(t, http.MethodGet, ts.URL+path, "", "", nil)
		wantError(t, r, http.StatusNotFound, "not_found")
	}
	for _, op := range []string{"GET /v1/retrieve", "PUT /v1/retrieve", "DELETE /v1/retrieve", "POST /healthz", "POST /metrics", "DELETE /openapi.json"} {
		method, path, _ := strings.Cut(op, " ")
		r := httpDo(t, method, ts.URL+path, "", "", nil)
		wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	}
}

// TestRetrieveStatusesDocumented checks every status the error cases
// produce is documented for POST /v1/retrieve, and that the Error schema's
// code list is the server's.
func TestRetrieveStatusesDocumented(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	d := loadOpenAPI(t)
	op := d.Paths["/v1/retrieve"]["post"]
	seen := map[int]bool{}
	for _, c := range errorCases(t, f, ts) {
		r := c.send(t)
		if r.status != c.status {
			t.Errorf("%s: %v, want %d", c.name, r, c.status)
		}
		if r.method == http.MethodPost && r.path == "/v1/retrieve" {
			seen[r.status] = true
		}
	}
	seen[http.StatusOK] = true
	for status := range seen {
		if _, _, ok := d.response(op, "/v1/retrieve", "post", status); !ok {
			t.Errorf("status %d is observed but not documented for POST /v1/retrieve", status)
		}
	}
	for _, want := range []int{400, 401, 403, 413, 415, 503} {
		if !seen[want] {
			t.Errorf("no error case produced status %d", want)
		}
	}

	codes := serverCodes(t)
	var want []string
	for _, c := range codes {
		want = append(want, string(c))
		status := httpapi.Status(c)
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			continue // routing errors, not answers of the operation
		}
		if _, _, ok := d.response(op, "/v1/retrieve", "post", status); !ok {
			t.Errorf("code %s is answered with %d, which POST /v1/retrieve does not document", c, status)
		}
	}
	var enum []string
	errSchema := d.raw["components"].(map[string]any)["schemas"].(map[string]any)["Error"].(map[string]any)
	code := errSchema["properties"].(map[string]any)["error"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)
	for _, c := range code["enum"].([]any) {
		enum = append(enum, c.(string))
	}
	sort.Strings(want)
	sort.Strings(enum)
	if !slices.Equal(want, enum) {
		t.Errorf("Error.code enum %v, server codes %v", enum, want)
	}
}

// TestSchemasMatchGoTypes checks each documented body's properties are the
// JSON fields of the Go type the server decodes or encodes, and that the
// schema requires exactly the fields Go always writes (no omitempty).
func TestSchemasMatchGoTypes(t *testing.T) {
	d := loadOpenAPI(t)
	schemas := d.raw["components"].(map[string]any)["schemas"].(map[string]any)
	for name, typ := range map[string]reflect.Type{
		"RetrieveRequest":  reflect.TypeFor[retriever.Query](),
		"RetrieveResponse": reflect.TypeFor[service.Response](),
		"Result":           reflect.TypeFor[retriever.Result](),
		"Decision":         reflect.TypeFor[service.Decision](),
		"ApprovalRequest":  reflect.TypeFor[service.ApprovalRequest](),
		"Approval":         reflect.TypeFor[service.ApprovalView](),
		"Access":           reflect.TypeFor[service.Access](),
		"CollectionAccess": reflect.TypeFor[service.CollectionAccess](),
		"ApprovalState":    reflect.TypeFor[service.ApprovalState](),
		"Revocation":       reflect.TypeFor[service.RevocationView](),
	} {
		schema := schemas[name].(map[string]any)
		var fields, always []string
		for f := range typ.Fields() {
			tag, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == "-" || !f.IsExported() {
				continue
			}
			fields = append(fields, tag)
			if !strings.Contains(opts, "omitempty") {
				always = append(always, tag)
			}
		}
		sort.Strings(fields)
		if props := e2e.SortedKeys(schema["properties"].(map[string]any)); !slices.Equal(props, fields) {
			t.Errorf("schema %s has properties %v, %s has JSON fields %v", name, props, typ, fields)
		}
		if name == "RetrieveRequest" {
			continue // what a request must send is the server's rule, checked below
		}
		var required []string
		for _, r := range schema["required"].([]any) {
			required = append(required, r.(string))
		}
		sort.Strings(required)
		sort.Strings(always)
		if !slices.Equal(required, always) {
			t.Errorf("schema %s requires %v, %s always writes %v", name, required, typ, always)
		}
	}
}

// serverCodes reads the error codes declared in the retriever's errors.go
// and in this package's (constants of type Code), so a new code cannot be
// missed by the document unnoticed.
func serverCodes(t *testing.T) []retriever.Code {
	t.Helper()
	var codes []retriever.Code
	for _, path := range []string{"../errors.go", "errors.go", "../service/access.go", "../service/guard.go"} {
		codes = append(codes, fileCodes(t, path)...)
	}
	if len(codes) < 10 {
		t.Fatalf("found only %d codes in the errors.go files: %v", len(codes), codes)
	}
	return codes
}

// fileCodes are the string constants of type Code (or retriever.Code)
// declared in the Go file at path.
func fileCodes(t *testing.T, path string) []retriever.Code {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []retriever.Code
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			if !isCodeType(vs.Type) {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: a Code constant is not a string literal", path)
				}
				s, _ := strconv.Unquote(lit.Value)
				codes = append(codes, retriever.Code(s))
			}
		}
	}
	return codes
}

func isCodeType(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name == "Code"
	case *ast.SelectorExpr:
		pkg, ok := x.X.(*ast.Ident)
		return ok && pkg.Name == "retriever" && x.Sel.Name == "Code"
	}
	return false
}

// TestRequestSchemaAgreesWithServer checks RetrieveRequest accepts what the
// server serves and refuses what the server refuses for reasons a schema
// can express.
func TestRequestSchemaAgreesWithServer(t *testing.T) {
	f := e2e.Shared(t)
	ts := newServer(t, serverOptions{})
	d := loadOpenAPI(t)
	s, err := d.schema("components", "schemas", "RetrieveRequest")
	if err != nil {
		t.Fatal(err)
	}
	tok := f.Token(t, "alice", "")
	vec := f.Topic(2)
	valid := []any{
		retrieveBody{Collection: "chunks", Embedding: vec},
		retrieveBody{Collection: "chunks", Embedding: vec, K: 5, MinScore: e2e.PtrTo(0.1),
			Filter: map[string]any{"source": "wiki", "metadata.year": map[string]any{"$gte": 2022}}},
	}
	for _, body := range valid {
		r := ts.retrieve(t, tok, body)
		b, _ := json.Marshal(body)
		v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err := s.Validate(v); err != nil {
			t.Errorf("the server serves %s (%d) but the schema refuses it: %v", b, r.status, err)
		}
		if r.status != http.StatusOK {
			t.Errorf("%v: want 200", r)
		}
	}
	embedding, _ := json.Marshal(vec)
	invalid := map[string]string{
		"unknown field":       `{"collection": "chunks", "embedding": %s, "colour": "red"}`,
		"no collection":       `{"embedding": %s}`,
		"empty embedding":     `{"collection": "chunks", "embedding": []%.0s}`,
		"negative k":          `{"collection": "chunks", "embedding": %s, "k": -1}`,
		"min_score > 1":       `{"collection": "chunks", "embedding": %s, "min_score": 1.5}`,
		"string k":            `{"collection": "chunks", "embedding": %s, "k": "3"}`,
		"embedding and query": `{"collection": "chunks", "embedding": %s, "query": "billing"}`,
	}
	for name, format := range invalid {
		body := fmt.Sprintf(format, embedding)
		r := ts.retrieve(t, tok, []byte(body))
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", name, r)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Validate(v) == nil {
			t.Errorf("%s: the server refuses %s but the schema accepts it", name, body)
		}
	}
}
