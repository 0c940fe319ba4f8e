package retriever

import (
	"testing"

	"github.com/ragfence/ragfence/filter"
)

// Every refusal of the filter reaches the client under its own code; none
// is answered as another (no_subject and invalid_alias used to be
// unknown_collection).
func TestFilterErrorsKeepTheirMeaning(t *testing.T) {
	for _, tc := range []struct {
		code   filter.Code
		want   Code
		status int
	}{
		{filter.CodeAgentNotGranted, CodeAgentNotGranted, 403},
		{filter.CodeInvalidSubject, CodeInvalidSubject, 400},
		{filter.CodeUnknownResource, CodeUnknownCollection, 400},
		{filter.CodeNoSubject, CodeUnauthenticated, 401},
		{filter.CodeInvalidAlias, CodeInternal, 500},
	} {
		fe := &filter.Error{Code: tc.code, Resource: "chunks", Msg: "m"}
		got := filterError(fe, fe)
		if got.Code != tc.want || got.Status() != tc.status {
			t.Errorf("%s: answered %s (%d), want %s (%d)", tc.code, got.Code, got.Status(), tc.want, tc.status)
		}
	}
}
