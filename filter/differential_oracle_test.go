package filter_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/ragfence/ragfence/policy"
)

// ---------------------------------------------------------------------------
// SQL three-valued logic.

type tri int8

const (
	tNull tri = iota
	tFalse
	tTrue
)

func (x tri) String() string { return [...]string{"NULL", "FALSE", "TRUE"}[x] }

func triOf(b bool) tri {
	if b {
		return tTrue
	}
	return tFalse
}

// and3 is SQL AND: FALSE wins, then NULL.
func and3(xs ...tri) tri {
	out := tTrue
	for _, x := range xs {
		if x == tFalse {
			return tFalse
		}
		if x == tNull {
			out = tNull
		}
	}
	return out
}

// or3 is SQL OR: TRUE wins, then NULL; no operand is FALSE.
func or3(xs ...tri) tri {
	out := tFalse
	for _, x := range xs {
		if x == tTrue {
			return tTrue
		}
		if x == tNull {
			out = tNull
		}
	}
	return out
}

func not3(x tri) tri {
	switch x {
	case tTrue:
		return tFalse
	case tFalse:
		return tTrue
	}
	return tNull
}

func eqS(a *string, b string) tri {
	if a == nil {
		return tNull
	}
	return triOf(*a == b)
}

func eqSS(a, b *string) tri {
	if a == nil || b == nil {
		return tNull
	}
	return triOf(*a == *b)
}

func neS(a *string, b string) tri { return not3(eqS(a, b)) }

func inS(a *string, list ...string) tri {
	if a == nil {
		return tNull
	}
	return triOf(slices.Contains(list, *a))
}

// cmpI compares two nullable integers with op.
func cmpI(a, b *int64, op string) tri {
	if a == nil || b == nil {
		return tNull
	}
	switch op {
	case ">":
		return triOf(*a > *b)
	case ">=":
		return triOf(*a >= *b)
	case "<":
		return triOf(*a < *b)
	}
	panic(op)
}

func lit(n int64) *int64 { return &n }

// overlap is text[] && text[]: NULL for a NULL array (no NULL elements here).
func overlap(a []string, aNull bool, b []string) tri {
	if aNull {
		return tNull
	}
	for _, x := range a {
		if slices.Contains(b, x) {
			return tTrue
		}
	}
	return tFalse
}

// ---------------------------------------------------------------------------
// Rows.

type diffDoc struct {
	ID             int
	Tenant         *string
	Owner          *string
	Visibility     *string
	ACL            []string
	ACLNull        bool
	Classification *int64
	Source         *string
	Region         *string
	Meta           *diffMeta // nil: SQL NULL
	Contact        *string
}

// diffMeta is a jsonb value, kept structured so the evaluator never parses
// JSON: an object, an array of strings, or a string scalar.
type diffMeta struct {
	Kind    string // "object", "array", "scalar"
	Lang    any    // object: absent (omitLang), nil (JSON null), string or float64
	HasLang bool
	Embargo bool // object: has the key "embargo" (its value is true or null)
	Elems   []string
	Scalar  string
}

