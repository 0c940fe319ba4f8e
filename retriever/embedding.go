package retriever

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
)

// wireQuery is Query as it arrives: the embedding is parsed by
// parseEmbedding rather than by encoding/json's reflection, which was half
// of a request's in-process time for 384 floats.
type wireQuery struct {
	Resource  string          `json:"collection"`
	Embedding json.RawMessage `json:"embedding,omitempty"`
	Text      string          `json:"query,omitempty"`
	K         int             `json:"k"`
	Filter    Filter          `json:"filter,omitempty"`
	MinScore  *float64        `json:"min_score,omitempty"`
	Explain   bool            `json:"explain,omitempty"`
}

var errNotNumbers = errors.New("not a list of numbers")

// parseEmbedding reads a JSON array of numbers into float32s. raw is
// already valid JSON (the decoder checked it), so any element that starts
// like a number is a well-formed JSON number; every other element, and a
// number outside float32's range, is an error. null is no embedding.
func parseEmbedding(raw json.RawMessage) ([]float32, error) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	if b[0] != '[' {
		return nil, errNotNumbers
	}
	out := make([]float32, 0, bytes.Count(b, []byte{','})+1)
	i := skipSpace(b, 1)
	if b[i] == ']' {
		return out, nil
	}
	for {
		if c := b[i]; c != '-' && (c < '0' || c > '9') {
			return nil, errNotNumbers
		}
		j := i
		for j < len(b) && numberByte(b[j]) {
			j++
		}
		f, err := strconv.ParseFloat(string(b[i:j]), 32)
		if err != nil {
			return nil, err
		}
		out = append(out, float32(f))
		i = skipSpace(b, j)
		switch b[i] {
		case ']':
			return out, nil
		case ',':
			i = skipSpace(b, i+1)
		default:
			return nil, errNotNumbers
		}
	}
}

func numberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// checkNorm refuses a query vector whose cosine distance to stored vectors
// is undefined as pgvector 0.8.0 computes it (the only distance Search
// uses, <=>): cosine_distance sums the squares of each vector in float32,
// so a vector whose every square underflows, such as [1e-45, 0, 0], has a
// zero norm there although its elements are not all zero, and one whose
// sum overflows float32 has an infinite norm. Either way the distance to a
// stored vector is NaN, or a meaningless 0 or 2 where the similarity's
// division by zero (or by infinity) is clamped to [-1, 1]. (pgvector's L2
// distance <-> stays defined for any finite vectors; its inner product <#>
// is NaN when the float32 sum overflows both ways. Neither is used here.)
func checkNorm(v []float32) error {
	zero := true
	var sum float64
	for _, x := range v {
		// The conversion rounds to float32 as pgvector does, whether or
		// not the compiler fuses the multiplication into the sum.
		if float32(x*x) != 0 {
			zero = false
		}
		sum += float64(x) * float64(x)
	}
	switch {
	case zero:
		return &RequestError{Code: CodeInvalidEmbedding,
			Msg: "the embedding's norm is zero (in float32): its cosine distance to any vector is undefined"}
	case sum >= maxNormSquared:
		return &RequestError{Code: CodeInvalidEmbedding,
			Msg: "the embedding's norm overflows float32: its cosine distance to any vector is undefined"}
	}
	return nil
}

// maxNormSquared bounds a query's squared norm well below float32's range,
// so that no order of pgvector's float32 summation overflows.
const maxNormSquared = math.MaxFloat32 / 4
