package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/ragfence/ragfence/retriever"
)

// wireQuery is retriever.Query as it arrives: the embedding is parsed by
// parseEmbedding rather than by encoding/json's reflection, which was half
// of a request's in-process time for 384 floats.
type wireQuery struct {
	Resource  string           `json:"collection"`
	Embedding json.RawMessage  `json:"embedding,omitempty"`
	Text      string           `json:"query,omitempty"`
	K         json.RawMessage  `json:"k"` // absent or null: the default; anything but a whole number >= 1 is refused
	Filter    retriever.Filter `json:"filter,omitempty"`
	MinScore  *float64         `json:"min_score,omitempty"`
	Explain   bool             `json:"explain,omitempty"`
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
