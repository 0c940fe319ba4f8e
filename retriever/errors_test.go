package retriever

import (
	"context"
	"errors"
	"testing"

	"github.com/ragfence/ragfence/filter"
)

// Every refusal of the filter reaches the client under its own code; none
// is answered as another (no_subject and invalid_alias used to be
// unknown_collection). The HTTP status of each is httpapi's
// TestFilterRefusalStatuses.
func TestFilterErrorsKeepTheirMeaning(t *testing.T) {
	for _, tc := range []struct {
		code filter.Code
		want Code
	}{
		{filter.CodeAgentNotGranted, CodeAgentNotGranted},
		{filter.CodeInvalidSubject, CodeInvalidSubject},
		{filter.CodeUnknownResource, CodeUnknownCollection},
		{filter.CodeNoSubject, CodeUnauthenticated},
		{filter.CodeInvalidAlias, CodeInternal},
	} {
		fe := &filter.Error{Code: tc.code, Resource: "chunks", Msg: "m"}
		if got := filterError(fe, fe); got.Code != tc.want {
			t.Errorf("%s: answered %s, want %s", tc.code, got.Code, tc.want)
		}
		// And so through a search's classification, wrapped as Search wraps.
		if got := classify(context.Background(), errors.Join(errors.New("search"), fe), false); got.Code != tc.want {
			t.Errorf("%s: classified as %s, want %s", tc.code, got.Code, tc.want)
		}
	}
}

// CodeOf reads an *Error anywhere in the chain, and nothing else.
func TestCodeOf(t *testing.T) {
	wrapped := errors.Join(errors.New("context"), &Error{Code: CodeTimeout, Msg: "m"})
	if got := CodeOf(wrapped); got != CodeTimeout {
		t.Errorf("CodeOf(wrapped) = %q, want timeout", got)
	}
	if got := CodeOf(errors.New("plain")); got != "" {
		t.Errorf("CodeOf(plain) = %q, want \"\"", got)
	}
}
