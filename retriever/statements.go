package retriever

import (
	"strconv"
	"strings"

	sq "github.com/Masterminds/squirrel"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/policy"
)

// statements returns the search's statements for q, from the searcher's
// templates when the shape was seen before. The templates cache the text
// per request shape, so a search renders no SQL, only collects its values
// (squirrel's rendering was most of a search's in-process time). The key is
// everything the text is made of: the table and its columns, the
// fragment's and the returned columns' own SQL (already rendered by the
// fragment cache), the filter's (value-free) SQL, k, the over-fetch and
// whether min_score is set. So a reloaded policy, or any other change of
// the SQL, can never reuse a text.
func (s *Searcher) statements(p *filter.Policy, frag *filter.Fragment, q Query, overfetch int) (statements, error) {
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
	if t, ok := s.templates.Get(key); ok {
		return t.bind(frag, res.Content, res.Metadata, q, filterArgs), nil
	}
	st, err := buildStatements(p, frag, q, overfetch, cond)
	if err == nil {
		s.templates.Add(key, statements{index: st.index, exact: st.exact, permitted: st.permitted, table: st.table, k: st.k})
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
	return strings.Join([]string{res.QuotedTable(), res.ID, res.Embedding, res.Document, content, metadata, where, filterSQL,
		strconv.Itoa(q.K), strconv.Itoa(overfetch), strconv.FormatBool(q.MinScore != nil), strconv.FormatBool(q.Explain)}, "\x00"), nil
}

// bind collects a request's values for the template's text, in the order
// buildStatements' squirrel builders place them (columns, WHERE, the
// fallback's count bound, ORDER BY; LIMIT is in the text).
// TestCachedStatementsMatchBuilt holds the two together.
func (t statements) bind(frag *filter.Fragment, content, metadata string, q Query, filterArgs []any) statements {
	vec := pgvector.NewVector(q.Embedding)
	k := uint64(q.K)
	cols := append(append([]any{vec}, frag.ColumnArgs(content)...), frag.ColumnArgs(metadata)...)
	if q.Explain {
		cols = append(cols, frag.GrantedArgs()...)
	}
	t.permittedArgs = append(frag.Args(), filterArgs...)
	where := append(append([]any{}, t.permittedArgs...), minScoreArgs(vec, q)...)
	ann := append(append([]any{}, cols...), where...)
	t.exactArgs = append(append([]any{}, ann...), vec)
	fallback := append(append(append([]any{}, ann...), k), vec)
	t.indexArgs = append(append(append(append([]any{}, ann...), k), fallback...), k)
	return t
}

// minScoreCondition keeps the rows at most minScoreArgs' distance from the
// query. It is in WHERE, so it may run before the policy's conditions on
// rows the subject may not see, and must not raise: pgvector raises for
// vectors of different dimensions, which a column declared without one
// may hold, so the distance is computed only when they agree (CASE
// evaluates its branch only then). A NaN distance is not <= any number.
func minScoreCondition(embedding string) string {
	return "CASE WHEN vector_dims(" + embedding + ") = ? THEN " + embedding + " <=> ? <= ? END"
}

// minScoreArgs are minScoreCondition's values: the query's dimension, the
// query and the largest distance kept, 1 - min_score.
func minScoreArgs(vec pgvector.Vector, q Query) []any {
	if q.MinScore == nil {
		return nil
	}
	return []any{len(q.Embedding), vec, 1 - *q.MinScore}
}

// definedOnly keeps the rows of sql, a search arm ending in ORDER BY
// distance LIMIT n, whose distance is a number. pgvector's cosine distance
// is NaN for a stored vector of zero norm in float32 (and one whose norm
// overflows it); the HNSW index leaves zero vectors out of its graph, but
// the exact read meets them. PostgreSQL sorts NaN after every number, so
// the arm's first n rows hold every defined row that any n rows could, and
// dropping NaN after the LIMIT returns the nearest defined rows. The
// condition reads the arm's own column, so the distance is not computed
// again, and being outside the arm it cannot change how the arm is
// planned (a condition on the distance inside it moves the planner off the
// HNSW index).
func definedOnly(sql string) string {
	return "SELECT id, distance, content, metadata, rules, document FROM (" + sql + ") AS arm WHERE distance <> 'NaN'::float8"
}

// rulesColumn is the allow rules that let the row in, when the query asks
// to explain (computed on the rows the search returns), else a NULL of the
// same type.
func rulesColumn(frag *filter.Fragment, explain bool) sq.Sqlizer {
	if !explain {
		return sq.Expr("NULL::pg_catalog.text[] AS rules")
	}
	return sq.Alias(frag.Granted(), "rules")
}

// documentColumn is the row's document as text, or NULL for a resource
// that names none.
func documentColumn(res *policy.Resource, col func(string) string) string {
	if res.Document == "" {
		return "NULL::pg_catalog.text AS document"
	}
	return col(res.Document) + "::pg_catalog.text AS document"
}

// statements are a search's SQL, values bound.
type statements struct {
	index, exact, permitted string
	table                   string // quoted, for its partitions' sizes
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
// out of order. Both arms keep only rows whose distance is a number
// (definedOnly), so ann counts only those. Either way the statement
// returns k rows whenever k permitted rows with a distance exist. The
// exact plan is that second arm alone.
func buildStatements(p *filter.Policy, frag *filter.Fragment, q Query, overfetch int, filterCond sq.Sqlizer) (st statements, err error) {
	res := p.Set().Resources[q.Resource]
	col := func(name string) string { return alias + "." + policy.QuoteIdent(name) }
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
		Column(rulesColumn(frag, q.Explain)).
		Column(sq.Expr(documentColumn(res, col))).
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
		b = b.Where(sq.Expr(minScoreCondition(col(res.Embedding)), minScoreArgs(pgvector.NewVector(q.Embedding), q)...))
	}
	st.k = q.K
	k := uint64(q.K)
	exactOrder := sq.Expr("(?) + 0", distance)
	exact, exactArgs, err := b.OrderByClause(exactOrder).Limit(k).ToSql()
	if err != nil {
		return st, err
	}
	if st.exact, err = sq.Dollar.ReplacePlaceholders(definedOnly(exact)); err != nil {
		return st, err
	}
	st.exactArgs = exactArgs
	ann, annArgs, err := b.OrderBy("distance").Limit(k * uint64(max(overfetch, 1))).ToSql()
	if err != nil {
		return st, err
	}
	fallback, fallbackArgs, err := b.Where("(SELECT count(*) FROM ann) < ?", k).OrderByClause(exactOrder).Limit(k).ToSql()
	if err != nil {
		return st, err
	}
	sql := "WITH ann AS MATERIALIZED (" + definedOnly(ann) + ")\n" +
		"SELECT id, distance, content, metadata, rules, document FROM ann WHERE (SELECT count(*) FROM ann) >= ?\n" +
		"UNION ALL\n(" + definedOnly(fallback) + ")\nORDER BY distance LIMIT ?"
	st.indexArgs = append(append(append(annArgs, k), fallbackArgs...), k)
	st.index, err = sq.Dollar.ReplacePlaceholders(sql)
	return st, err
}
