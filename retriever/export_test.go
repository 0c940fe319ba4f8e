package retriever

import (
	sq "github.com/Masterminds/squirrel"

	"github.com/ragfence/ragfence/filter"
)

// SearchStatement is what Search builds before it touches the database: the
// policy fragment, then the search statement and its arguments, through the
// searcher's template cache. It exists for BenchmarkSearchQueryBuilding and
// calls search.go's unexported builder, so when that builder changes this is
// the one place to adapt.
func (s *Searcher) SearchStatement(p *filter.Policy, req filter.Request, q Query) (string, []any, error) {
	req.Alias = alias
	frag, err := p.Fragment(q.Resource, req)
	if err != nil {
		return "", nil, err
	}
	st, err := s.statements(p, frag, q, DefaultOverfetch)
	return st.index, st.indexArgs, err
}

// Statements is a search's statements, as sent, for tests.
type Statements struct {
	Index, Exact, Permitted          string
	IndexArgs, ExactArgs, PermitArgs []any
}

// CachedAndBuilt returns q's statements twice: through the searcher's
// template cache (after priming it with primer, a query for another
// subject) and freshly rendered by squirrel.
func (s *Searcher) CachedAndBuilt(p *filter.Policy, req filter.Request, q Query, primerReq filter.Request, primer Query) (cached, built Statements, err error) {
	primerReq.Alias = alias
	primerFrag, err := p.Fragment(primer.Resource, primerReq)
	if err != nil {
		return cached, built, err
	}
	if _, err := s.statements(p, primerFrag, primer, DefaultOverfetch); err != nil {
		return cached, built, err
	}
	req.Alias = alias
	frag, err := p.Fragment(q.Resource, req)
	if err != nil {
		return cached, built, err
	}
	c, err := s.statements(p, frag, q, DefaultOverfetch)
	if err != nil {
		return cached, built, err
	}
	var cond sq.Sqlizer
	if len(q.Filter) > 0 {
		if cond, err = q.Filter.sqlizer(p.Set().Resources[q.Resource], frag.Column); err != nil {
			return cached, built, err
		}
	}
	b, err := buildStatements(p, frag, q, DefaultOverfetch, cond)
	export := func(s statements) Statements {
		return Statements{s.index, s.exact, s.permitted, s.indexArgs, s.exactArgs, s.permittedArgs}
	}
	return export(c), export(b), err
}
