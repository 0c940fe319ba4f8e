package httpapi

import (
	"net/http"

	"github.com/ragfence/ragfence/retriever"
	"github.com/ragfence/ragfence/retriever/service"
)

// Codes of the HTTP wire format, beside the retriever's own.
const (
	CodeInvalidJSON      retriever.Code = "invalid_json"       // malformed JSON, unknown fields, duplicate keys, keys matching a field only in another case
	CodeBodyTooLarge     retriever.Code = "body_too_large"     // the body exceeds Config.MaxBodyBytes
	CodeUnsupportedMedia retriever.Code = "unsupported_media"  // not application/json
	CodeMethodNotAllowed retriever.Code = "method_not_allowed" // the endpoint does not take the method
)

// CodeNotFound is also what routing answers for no such endpoint.
const CodeNotFound = retriever.CodeNotFound

var statusOf = map[retriever.Code]int{
	CodeInvalidJSON: http.StatusBadRequest, retriever.CodeInvalidEmbedding: http.StatusBadRequest,
	retriever.CodeInvalidK: http.StatusBadRequest, retriever.CodeInvalidQuery: http.StatusBadRequest,
	retriever.CodeInvalidMinScore: http.StatusBadRequest, retriever.CodeUnknownCollection: http.StatusBadRequest,
	retriever.CodeInvalidFilter: http.StatusBadRequest, retriever.CodeInvalidSubject: http.StatusBadRequest,
	retriever.CodeUnauthenticated: http.StatusUnauthorized, retriever.CodeAgentNotGranted: http.StatusForbidden,
	CodeBodyTooLarge: http.StatusRequestEntityTooLarge, CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	retriever.CodeNotFound: http.StatusNotFound, CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	retriever.CodeUnavailable: http.StatusServiceUnavailable, retriever.CodeTimeout: http.StatusGatewayTimeout,
	retriever.CodeInternal: http.StatusInternalServerError, retriever.CodeEmbedderFailed: http.StatusBadGateway,
	service.CodeTokenRevoked: http.StatusUnauthorized, service.CodeSubjectRevoked: http.StatusForbidden,
	service.CodeAgentRevoked: http.StatusForbidden, service.CodeRevocationStale: http.StatusServiceUnavailable,
	service.CodeApprovalStale: http.StatusServiceUnavailable, service.CodeInvalidApproval: http.StatusBadRequest,
	service.CodeAgentCannotDecide: http.StatusForbidden, service.CodeGuardrailThrottled: http.StatusTooManyRequests,
}

// Status is the HTTP status a code is answered with; 500 for a code it
// does not know.
func Status(code retriever.Code) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
