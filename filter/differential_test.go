package filter_test

// Differential test: for generated rows and requests, the rows a compiled
// fragment selects on the real database must be exactly the rows an
// independent evaluator says are visible. The evaluator below is plain Go
// over the same rows, written by hand from the policy's YAML text and
// PostgreSQL's three-valued logic; it calls nothing of package filter.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
)

// diffPolicy is the policy under test. Every rule has a hand-written Go twin
// in diffAllow, diffDeny, diffAgents and diffMask below.
const diffPolicy = `
version: 1
subject:
  attributes:
    clearance: integer
context:
  timezone: Europe/Berlin
resources:
  docs:
    table: docs
    tenant: tenant_id
    relations:
      grants: {table: grants, tenant: tenant_id}
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: group-acl
        when: acl_groups && subject.groups
      - name: tenant-admin
        when: "'admin' = ANY (subject.roles)"
      - name: shared-with-me
        when: EXISTS (SELECT 1 FROM grants g WHERE g.doc_id = docs.id AND g.user_id = subject.id)
      - name: public-english
        when: visibility = 'public' AND meta->>'lang' = 'en'
      - name: published-sources
        when: source IN ('wiki', 'handbook') AND visibility <> 'private'
      - name: office-hours
        when: visibility = 'internal' AND context.hour BETWEEN 9 AND 17
      - name: eu-office-network
        when: region = 'eu' AND context.ip << '10.0.0.0/8'::inet
    deny:
      - name: above-clearance
        when: classification > subject.clearance
      - name: embargoed
        when: "meta ? 'embargo'"
    mask:
      - column: contact
        unless: owner_id = subject.id OR ('pii-reader' = ANY (subject.roles) AND region <> 'us')
    agents:
      summarizer:
        allow:
          - name: public-or-wiki
            when: visibility = 'public' OR source = 'wiki'
        deny:
          - name: secret
            when: classification >= 2
      night-bot:
        allow:
          - name: off-hours
            when: context.hour < 9 OR context.hour > 17
`

const diffSchema = `
CREATE TABLE docs (
	id int PRIMARY KEY, tenant_id text, owner_id text, visibility text, acl_groups text[],
	classification int NULL, source text NULL, region text NULL, meta jsonb, contact text);
CREATE TABLE grants (tenant_id text, doc_id int, user_id text);
`

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

// ---------------------------------------------------------------------------
// Request generation.

func genRequests(r *rand.Rand, n int) []*diffReq {
	var out []*diffReq
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		s := &policy.Subject{Attributes: map[string]any{}}
		switch x := r.Float64(); {
		case x < 0.03:
			s.Tenant = "" // no_subject
		case x < 0.13:
			s.Tenant = "hooli" // a tenant without rows
		default:
			s.Tenant = pick(r, diffTenants...)
		}
		if !chance(r, 0.1) {
			s.ID = pick(r, diffUsers...)
		}
		s.Roles = subset(r, []string{"admin", "pii-reader", "editor"}, 0.25)
		if chance(r, 0.2) {
			s.Roles = nil
		}
		s.Groups = subset(r, diffGroups, 0.25)
		switch x := r.Float64(); {
		case x < 0.2: // absent
		case x < 0.3:
			s.Attributes["clearance"] = nil // a JSON null: absent too
		case x < 0.4:
			s.Attributes["clearance"] = r.IntN(4) // int, as Go callers pass it
		case x < 0.5:
			s.Attributes["clearance"] = float64(r.IntN(4)) // as JSON decoding gives it
		default:
			s.Attributes["clearance"] = int64(r.IntN(4))
		}
		q := &diffReq{label: fmt.Sprintf("req%d", i), subject: s, parent: -1, withOtherAlias: i%5 == 0}
		if chance(r, 0.7) {
			q.ctx.Time = base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))).Truncate(time.Second)
		}
		switch x := r.Float64(); {
		case x < 0.3: // no IP
		case x < 0.65:
			q.ctx.IP = netip.AddrFrom4([4]byte{10, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		case x < 0.85:
			q.ctx.IP = netip.AddrFrom4([4]byte{pick(r, byte(192), 11, 9, 172), 168, byte(r.IntN(256)), 1})
		case x < 0.95:
			q.ctx.IP = netip.MustParseAddr(pick(r, "fd00::1", "2001:db8::10", "::1"))
		default:
			q.ctx.IP = netip.MustParseAddr("::ffff:10.1.2.3") // IPv4-mapped: family 6
		}
		switch x := r.Float64(); {
		case x < 0.5:
		case x < 0.7:
			q.agent = "summarizer"
		case x < 0.85:
			q.agent = "night-bot"
		default:
			q.agent = pick(r, "rogue", "Summarizer", "summarizer ") // no grant
		}
		out = append(out, q)
	}
	out = append(out, &diffReq{label: "nil-subject", parent: -1})
	return out
}