func (m *diffMeta) JSON() string {
	var v any
	switch m.Kind {
	case "object":
		o := map[string]any{"n": 1}
		if m.HasLang {
			o["lang"] = m.Lang
		}
		if m.Embargo {
			o["embargo"] = nil
			if m.Scalar == "true" {
				o["embargo"] = true
			}
		}
		v = o
	case "array":
		v = m.Elems
	default:
		v = m.Scalar
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// langText is meta->>'lang'.
func langText(m *diffMeta) *string {
	if m == nil || m.Kind != "object" || !m.HasLang || m.Lang == nil {
		return nil
	}
	switch x := m.Lang.(type) {
	case string:
		return &x
	case float64:
		s := fmt.Sprint(x)
		return &s
	}
	panic(m.Lang)
}

// hasKey is jsonb ? text: a top-level key, array element or the string scalar.
func hasKey(m *diffMeta, k string) tri {
	if m == nil {
		return tNull
	}
	switch m.Kind {
	case "object":
		return triOf(k == "embargo" && m.Embargo)
	case "array":
		return triOf(slices.Contains(m.Elems, k))
	}
	return triOf(m.Scalar == k)
}

type diffGrant struct {
	Tenant *string
	DocID  int
	User   *string
}

var (
	diffTenants = []string{"acme", "globex", "initech"}
	diffUsers   = []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11"}
	diffGroups  = []string{"eng", "sales", "hr", "legal", "ops"}
)

func sp(s string) *string { return &s }

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func chance(r *rand.Rand, p float64) bool { return r.Float64() < p }

func subset(r *rand.Rand, xs []string, p float64) []string {
	out := []string{}
	for _, x := range xs {
		if chance(r, p) {
			out = append(out, x)
		}
	}
	return out
}

func genDocs(r *rand.Rand, n int) []*diffDoc {
	docs := make([]*diffDoc, 0, n)
	for id := 1; id <= n; id++ {
		d := &diffDoc{ID: id}
		if !chance(r, 0.01) {
			d.Tenant = sp(pick(r, diffTenants...))
		}
		if !chance(r, 0.03) {
			d.Owner = sp(pick(r, diffUsers...))
		}
		if !chance(r, 0.02) {
			d.Visibility = sp(pick(r, "public", "internal", "private", "restricted"))
		}
		if chance(r, 0.08) {
			d.ACLNull = true
		} else {
			d.ACL = subset(r, diffGroups, 0.2)
		}
		if !chance(r, 0.15) {
			d.Classification = lit(int64(r.IntN(4)))
		}
		if !chance(r, 0.2) {
			d.Source = sp(pick(r, "wiki", "handbook", "email", "ticket", "slack"))
		}
		if !chance(r, 0.2) {
			d.Region = sp(pick(r, "eu", "us", "apac"))
		}
		switch x := r.Float64(); {
		case x < 0.05: // SQL NULL
		case x < 0.10:
			d.Meta = &diffMeta{Kind: "array", Elems: subset(r, []string{"embargo", "lang", "en", "x"}, 0.4)}
		case x < 0.13:
			d.Meta = &diffMeta{Kind: "scalar", Scalar: pick(r, "embargo", "en", "lang")}
		default:
			m := &diffMeta{Kind: "object", HasLang: true}
			switch y := r.Float64(); {
			case y < 0.15:
				m.HasLang = false
			case y < 0.25:
				m.Lang = nil
			case y < 0.65:
				m.Lang = "en"
			case y < 0.85:
				m.Lang = "de"
			case y < 0.90:
				m.Lang = "EN"
			default:
				m.Lang = float64(1)
			}
			m.Embargo = chance(r, 0.08)
			m.Scalar = pick(r, "true", "null")
			d.Meta = m
		}
		if !chance(r, 0.05) {
			d.Contact = sp(fmt.Sprintf("c%d@example.com", id))
		}
		docs = append(docs, d)
	}
	return docs
}

func genGrants(r *rand.Rand, docs []*diffDoc, n int) []diffGrant {
	out := make([]diffGrant, 0, n)
	for range n {
		id := 1 + r.IntN(len(docs)+20) // some point at no document
		g := diffGrant{DocID: id, User: sp(pick(r, diffUsers...))}
		var own *string
		if id <= len(docs) {
			own = docs[id-1].Tenant
		}
		switch x := r.Float64(); {
		case x < 0.05: // NULL tenant: matches nobody
		case x < 0.30 || own == nil: // another (or any) tenant: must not grant
			g.Tenant = sp(pick(r, diffTenants...))
		default:
			g.Tenant = own
		}
		if chance(r, 0.03) {
			g.User = nil
		}
		out = append(out, g)
	}
	return out
}

// ---------------------------------------------------------------------------
// Requests and the evaluator.

type diffReq struct {
	label   string
	subject *policy.Subject
	ctx     policy.Context
	agent   string
	// parent is the request this one was derived from; subsetOfParent says
	// which way the property goes (child ⊆ parent, or parent ⊆ child).
	parent         int
	childIsSubset  bool
	withOtherAlias bool
}

func (q *diffReq) String() string {
	s := "<nil subject>"
	if q.subject != nil {
		b, _ := json.Marshal(q.subject)
		s = string(b)
	}
	return fmt.Sprintf("%s: subject=%s time=%v ip=%v agent=%q", q.label, s, q.ctx.Time, q.ctx.IP, q.agent)
}

// diffEnv is what the evaluator knows about a request; a nil pointer is an
// attribute the request does not carry.
type diffEnv struct {
	tenant    string
	id        *string
	roles     []string
	groups    []string
	clearance *int64
	hour      *int64
	ip        *netip.Addr
	agent     string
}

func envOf(q *diffReq, berlin *time.Location) *diffEnv {
	s := q.subject
	e := &diffEnv{tenant: s.Tenant, roles: s.Roles, groups: s.Groups, agent: q.agent}
	if s.ID != "" {
		e.id = sp(s.ID)
	}
	switch c := s.Attributes["clearance"].(type) {
	case nil:
	case int64:
		e.clearance = lit(c)
	case int:
		e.clearance = lit(int64(c))
	case float64:
		e.clearance = lit(int64(c))
	default:
		panic(fmt.Sprintf("clearance %T", c))
	}
	if !q.ctx.Time.IsZero() {
		e.hour = lit(int64(q.ctx.Time.In(berlin).Hour()))
	}
	if q.ctx.IP.IsValid() {
		ip := q.ctx.IP
		e.ip = &ip
	}
	return e
}

func (e *diffEnv) has(attr string) bool {
	switch attr {
	case "subject.id":
		return e.id != nil
	case "subject.clearance":
		return e.clearance != nil
	case "context.hour":
		return e.hour != nil
	case "context.ip":
		return e.ip != nil
	}
	panic(attr)
}

type diffWorld struct {
	docs     []*diffDoc
	byID     map[int]*diffDoc
	grantsOf map[int][]diffGrant
}

type diffRule struct {
	name  string
	needs []string // subject/context attributes beyond tenant, roles and groups
	eval  func(w *diffWorld, d *diffDoc, e *diffEnv) tri
}

// inTenEight is inet << '10.0.0.0/8': an IPv4 address (family 4, /32) in
// 10/8. An IPv6 address is another family, but ragfence documents that an
// IPv4-mapped client address (::ffff:a.b.c.d, as dual-stack sockets report
// IPv4 clients) counts as the IPv4 address.
func inTenEight(ip *netip.Addr) tri {
	if ip == nil {
		return tNull
	}
	u := ip.Unmap()
	return triOf(u.Is4() && u.As4()[0] == 10)
}

var diffAllow = []diffRule{
	{"owner", []string{"subject.id"}, func(_ *diffWorld, d *diffDoc, e *diffEnv) tri {
		return eqSS(d.Owner, e.id)
	}},
	{"group-acl", nil, func(_ *diffWorld, d *diffDoc, e *diffEnv) tri {
		return overlap(d.ACL, d.ACLNull, e.groups)
	}},
	{"tenant-admin", nil, func(_ *diffWorld, _ *diffDoc, e *diffEnv) tri {
		return triOf(slices.Contains(e.roles, "admin"))
	}},
	{"shared-with-me", []string{"subject.id"}, func(w *diffWorld, d *diffDoc, e *diffEnv) tri {
		// EXISTS is never NULL; the relation is restricted to the subject's tenant.
		for _, g := range w.grantsOf[d.ID] {
			if and3(eqS(g.Tenant, e.tenant), eqSS(g.User, e.id)) == tTrue {
				return tTrue
			}
		}
		return tFalse
	}},
	{"public-english", nil, func(_ *diffWorld, d *diffDoc, _ *diffEnv) tri {
		return and3(eqS(d.Visibility, "public"), eqS(langText(d.Meta), "en"))
	}},
	{"published-sources", nil, func(_ *diffWorld, d *diffDoc, _ *diffEnv) tri {
		return and3(inS(d.Source, "wiki", "handbook"), neS(d.Visibility, "private"))
	}},
	{"office-hours", []string{"context.hour"}, func(_ *diffWorld, d *diffDoc, e *diffEnv) tri {
		return and3(eqS(d.Visibility, "internal"), and3(not3(cmpI(e.hour, lit(9), "<")), not3(cmpI(e.hour, lit(17), ">"))))
	}},
	{"eu-office-network", []string{"context.ip"}, func(_ *diffWorld, d *diffDoc, e *diffEnv) tri {
		return and3(eqS(d.Region, "eu"), inTenEight(e.ip))
	}},
}

var diffDeny = []diffRule{
	{"above-clearance", []string{"subject.clearance"}, func(_ *diffWorld, d *diffDoc, e *diffEnv) tri {
		return cmpI(d.Classification, e.clearance, ">")
	}},
	{"embargoed", nil, func(_ *diffWorld, d *diffDoc, _ *diffEnv) tri {
		return hasKey(d.Meta, "embargo")
	}},
}

var diffAgents = map[string]struct{ allow, deny []diffRule }{
	"summarizer": {
		allow: []diffRule{{"public-or-wiki", nil, func(_ *diffWorld, d *diffDoc, _ *diffEnv) tri {
			return or3(eqS(d.Visibility, "public"), eqS(d.Source, "wiki"))
		}}},
		deny: []diffRule{{"secret", nil, func(_ *diffWorld, d *diffDoc, _ *diffEnv) tri {
			return cmpI(d.Classification, lit(2), ">=")
		}}},
	},
	"night-bot": {
		allow: []diffRule{{"off-hours", []string{"context.hour"}, func(_ *diffWorld, _ *diffDoc, e *diffEnv) tri {
			return or3(cmpI(lit(9), e.hour, ">"), cmpI(e.hour, lit(17), ">"))
		}}},
	},
}

var diffMask = diffRule{"mask contact", []string{"subject.id"}, func(_ *diffWorld, d *diffDoc, e *diffEnv) tri {
	return or3(eqSS(d.Owner, e.id), and3(triOf(slices.Contains(e.roles, "pii-reader")), neS(d.Region, "us")))
}}

func (e *diffEnv) active(r diffRule) bool {
	for _, n := range r.needs {
		if !e.has(n) {
			return false
		}
	}
	return true
}

// allowOf: an inactive allow grants nothing.
func allowOf(rs []diffRule, w *diffWorld, d *diffDoc, e *diffEnv) tri {
	var xs []tri
	for _, r := range rs {
		if e.active(r) {
			xs = append(xs, r.eval(w, d, e))
		}
	}
	return or3(xs...)
}

// denyOf: an inactive deny denies every row.
func denyOf(rs []diffRule, w *diffWorld, d *diffDoc, e *diffEnv) tri {
	var xs []tri
	for _, r := range rs {
		if e.active(r) {
			xs = append(xs, r.eval(w, d, e))
		} else {
			xs = append(xs, tTrue)
		}
	}
	return or3(xs...)
}

// visible is the row's WHERE outcome; only TRUE selects the row.
func (w *diffWorld) visible(d *diffDoc, e *diffEnv) bool {
	parts := []tri{eqS(d.Tenant, e.tenant), allowOf(diffAllow, w, d, e), not3(denyOf(diffDeny, w, d, e))}
	if e.agent != "" {
		g := diffAgents[e.agent]
		parts = append(parts, allowOf(g.allow, w, d, e), not3(denyOf(g.deny, w, d, e)))
	}
	return and3(parts...) == tTrue
}

// staticallyDenied says whether no row can be visible whatever the data: an
// inactive deny, or no active allow (of the user or of the agent's grant).
func staticallyDenied(e *diffEnv) bool {
	activeAllow := func(rs []diffRule) bool {
		return slices.ContainsFunc(rs, e.active)
	}
	inactiveDeny := func(rs []diffRule) bool {
		return slices.ContainsFunc(rs, func(r diffRule) bool { return !e.active(r) })
	}
	if !activeAllow(diffAllow) || inactiveDeny(diffDeny) {
		return true
	}
	if e.agent != "" {
		g := diffAgents[e.agent]
		return !activeAllow(g.allow) || inactiveDeny(g.deny)
	}
	return false
}

// contactOf is the masked column's expected value.
func (w *diffWorld) contactOf(d *diffDoc, e *diffEnv) *string {
	if e.active(diffMask) && diffMask.eval(w, d, e) == tTrue {
		return d.Contact
	}
	return nil
}
