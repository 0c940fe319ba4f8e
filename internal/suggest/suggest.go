// Package suggest finds the known name nearest to a misspelt one, for
// "did you mean" hints in error messages.
package suggest

import "fmt"

// Nearest returns the candidate closest to s by edit distance, if one is
// close enough to be a plausible typo (at most a third of s, and at most 3).
func Nearest(s string, candidates []string) (string, bool) {
	limit := min(3, max(1, len(s)/3))
	best, bestD := "", limit+1
	for _, c := range candidates {
		if c == s {
			continue
		}
		if d := distance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best, best != ""
}

// Hint returns ` (did you mean "x"?)` for the nearest candidate, or "".
func Hint(s string, candidates []string) string {
	if near, ok := Nearest(s, candidates); ok {
		return fmt.Sprintf(" (did you mean %q?)", near)
	}
	return ""
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
