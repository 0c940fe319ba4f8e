package suggest

import "testing"

func TestNearest(t *testing.T) {
	cands := []string{"owner_id", "tenant_id", "classification", "source"}
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"owner_di", "owner_id", true},
		{"tenantid", "tenant_id", true},
		{"clasification", "classification", true},
		{"sourc", "source", true},
		{"embedding", "", false},
		{"x", "", false},
		{"source", "", false}, // an exact match is not a suggestion
	}
	for _, tt := range tests {
		got, ok := Nearest(tt.in, cands)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Nearest(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestHint(t *testing.T) {
	if got := Hint("migrat", []string{"migrate", "demo"}); got != ` (did you mean "migrate"?)` {
		t.Errorf("Hint = %q", got)
	}
	if got := Hint("zzz", []string{"migrate"}); got != "" {
		t.Errorf("Hint = %q, want empty", got)
	}
}