func cloneReq(q *diffReq, label string) *diffReq {
	c := *q
	s := *q.subject
	s.Attributes = maps.Clone(q.subject.Attributes)
	c.subject = &s
	c.label = q.label + "/" + label
	c.withOtherAlias = false
	return &c
}

// withVariants appends, for each request, variants that drop one thing:
// each must see no more than its parent (an agent's parent, the user
// without the agent, at least as much as the agent).
func withVariants(reqs []*diffReq) []*diffReq {
	out := slices.Clone(reqs)
	for i, q := range reqs {
		if q.subject == nil || q.subject.Tenant == "" {
			continue
		}
		add := func(c *diffReq, childIsSubset bool) {
			c.parent, c.childIsSubset = i, childIsSubset
			out = append(out, c)
		}
		if _, granted := diffAgents[q.agent]; granted {
			c := cloneReq(q, "no-agent")
			c.agent = ""
			add(c, false) // parent (agent) ⊆ child (user)
		}
		if v, ok := q.subject.Attributes["clearance"]; ok && v != nil {
			c := cloneReq(q, "no-clearance")
			delete(c.subject.Attributes, "clearance")
			add(c, true)
			c = cloneReq(q, "null-clearance")
			c.subject.Attributes["clearance"] = nil
			add(c, true)
		}
		if q.subject.ID != "" {
			c := cloneReq(q, "no-id")
			c.subject.ID = ""
			add(c, true)
		}
		if !q.ctx.Time.IsZero() {
			c := cloneReq(q, "no-time")
			c.ctx.Time = time.Time{}
			add(c, true)
		}
		if q.ctx.IP.IsValid() {
			c := cloneReq(q, "no-ip")
			c.ctx.IP = netip.Addr{}
			add(c, true)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The test.

type diffResult struct {
	ran bool
	ids []int
}

func TestDifferential(t *testing.T) {
	t.Parallel()
	start := time.Now()
	pool, _ := testdb.Schema(t)

	set, err := policy.Parse(policy.Source{Name: "differential.yaml", Data: []byte(diffPolicy)})
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	pol, err := filter.Compile(set)
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(20250611, 7))
	docs := genDocs(rng, 500)
	grants := genGrants(rng, docs, 400)
	w := &diffWorld{docs: docs, byID: map[int]*diffDoc{}, grantsOf: map[int][]diffGrant{}}
	for _, d := range docs {
		w.byID[d.ID] = d
	}
	for _, g := range grants {
		w.grantsOf[g.DocID] = append(w.grantsOf[g.DocID], g)
	}
	loadDiffData(t, pool, docs, grants)

	reqs := withVariants(genRequests(rng, 200))
	results := make([]diffResult, len(reqs))
	var queries, comparisons, maskChecks, failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 15 {
			t.Errorf(format, args...)
		}
	}

	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				q := reqs[i]
				ids, ok := runDiffRequest(t, pool, pol, w, berlin, q, &queries, &comparisons, &maskChecks, fail)
				results[i] = diffResult{ran: ok, ids: ids}
			}
		})
	}
	for i := range reqs {
		work <- i
	}
	close(work)
	wg.Wait()

	// Monotonicity: dropping an attribute (or the agent) never shows more.
	var props int
	for i, q := range reqs {
		if q.parent < 0 || !results[i].ran || !results[q.parent].ran {
			continue
		}
		p, c := results[q.parent].ids, results[i].ids
		small, big, what := c, p, "the variant sees rows its parent does not"
		if !q.childIsSubset {
			small, big, what = p, c, "the agent sees rows its user does not"
		}
		props++
		if extra := minus(small, big); len(extra) > 0 {
			fail("%s\n  parent: %s\n  variant: %s\n  extra ids: %v", what, reqs[q.parent], q, extra)
		}
	}

	var refused, empty, seen int
	for _, r := range results {
		switch {
		case !r.ran:
			refused++
		case len(r.ids) == 0:
			empty++
		default:
			seen += len(r.ids)
		}
	}
	t.Logf("%d rows, %d grants, %d requests (%d generated + variants; %d refused, %d empty, %d rows seen in all), %d queries, %d id-set comparisons, %d masked values checked, %d subset properties, in %v",
		len(docs), len(grants), len(reqs), 201, refused, empty, seen, queries.Load(), comparisons.Load(), maskChecks.Load(), props, time.Since(start).Round(time.Millisecond))
	if n := failures.Load(); n > 15 {
		t.Errorf("... and %d more failures", n-15)
	}
}

