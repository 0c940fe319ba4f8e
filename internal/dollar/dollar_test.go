package dollar

import "testing"

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		sql   string
		first int
		want  string
	}{
		{"a = ? AND b = ?", 1, "a = $1 AND b = $2"},
		{"meta ?? 'k' AND x = ?", 3, "meta ? 'k' AND x = $3"},
		{"no placeholders", 5, "no placeholders"},
		{"?", 10, "$10"},
	} {
		if got := Number(tc.sql, tc.first); got != tc.want {
			t.Errorf("Number(%q, %d) = %q, want %q", tc.sql, tc.first, got, tc.want)
		}
	}
}
