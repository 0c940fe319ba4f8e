package httpapi

import (
	"net/http"
	"testing"

	"github.com/ragfence/ragfence/retriever"
)

// The codes a filter refusal is answered with (retriever's
// TestFilterErrorsKeepTheirMeaning) keep their statuses.
func TestFilterRefusalStatuses(t *testing.T) {
	for _, tc := range []struct {
		code   retriever.Code
		status int
	}{
		{retriever.CodeAgentNotGranted, http.StatusForbidden},
		{retriever.CodeInvalidSubject, http.StatusBadRequest},
		{retriever.CodeUnknownCollection, http.StatusBadRequest},
		{retriever.CodeUnauthenticated, http.StatusUnauthorized},
		{retriever.CodeInternal, http.StatusInternalServerError},
	} {
		if got := Status(tc.code); got != tc.status {
			t.Errorf("%s: answered with %d, want %d", tc.code, got, tc.status)
		}
	}
	if got := Status("no_such_code"); got != http.StatusInternalServerError {
		t.Errorf("an unknown code is answered with %d, want 500", got)
	}
}
