package retriever

import (
	"strconv"
	"strings"

	sq "github.com/Masterminds/squirrel"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// templates caches the statements' text per request shape, so a search
// renders no SQL, only collects its values (squirrel's rendering was most
// of a search's in-process time). The key is everything the text is made
// of: the table and its columns, the fragment's and the returned columns'
// own SQL (already rendered by the fragment cache), the filter's
// (value-free) SQL, k, the over-fetch and whether min_score is set. So a
// reloaded policy, or any other change of the SQL, can never reuse a text.
var templates, _ = lru.New[string, statements](1024)

// searchStatements returns the search's statements for q, from templates
// when the shape was seen before.
func searchStatements(p *filter.Policy, frag *filter.Fragment, q Query, overfetch int) (statements, error) {
	res := p.Set().Resources[q.Resource]
	var cond sq.Sqlizer
	var filterSQL string
	var filterArgs []any
	if len(q.Filter) > 0 {
		var err error
		if cond, err = q.Filter.sqlizer(res, frag.Column); err != nil {
			return statements{}, err
		}
		if filterSQL, filterArgs, err = cond.ToSql(); err != nil {
			return statements{}, err
		}
	}
	key, err := templateKey(res, frag, filterSQL, q, overfetch)
	if err != nil {
		return statements{}, err
	}
	if t, ok := templates.Get(key); ok {
		return t.bind(frag, res.Content, res.Metadata, q, filterArgs), nil
	}
	st, err := buildStatements(p, frag, q, overfetch, cond)
	if err == nil {
		templates.Add(key, statements{index: st.index, exact: st.exact, permitted: st.permitted, table: st.table, k: st.k})
	}
	return st, err
}

func templateKey(res *policy.Resource, frag *filter.Fragment, filterSQL string, q Query, overfetch int) (string, error) {
	where, _, err := frag.ToSql()
	if err != nil {
		return "", err
	}
	content, _, err := frag.Column(res.Content).ToSql()
	if err != nil {
		return "", err
	}
	metadata, _, err := frag.Column(res.Metadata).ToSql()
	if err != nil {
		return "", err
	}
	return strings.Join([]string{res.QuotedTable(), res.ID, res.Embedding, content, metadata, where, filterSQL,
		strconv.Itoa(q.K), strconv.Itoa(overfetch), strconv.FormatBool(q.MinScore != nil)}, "\x00"), nil
}

// bind collects a request's values for the template's text, in the order
// buildStatements' squirrel builders place them (columns, WHERE, the
// fallback's count bound, ORDER BY; LIMIT is in the text).
// TestCachedStatementsMatchBuilt holds the two together.
func (t statements) bind(frag *filter.Fragment, content, metadata string, q Query, filterArgs []any) statements {
	vec := pgvector.NewVector(q.Embedding)
	k := uint64(q.K)
	cols := append(append([]any{vec}, frag.ColumnArgs(content)...), frag.ColumnArgs(metadata)...)
	t.permittedArgs = append(frag.Args(), filterArgs...)
	where := append(append([]any{}, t.permittedArgs...), minScoreArgs(vec, q.MinScore)...)
	ann := append(append([]any{}, cols...), where...)
	t.exactArgs = append(append([]any{}, ann...), vec)
	fallback := append(append(append([]any{}, ann...), k), vec)
	t.indexArgs = append(append(append(append([]any{}, ann...), k), fallback...), k)
	return t
}

func minScoreArgs(vec pgvector.Vector, min *float64) []any {
	if min == nil {
		return nil
	}
	return []any{vec, 1 - *min}
}

// statements are a search's SQL, values bound.
type statements struct {
	index, exact, permitted string
	table                   string // quoted, for its size
	k                       int
	indexArgs, exactArgs    []any
	permittedArgs           []any // the policy's and the filter's values only
}

// buildStatements builds the two ways to run a search and the statement
// whose row estimate chooses between them. The index plan is
//
//	WITH ann AS MATERIALIZED (permitted rows ORDER BY distance LIMIT k*overfetch)
//	SELECT ... FROM ann WHERE (SELECT count(*) FROM ann) >= k
//	UNION ALL
//	(permitted rows AND (SELECT count(*) FROM ann) < k ORDER BY distance + 0 LIMIT k)
//	ORDER BY distance LIMIT k
//
// ann is the (iterative, relaxed-order) index walk; when it stops short
// (hnsw.max_scan_tuples reached, or fewer than k rows permitted) the second
// arm, which the planner gates on a one-time filter and so never runs
// otherwise, reads the permitted rows exactly: "+ 0" keeps the vector index
// out of it. The outer ORDER BY re-sorts what relaxed order may have left
// out of order. Either way the statement returns k rows whenever k
// permitted rows exist. The exact plan is that second arm alone.
func buildStatements(p *filter.Policy, frag *filter.Fragment, q Query, overfetch int, filterCond sq.Sqlizer) (st statements, err error) {
	res := p.Set().Resources[q.Resource]
	col := func(name string) string { return alias + "." + pgx.Identifier{name}.Sanitize() }
	st.table = res.QuotedTable()
	from := st.table + " AS " + alias
	// Rows without an embedding have no distance: never results, and not
	// counted as permitted.
	hasEmbedding := col(res.Embedding) + " IS NOT NULL"
	permitted := sq.Select("1").From(from).Where(frag).Where(hasEmbedding)
	b := sq.Select().
		Column(sq.Expr(col(res.ID) + "::text AS id")).
		Column(sq.Expr(col(res.Embedding)+" <=> ? AS distance", pgvector.NewVector(q.Embedding))).
		Column(sq.Alias(frag.Column(res.Content), "content")).
		Column(sq.Alias(frag.Column(res.Metadata), "metadata")).
		From(from).
		Where(frag).
		Where(hasEmbedding)
	if filterCond != nil {
		b, permitted = b.Where(filterCond), permitted.Where(filterCond)
	}
	if st.permitted, st.permittedArgs, err = permitted.PlaceholderFormat(sq.Dollar).ToSql(); err != nil {
		return st, err
	}
	distance := sq.Expr(col(res.Embedding)+" <=> ?", pgvector.NewVector(q.Embedding))
	if q.MinScore != nil {
		b = b.Where(sq.Expr(col(res.Embedding)+" <=> ? <= ?", minScoreArgs(pgvector.NewVector(q.Embedding), q.MinScore)...))
	}
	st.k = q.K
	k := uint64(q.K)
	exactOrder := sq.Expr("(?) + 0", distance)
	if st.exact, st.exactArgs, err = b.OrderByClause(exactOrder).Limit(k).PlaceholderFormat(sq.Dollar).ToSql(); err != nil {
		return st, err
	}
	ann, annArgs, err := b.OrderBy("distance").Limit(k * uint64(max(overfetch, 1))).ToSql()
	if err != nil {
		return st, err
	}
	fallback, fallbackArgs, err := b.Where("(SELECT count(*) FROM ann) < ?", k).OrderByClause(exactOrder).Limit(k).ToSql()
	if err != nil {
		return st, err
	}
	sql := "WITH ann AS MATERIALIZED (" + ann + ")\n" +
		"SELECT id, distance, content, metadata FROM ann WHERE (SELECT count(*) FROM ann) >= ?\n" +
		"UNION ALL\n(" + fallback + ")\nORDER BY distance LIMIT ?"
	st.indexArgs = append(append(append(annArgs, k), fallbackArgs...), k)
	st.index, err = sq.Dollar.ReplacePlaceholders(sql)
	return st, err
}
