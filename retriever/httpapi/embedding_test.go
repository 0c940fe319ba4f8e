package httpapi

import (
	"encoding/json"
	"slices"
	"testing"
)

// parseEmbedding must accept and read exactly what encoding/json would
// decode into []float32, for any valid JSON (the decoder validates first),
// except that a null element is an error rather than a silent 0.
func FuzzParseEmbedding(f *testing.F) {
	for _, s := range []string{
		`[]`, `null`, ` [ 1 , -2.5e-3,0.125 ] `, `[1e39]`, `[-1e-46]`, `[3.4028235e38]`, `[1, "2"]`,
		`["x"]`, `[[1]]`, `[true]`, `[null]`, `{}`, `"[1]"`, `1`, `[1,2,3,4,5,6,7,8,9,10]`, `[0.1e+2, 1E2, -0]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		var want []float32
		wantErr := json.Unmarshal([]byte(s), &want)
		var elems []*json.RawMessage
		if json.Unmarshal([]byte(s), &elems) == nil && slices.Contains(elems, nil) {
			wantErr = errNotNumbers
		}
		got, err := parseEmbedding(json.RawMessage(s))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: error %v, encoding/json says %v", s, err, wantErr)
		}
		if err == nil && !slices.Equal(got, want) {
			t.Fatalf("%q: got %v, encoding/json %v", s, got, want)
		}
	})
}