func loadDiffData(t *testing.T, pool *pgxpool.Pool, docs []*diffDoc, grants []diffGrant) {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, diffSchema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	nullable := func(p any) any {
		switch x := p.(type) {
		case *string:
			if x == nil {
				return nil
			}
			return *x
		case *int64:
			if x == nil {
				return nil
			}
			return int32(*x)
		}
		panic(p)
	}
	rows := make([][]any, 0, len(docs))
	for _, d := range docs {
		var acl, meta any
		if !d.ACLNull {
			acl = d.ACL
		}
		if d.Meta != nil {
			meta = d.Meta.JSON()
		}
		rows = append(rows, []any{int32(d.ID), nullable(d.Tenant), nullable(d.Owner), nullable(d.Visibility), acl,
			nullable(d.Classification), nullable(d.Source), nullable(d.Region), meta, nullable(d.Contact)})
	}
	cols := []string{"id", "tenant_id", "owner_id", "visibility", "acl_groups", "classification", "source", "region", "meta", "contact"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"docs"}, cols, pgx.CopyFromRows(rows)); err != nil {
		t.Fatalf("copy docs: %v", err)
	}
	grows := make([][]any, 0, len(grants))
	for _, g := range grants {
		grows = append(grows, []any{nullable(g.Tenant), int32(g.DocID), nullable(g.User)})
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"grants"}, []string{"tenant_id", "doc_id", "user_id"}, pgx.CopyFromRows(grows)); err != nil {
		t.Fatalf("copy grants: %v", err)
	}
	// The database must agree with the evaluator about the data itself.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM docs WHERE meta ? 'embargo'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, d := range docs {
		if hasKey(d.Meta, "embargo") == tTrue {
			want++
		}
	}
	if n != want {
		t.Fatalf("data check: %d rows have meta ? 'embargo' in the database, the evaluator says %d", n, want)
	}
}

