package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/internal/strictjson"
	"github.com/ragfence/ragfence/retriever/service"
)

// retrieve is POST /v1/retrieve: the service decides, this handler reads
// the body when the service asks for it and writes the answer.
func (s *Server) retrieve(c echo.Context) error {
	var body []byte
	resp, err := s.svc.Retrieve(c.Request().Context(), service.Call{
		Authorization: c.Request().Header.Get(echo.HeaderAuthorization),
		Decode:        func() (retriever.Query, error) { return s.decode(c) },
		// Encoded before the record is written, so that an answer that
		// cannot be sent is not recorded as allowed.
		Encode:     func(r *service.Response) (err error) { body, err = encodeResponse(r); return err },
		ClientAddr: clientIP(c),
		Channel:    Channel,
	})
	id := service.DecisionID(err)
	if err == nil {
		id = resp.Decision.ID
	}
	c.Response().Header().Set("X-Decision-Id", id)
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, body)
}

// encodeResponse is resp as c.JSON would send it.
func encodeResponse(resp *service.Response) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(resp); err != nil {
		return nil, &retriever.Error{Code: retriever.CodeInternal, Msg: "the answer could not be encoded; the server log has the details", Err: err}
	}
	return buf.Bytes(), nil
}

// wireSchema is what decode reads of a body, for strictjson.Check.
var wireSchema = strictjson.ForType(reflect.TypeFor[wireQuery]())

// decode reads the body strictly: JSON only, no unknown fields, no
// duplicate keys or case-insensitive matches, bounded.
func (s *Server) decode(c echo.Context) (retriever.Query, error) {
	var q retriever.Query
	var w wireQuery
	if err := s.readJSON(c, &w, wireSchema); err != nil {
		return q, err
	}
	var err error
	q = retriever.Query{Resource: w.Resource, Text: w.Text, Filter: w.Filter, MinScore: w.MinScore, Explain: w.Explain}
	if raw := bytes.TrimSpace(w.K); len(raw) > 0 && string(raw) != "null" {
		// Query's zero K means the default; an explicit 0 is a mistake to
		// report, as are a fraction, a negative k and anything not a number.
		k, err := strconv.ParseInt(string(raw), 10, 32)
		if err != nil || k < 1 {
			return q, &retriever.Error{Code: retriever.CodeInvalidK, Msg: "k must be a whole number of at least 1; leave it out for the server's default"}
		}
		q.K = int(k)
	}
	if q.Embedding, err = parseEmbedding(w.Embedding); err != nil {
		return q, &retriever.Error{Code: retriever.CodeInvalidEmbedding, Msg: "embedding must be a list of finite numbers within float32 range", Err: err}
	}
	return q, nil
}

// readJSON reads the body into v strictly: JSON only, no unknown fields, no
// duplicate keys or case-insensitive matches, bounded by MaxBodyBytes.
func (s *Server) readJSON(c echo.Context, v any, schema *strictjson.Object) error {
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType)); err != nil || mt != "application/json" {
		return &retriever.Error{Code: CodeUnsupportedMedia, Msg: "send the body as application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &retriever.Error{Code: CodeBodyTooLarge, Msg: fmt.Sprintf("the body exceeds %d bytes", s.cfg.MaxBodyBytes)}
	}
	if err != nil {
		return &retriever.Error{Code: CodeInvalidJSON, Msg: "could not read the body", Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &retriever.Error{Code: CodeInvalidJSON, Msg: "invalid JSON body: " + jsonProblem(err), Err: err}
	}
	// What encoding/json accepted, a proxy in front may have read another
	// way: refuse duplicate keys, names matching a field only in another
	// letter case, and anything after the value.
	if err := strictjson.Check(body, schema); err != nil {
		return &retriever.Error{Code: CodeInvalidJSON, Msg: "invalid JSON body: " + err.Error(), Err: err}
	}
	return nil
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

// clientIP is the caller's address as the IP extractor sees it (the
// trusted proxies' X-Forwarded-For, or the TCP peer).
func clientIP(c echo.Context) netip.Addr {
	ip, err := netip.ParseAddr(c.RealIP())
	if err != nil {
		return netip.Addr{}
	}
	return ip
}
