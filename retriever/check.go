package retriever

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// Check refuses, with an *Error, a query Search would refuse before
// reading any row: k below 1, a collection the policy does not have, an
// embedding of another dimension than its column's (read from the catalog
// in db once per table and column), an empty one, or one without a cosine
// distance (see checkNorm). Search runs it first; a caller may run it
// earlier to refuse a bad query before other work of its own (the service
// does, before it checks the subject's claims). A dimension once read
// costs nothing.
func (s *Searcher) Check(ctx context.Context, db Batcher, p *filter.Policy, q Query) error {
	if q.K < 1 {
		return &Error{Code: CodeInvalidK, Msg: "k must be positive"}
	}
	res, ok := p.Set().Resources[q.Resource]
	if !ok {
		return &Error{Code: CodeUnknownCollection, Msg: fmt.Sprintf("unknown collection %q; this server has: %v", q.Resource, p.Set().Names)}
	}
	if err := s.checkDimension(ctx, db, res, q.Embedding); err != nil {
		return err
	}
	if len(q.Embedding) == 0 {
		return &Error{Code: CodeInvalidEmbedding, Msg: "the query has no embedding"}
	}
	return checkNorm(q.Embedding)
}

// checkDimension compares the vector's length with the column's dimension,
// read once per table and column from the catalog, in a batch after the
// request settings (a statement timeout, no JIT) as every statement of a
// search.
func (s *Searcher) checkDimension(ctx context.Context, db Batcher, res *policy.Resource, v []float32) error {
	key := res.Table + "." + res.Embedding
	dim, ok := s.dims.Load(key)
	if !ok {
		var typmod int
		b := &pgx.Batch{}
		b.Queue(requestSettingsSQL, timeoutSetting(s.cfg.StatementTimeout))
		b.Queue(`SELECT atttypmod FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`, res.Table, res.Embedding).
			QueryRow(func(row pgx.Row) error { return row.Scan(&typmod) })
		err := db.SendBatch(ctx, b).Close()
		if errors.Is(err, pgx.ErrNoRows) {
			return &Error{Code: CodeInternal, Msg: "the collection's table has no embedding column; run ragfence policy check --db", Err: err}
		}
		if err != nil {
			return classify(ctx, err, false)
		}
		dim = typmod
		s.dims.Store(key, dim)
	}
	if d := dim.(int); d > 0 && len(v) != d {
		return &Error{Code: CodeInvalidEmbedding, Msg: fmt.Sprintf("embedding has %d dimensions, the collection has %d", len(v), d)}
	}
	return nil
}

// checkNorm refuses a query vector with an element that is not a finite
// number (pgvector refuses NaN and infinity), or whose cosine distance to
// stored vectors is undefined as pgvector 0.8.0 computes it (the only
// distance Search uses, <=>): cosine_distance sums the squares of each
// vector in float32, so a vector whose every square underflows, such as
// [1e-45, 0, 0], has a zero norm there although its elements are not all
// zero, and one whose sum overflows float32 has an infinite norm. Either
// way the distance to a stored vector is NaN, or a meaningless 0 or 2 where
// the similarity's division by zero (or by infinity) is clamped to [-1, 1].
// (pgvector's L2 distance <-> stays defined for any finite vectors; its
// inner product <#> is NaN when the float32 sum overflows both ways. Neither
// is used here.)
func checkNorm(v []float32) error {
	zero := true
	var sum float64
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return &Error{Code: CodeInvalidEmbedding, Msg: fmt.Sprintf("embedding[%d] is not a finite number", i)}
		}
		// The conversion rounds to float32 as pgvector does, whether or
		// not the compiler fuses the multiplication into the sum.
		if float32(x*x) != 0 {
			zero = false
		}
		sum += float64(x) * float64(x)
	}
	switch {
	case zero:
		return &Error{Code: CodeInvalidEmbedding,
			Msg: "the embedding's norm is zero (in float32): its cosine distance to any vector is undefined"}
	case sum >= maxNormSquared:
		return &Error{Code: CodeInvalidEmbedding,
			Msg: "the embedding's norm overflows float32: its cosine distance to any vector is undefined"}
	}
	return nil
}

// maxNormSquared bounds a query's squared norm well below float32's range,
// so that no order of pgvector's float32 summation overflows.
const maxNormSquared = math.MaxFloat32 / 4
