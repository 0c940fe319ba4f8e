package retriever

import "github.com/ragfence/ragfence/filter"

// SearchStatement is what Search builds before it touches the database: the
// policy fragment, then the search statement and its arguments. It exists
// for BenchmarkSearchQueryBuilding and calls search.go's unexported builder,
// so when that builder changes this is the one place to adapt.
func SearchStatement(p *filter.Policy, req filter.Request, q Query) (string, []any, error) {
	req.Alias = alias
	frag, err := p.Fragment(q.Resource, req)
	if err != nil {
		return "", nil, err
	}
	st, err := searchStatements(p, frag, q, DefaultOverfetch)
	return st.index, st.indexArgs, err
}