// runDiffRequest runs one request through the fragment and the evaluator and
// compares them; it returns the ids the database selected.
func runDiffRequest(t *testing.T, pool *pgxpool.Pool, pol *filter.Policy, w *diffWorld, berlin *time.Location,
	q *diffReq, queries, comparisons, maskChecks *atomic.Int64, fail func(string, ...any)) ([]int, bool) {
	ctx := t.Context()
	req := filter.Request{Subject: q.subject, Context: q.ctx, Agent: q.agent, Alias: "d"}
	f, err := pol.Fragment("docs", req)

	// Errors first.
	_, granted := diffAgents[q.agent]
	noSubject := q.subject == nil || q.subject.Tenant == ""
	switch {
	case noSubject:
		code := filter.CodeOf(err)
		if f != nil || !(code == filter.CodeNoSubject || (!granted && q.agent != "" && code == filter.CodeAgentNotGranted)) {
			fail("%s: want a no_subject error, got fragment %v, err %v", q, f != nil, err)
		}
		if code == filter.CodeNoSubject && !errors.Is(err, filter.ErrNoSubject) {
			fail("%s: errors.Is(err, ErrNoSubject) is false for %v", q, err)
		}
		return nil, false
	case q.agent != "" && !granted:
		if f != nil || filter.CodeOf(err) != filter.CodeAgentNotGranted || !errors.Is(err, filter.ErrAgentNotGranted) {
			fail("%s: want an agent_not_granted error, got fragment %v, err %v", q, f != nil, err)
		}
		return nil, false
	case err != nil:
		fail("%s: Fragment: %v", q, err)
		return nil, false
	}

	e := envOf(q, berlin)
	var want []int
	wantContact := map[int]*string{}
	for _, d := range w.docs {
		if w.visible(d, e) {
			want = append(want, d.ID)
			wantContact[d.ID] = w.contactOf(d, e)
		}
	}
	if staticallyDenied(e) != (f.Outcome == filter.AlwaysDenied) {
		fail("%s: Outcome %v (%s), the evaluator says statically denied = %v", q, f.Outcome, f.Reason, staticallyDenied(e))
	}
	if f.Outcome == filter.AlwaysDenied && len(want) > 0 {
		fail("%s: Outcome AlwaysDenied but the evaluator sees %v", q, want)
	}
	sqlText := f.SQL(1)
	if strings.Contains(sqlText, "'"+q.subject.Tenant+"'") || (q.subject.ID != "" && strings.Contains(sqlText, "'"+q.subject.ID+"'")) {
		fail("%s: a subject value is written into the SQL text: %s", q, sqlText)
	}

	// 1. SQL(1) with $n placeholders.
	stmt := "SELECT id FROM docs d WHERE " + sqlText + " ORDER BY id"
	got, err := queryIDs(ctx, pool, stmt, f.Args())
	queries.Add(1)
	if err != nil {
		fail("%s: query: %v\n  sql: %s\n  args: %v", q, err, stmt, f.Args())
		return nil, false
	}
	compareIDs(w, e, q, stmt, f.Args(), want, got, comparisons, fail)

	// 2. The squirrel path (? placeholders, ?? for jsonb ?), with the masked
	// column and the tenant of every row.
	sb := squirrel.Select("d.id", "d.tenant_id").Column(f.Column("contact")).From("docs d").
		Where(f).OrderBy("d.id").PlaceholderFormat(squirrel.Dollar)
	stmt2, args2, err := sb.ToSql()
	if err != nil {
		fail("%s: squirrel: %v", q, err)
		return got, true
	}
	rows, err := pool.Query(ctx, stmt2, args2...)
	queries.Add(1)
	if err != nil {
		fail("%s: query: %v\n  sql: %s\n  args: %v", q, err, stmt2, args2)
		return got, true
	}
	var got2 []int
	for rows.Next() {
		var id int
		var tenant, contact *string
		if err := rows.Scan(&id, &tenant, &contact); err != nil {
			fail("%s: scan: %v", q, err)
			break
		}
		got2 = append(got2, id)
		if tenant == nil || *tenant != q.subject.Tenant {
			fail("%s: row %d of tenant %v returned to tenant %q\n  sql: %s\n  args: %v", q, id, deref(tenant), q.subject.Tenant, stmt2, args2)
		}
		exp, ok := wantContact[id]
		if !ok {
			continue // reported by the id comparison
		}
		maskChecks.Add(1)
		if (exp == nil) != (contact == nil) || (exp != nil && *exp != *contact) {
			d := w.byID[id]
			fail("%s: row %d: contact reads %v, want %v (mask condition %v, row owner=%v region=%v)\n  sql: %s\n  args: %v",
				q, id, deref(contact), deref(exp), diffMask.eval(w, d, e), deref(d.Owner), deref(d.Region), stmt2, args2)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		fail("%s: rows: %v", q, err)
	}
	compareIDs(w, e, q, stmt2, args2, want, got2, comparisons, fail)

	// 3. The table's own name as alias, after an argument of the query's own.
	if q.withOtherAlias {
		req.Alias = ""
		f3, err := pol.Fragment("docs", req)
		if err != nil {
			fail("%s: Fragment without alias: %v", q, err)
			return got, true
		}
		stmt3 := "SELECT id FROM docs WHERE id >= $1 AND " + f3.SQL(2) + " ORDER BY id"
		args3 := append([]any{int32(0)}, f3.Args()...)
		got3, err := queryIDs(ctx, pool, stmt3, args3)
		queries.Add(1)
		if err != nil {
			fail("%s: query: %v\n  sql: %s\n  args: %v", q, err, stmt3, args3)
			return got, true
		}
		compareIDs(w, e, q, stmt3, args3, want, got3, comparisons, fail)
	}
	return got, true
}

func queryIDs(ctx context.Context, pool *pgxpool.Pool, stmt string, args []any) ([]int, error) {
	rows, err := pool.Query(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

func compareIDs(w *diffWorld, e *diffEnv, q *diffReq, stmt string, args []any, want, got []int, comparisons *atomic.Int64, fail func(string, ...any)) {
	comparisons.Add(1)
	if slices.Equal(want, got) {
		return
	}
	var b strings.Builder
	describe := func(ids []int) {
		for _, id := range ids {
			d := w.byID[id]
			if d == nil {
				fmt.Fprintf(&b, "\n    %d: not a generated row", id)
				continue
			}
			fmt.Fprintf(&b, "\n    %d: %s", id, w.explain(d, e))
		}
	}
	fmt.Fprintf(&b, "%s: the database and the evaluator disagree\n  sql: %s\n  args: %v", q, stmt, args)
	missing, extra := minus(want, got), minus(got, want)
	fmt.Fprintf(&b, "\n  evaluator sees, database does not: %v", missing)
	describe(missing)
	fmt.Fprintf(&b, "\n  database returns, evaluator does not: %v", extra)
	describe(extra)
	fail("%s", b.String())
}

// explain dumps a row and what each rule evaluates to for it.
func (w *diffWorld) explain(d *diffDoc, e *diffEnv) string {
	var b strings.Builder
	meta := "NULL"
	if d.Meta != nil {
		meta = d.Meta.JSON()
	}
	fmt.Fprintf(&b, "tenant=%v owner=%v vis=%v acl=%v(null=%v) class=%v source=%v region=%v meta=%s grants=%v |",
		deref(d.Tenant), deref(d.Owner), deref(d.Visibility), d.ACL, d.ACLNull, derefI(d.Classification),
		deref(d.Source), deref(d.Region), meta, w.grantsOf[d.ID])
	rules := func(kind string, rs []diffRule) {
		for _, r := range rs {
			if e.active(r) {
				fmt.Fprintf(&b, " %s %s=%v", kind, r.name, r.eval(w, d, e))
			} else {
				fmt.Fprintf(&b, " %s %s=inactive", kind, r.name)
			}
		}
	}
	rules("allow", diffAllow)
	rules("deny", diffDeny)
	if e.agent != "" {
		rules("agent-allow", diffAgents[e.agent].allow)
		rules("agent-deny", diffAgents[e.agent].deny)
	}
	return b.String()
}

func (g diffGrant) String() string {
	return fmt.Sprintf("{%v %d %v}", deref(g.Tenant), g.DocID, deref(g.User))
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

func derefI(n *int64) string {
	if n == nil {
		return "NULL"
	}
	return fmt.Sprint(*n)
}

// minus returns the ids of a not in b.
func minus(a, b []int) []int {
	var out []int
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
