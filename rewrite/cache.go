package rewrite

import (
	"container/list"
	"strconv"
	"strings"
	"sync"
)

// DefaultCacheSize is how many statements a Rewriter remembers.
const DefaultCacheSize = 1024

// cache is a bounded LRU of rewritten statements, keyed by the exact SQL
// text, mode and argument count (the policy is fixed per Rewriter). Each
// entry holds one rewritten text per request shape: the shapes of the
// fragments it injected. Values are never cached, only where they go.
type cache struct {
	mu    sync.Mutex
	size  int
	ll    *list.List
	items map[string]*list.Element
}

type entry struct {
	key      string
	placed   []placement
	variants map[string]string // fragment shapes -> rewritten SQL
	refusal  *Error            // a refusal that does not depend on the request
}

func newCache(size int) *cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &cache{size: size, ll: list.New(), items: map[string]*list.Element{}}
}

func cacheKey(sql string, req Request) string {
	return strconv.Itoa(int(req.Mode)) + ":" + strconv.Itoa(req.NArgs) + ":" + strconv.FormatBool(req.Explain) + ":" + sql
}

func (c *cache) get(key string) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*entry), true
}

// variant returns e's rewritten SQL for the fragment shapes. It takes the
// lock: put adds variants to entries other requests are reading.
func (c *cache) variant(e *entry, shapes string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sql, ok := e.variants[shapes]
	return sql, ok
}

// put records a rewrite (or a refusal) under key.
func (c *cache) put(key string, placed []placement, shapes, sql string, refusal *Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*entry)
		if refusal == nil && len(e.variants) < 64 {
			e.variants[shapes] = sql
		}
		return
	}
	e := &entry{key: key, placed: placed, variants: map[string]string{}, refusal: refusal}
	if refusal == nil {
		e.variants[shapes] = sql
	}
	c.items[key] = c.ll.PushFront(e)
	if c.ll.Len() > c.size {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*entry).key)
	}
}

// Len is how many statements are cached.
func (c *cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// bind compiles the fragments of a cached entry's placements for req and
// returns them, their arguments in placeholder order and their shapes.
func (rw *Rewriter) bind(placed []placement, src Fragments) ([]Fragment, []any, string, error) {
	frags := make([]Fragment, len(placed))
	var args []any
	var shapes strings.Builder
	for i, p := range placed {
		f, err := fragment(p.res, src)
		if err != nil {
			return nil, nil, "", &Error{Code: CodePolicy, Msg: err.Error(), Position: -1, Err: err}
		}
		frags[i] = f
		args = append(args, rw.placementArgs(p, f)...)
		shapes.WriteString(f.Shape())
		shapes.WriteByte(0)
	}
	return frags, args, shapes.String(), nil
}

// placementArgs are the arguments of subquery(res, f, ...) in placeholder
// order: the masked columns' (in the select list) then the fragment's.
func (rw *Rewriter) placementArgs(p placement, f Fragment) []any {
	var args []any
	if len(f.Masked()) > 0 {
		for _, col := range rw.columnNames(p.res) {
			args = append(args, f.ColumnArgs(col)...)
		}
	}
	if p.explain {
		args = append(args, f.GrantedArgs()...)
	}
	return append(args, f.Args()...)
}
