package policy_test

import (
	"testing"

	"github.com/ragfence/ragfence/policy"
)

func TestQuoteIdent(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"chunks"}, `"chunks"`},
		{[]string{"public", "chunks"}, `"public"."chunks"`},
		{[]string{`we"ird`}, `"we""ird"`},
		{[]string{"a\x00b"}, `"ab"`},
		{[]string{"Mixed Case"}, `"Mixed Case"`},
	} {
		if got := policy.QuoteIdent(tc.parts...); got != tc.want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", tc.parts, got, tc.want)
		}
	}
}
