package rewrite_test

// Differential test of the rewriter: generated SELECT statements (joins,
// sublinks, CTEs, set operations, aggregates, vector ordering) are rewritten
// for generated subjects and run on the real database. An oracle in plain Go,
// written by hand from dtPolicy's YAML and PostgreSQL's three-valued logic,
// says which docs and notes each subject may see and what each statement
// must return. It calls nothing of packages rewrite or filter.
//
// Always checked: every docs.id and notes.id in the output is visible to the
// subject, every tenant_id is the subject's, and a masked value reads NULL
// exactly when the mask hides it. Where the statement's meaning is plain
// (nearly always), the whole result is compared with the oracle's.
//
// go test ./rewrite -run Differential -rewrite.cases=5000 runs more queries.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/rewrite"
)

var dtCases = flag.Int("rewrite.cases", 300, "generated queries in TestRewriteDifferential (each runs for several subjects)")

// dtPolicy is the policy under test. Its Go twin is dtView below.
const dtPolicy = `
version: 1
subject:
  attributes:
    clearance: integer
unfiltered: [labels]
resources:
  docs:
    table: docs
    tenant: tenant_id
    columns: [id, tenant_id, owner_id, grp, level, secret, embedding]
    allow:
      - name: owner
        when: owner_id = subject.id
      - name: group-member
        when: grp = ANY (subject.groups)
      - name: tenant-admin
        when: "'admin' = ANY (subject.roles)"
    deny:
      - name: above-clearance
        when: level > subject.clearance
      - name: quarantined
        when: grp IS NOT DISTINCT FROM 'quarantine'
    mask:
      - column: secret
        unless: "'auditor' = ANY (subject.roles)"
    agents:
      summarizer:
        allow:
          - name: public
            when: grp = 'public'
        deny:
          - name: sensitive
            when: level >= 2
  notes:
    table: notes
    tenant: tenant_id
    relations:
      parent: {table: docs, tenant: tenant_id}
    allow:
      - name: reader
        when: "'reader' = ANY (subject.roles)"
      - name: parent-owner
        when: EXISTS (SELECT 1 FROM parent p WHERE p.id = notes.doc_id AND p.owner_id = subject.id)
    deny:
      - name: drafts
        when: body LIKE 'draft%'
`

const dtSchema = `
CREATE TABLE docs (id int PRIMARY KEY, tenant_id text, owner_id text, grp text, level int NULL,
	secret text, embedding vector(3));
CREATE TABLE notes (id int, tenant_id text, doc_id int, body text);
CREATE TABLE labels (doc_id int, label text);
`

// ---------------------------------------------------------------------------
// Three-valued logic.

type dtTri int8

const (
	dtNull dtTri = iota
	dtFalse
	dtTrue
)

func dtOf(b bool) dtTri {
	if b {
		return dtTrue
	}
	return dtFalse
}

func dtAnd(xs ...dtTri) dtTri {
	out := dtTrue
	for _, x := range xs {
		if x == dtFalse {
			return dtFalse
		}
		if x == dtNull {
			out = dtNull
		}
	}
	return out
}

func dtOr(xs ...dtTri) dtTri {
	out := dtFalse
	for _, x := range xs {
		if x == dtTrue {
			return dtTrue
		}
		if x == dtNull {
			out = dtNull
		}
	}
	return out
}

func dtNot(x dtTri) dtTri {
	switch x {
	case dtTrue:
		return dtFalse
	case dtFalse:
		return dtTrue
	}
	return dtNull
}

func dtEqS(a *string, b string) dtTri {
	if a == nil {
		return dtNull
	}
	return dtOf(*a == b)
}

func dtEqSS(a, b *string) dtTri {
	if a == nil || b == nil {
		return dtNull
	}
	return dtOf(*a == *b)
}

// dtCmp compares a nullable integer with a constant.
func dtCmp(a *int, op string, b int) dtTri {
	if a == nil {
		return dtNull
	}
	switch op {
	case "<":
		return dtOf(*a < b)
	case "<=":
		return dtOf(*a <= b)
	case ">":
		return dtOf(*a > b)
	case ">=":
		return dtOf(*a >= b)
	case "=":
		return dtOf(*a == b)
	case "<>":
		return dtOf(*a != b)
	}
	panic(op)
}

// ---------------------------------------------------------------------------
// Rows.

type dtDoc struct {
	id                 int
	tenant, owner, grp *string
	level              *int
	secret             *string
	emb                []float32 // nil: NULL
}

type dtNote struct {
	id     int
	tenant *string
	docID  *int
	body   *string
}

type dtLabel struct {
	docID *int
	label *string
}

type dtWorld struct {
	docs    []*dtDoc
	notes   []*dtNote
	labels  []*dtLabel
	docByID map[int]*dtDoc
}

var (
	dtTenants = []string{"acme", "globex", "initech"}
	dtUsers   = []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"}
	dtGroups  = []string{"eng", "sales", "hr", "public", "ops"}
	dtWords   = []string{"alpha", "beta", "draft plan", "drafty", "Draft memo", "gamma", "delta", "epsilon"}
	dtColours = []string{"red", "green", "blue"}
)

func dtPick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func dtChance(r *rand.Rand, p float64) bool { return r.Float64() < p }

func dtSP(s string) *string { return &s }

func dtIP(n int) *int { return &n }

func dtSubset(r *rand.Rand, xs []string, p float64) []string {
	var out []string
	for _, x := range xs {
		if dtChance(r, p) {
			out = append(out, x)
		}
	}
	return out
}

func dtVec(r *rand.Rand) []float32 {
	for {
		v := []float32{float32(r.Float64()*2 - 1), float32(r.Float64()*2 - 1), float32(r.Float64()*2 - 1)}
		if dtNorm(v) > 0.2 {
			return v
		}
	}
}

func dtNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func dtGenWorld(r *rand.Rand, nDocs, nNotes, nLabels int) *dtWorld {
	w := &dtWorld{docByID: map[int]*dtDoc{}}
	for id := 1; id <= nDocs; id++ {
		d := &dtDoc{id: id}
		if !dtChance(r, 0.02) {
			d.tenant = dtSP(dtPick(r, dtTenants...))
		}
		switch x := r.Float64(); {
		case x < 0.05: // NULL
		case x < 0.08:
			d.owner = dtSP(`a\`) // an invalid LIKE pattern (see strictProbe)
		default:
			d.owner = dtSP(dtPick(r, dtUsers...))
		}
		switch x := r.Float64(); {
		case x < 0.06: // NULL
		case x < 0.11:
			d.grp = dtSP("quarantine")
		case x < 0.13:
			d.grp = dtSP("((") // an invalid regular expression (see strictProbe)
		default:
			d.grp = dtSP(dtPick(r, dtGroups...))
		}
		if !dtChance(r, 0.15) {
			d.level = dtIP(r.IntN(4))
		}
		if !dtChance(r, 0.1) {
			d.secret = dtSP(fmt.Sprintf("s-%d", id))
		}
		if !dtChance(r, 0.05) {
			d.emb = dtVec(r)
		}
		w.docs = append(w.docs, d)
		w.docByID[id] = d
	}
	for id := 1; id <= nNotes; id++ {
		n := &dtNote{id: id}
		if !dtChance(r, 0.05) {
			n.docID = dtIP(1 + r.IntN(nDocs+15)) // some point at no document
		}
		switch x := r.Float64(); {
		case x < 0.02: // NULL
		case x < 0.75 && n.docID != nil && w.docByID[*n.docID] != nil && w.docByID[*n.docID].tenant != nil:
			n.tenant = w.docByID[*n.docID].tenant
		default:
			n.tenant = dtSP(dtPick(r, dtTenants...))
		}
		if !dtChance(r, 0.05) {
			n.body = dtSP(dtPick(r, dtWords...))
		}
		w.notes = append(w.notes, n)
	}
	for range nLabels {
		l := &dtLabel{}
		if !dtChance(r, 0.03) {
			l.docID = dtIP(1 + r.IntN(nDocs+10))
		}
		if !dtChance(r, 0.03) {
			l.label = dtSP(dtPick(r, dtColours...))
		}
		w.labels = append(w.labels, l)
	}
	return w
}

func dtLoad(t *testing.T, pool *pgxpool.Pool, w *dtWorld) {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, dtSchema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	txt := func(s *string) any {
		if s == nil {
			return nil
		}
		return *s
	}
	i4 := func(n *int) any {
		if n == nil {
			return nil
		}
		return int32(*n)
	}
	var rows [][]any
	for _, d := range w.docs {
		var emb any
		if d.emb != nil {
			emb = pgvector.NewVector(d.emb)
		}
		rows = append(rows, []any{int32(d.id), txt(d.tenant), txt(d.owner), txt(d.grp), i4(d.level), txt(d.secret), emb})
	}
	dtCopy(t, pool, "docs", []string{"id", "tenant_id", "owner_id", "grp", "level", "secret", "embedding"}, rows)
	rows = nil
	for _, n := range w.notes {
		rows = append(rows, []any{int32(n.id), txt(n.tenant), i4(n.docID), txt(n.body)})
	}
	dtCopy(t, pool, "notes", []string{"id", "tenant_id", "doc_id", "body"}, rows)
	rows = nil
	for _, l := range w.labels {
		rows = append(rows, []any{i4(l.docID), txt(l.label)})
	}
	dtCopy(t, pool, "labels", []string{"doc_id", "label"}, rows)
	if _, err := pool.Exec(ctx, "ANALYZE docs; ANALYZE notes; ANALYZE labels"); err != nil {
		t.Fatal(err)
	}
	// The database must agree with the oracle about the data itself.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM docs WHERE level > 1 AND grp LIKE 'e%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, d := range w.docs {
		if dtAnd(dtCmp(d.level, ">", 1), dtLike(d.grp, "e")) == dtTrue {
			want++
		}
	}
	if n != want {
		t.Fatalf("data check: the database counts %d rows, the oracle %d", n, want)
	}
}

func dtCopy(t *testing.T, pool *pgxpool.Pool, table string, cols []string, rows [][]any) {
	t.Helper()
	if _, err := pool.CopyFrom(t.Context(), pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)); err != nil {
		t.Fatalf("copy %s: %v", table, err)
	}
}

// ---------------------------------------------------------------------------
// Subjects and the oracle.

type dtSubject struct {
	label   string
	subject *policy.Subject
	agent   string
}

func (s *dtSubject) String() string {
	b, _ := json.Marshal(s.subject)
	return fmt.Sprintf("%s: subject=%s agent=%q", s.label, b, s.agent)
}

func dtGenSubjects(r *rand.Rand, n int) []*dtSubject {
	out := []*dtSubject{
		{label: "nil-subject"},
		{label: "no-tenant", subject: &policy.Subject{ID: "u1", Roles: []string{"admin"}}},
	}
	for i := len(out); i < n; i++ {
		s := &policy.Subject{Tenant: dtPick(r, dtTenants...), Attributes: map[string]any{}}
		if i == 2 {
			s.Tenant = "hooli" // a tenant without rows
		}
		if !dtChance(r, 0.1) {
			s.ID = dtPick(r, dtUsers...)
		}
		s.Roles = dtSubset(r, []string{"admin", "auditor", "reader", "editor"}, 0.3)
		s.Groups = dtSubset(r, dtGroups, 0.3)
		if dtChance(r, 0.1) {
			s.Groups = nil
		}
		switch x := r.Float64(); {
		case x < 0.12: // absent: the clearance deny denies every doc
		case x < 0.17:
			s.Attributes["clearance"] = nil // JSON null: absent too
		case x < 0.4:
			s.Attributes["clearance"] = r.IntN(4)
		case x < 0.6:
			s.Attributes["clearance"] = float64(r.IntN(4))
		default:
			s.Attributes["clearance"] = int64(r.IntN(4))
		}
		q := &dtSubject{label: fmt.Sprintf("s%d", i), subject: s}
		switch x := r.Float64(); {
		case x < 0.22:
			q.agent = "summarizer"
		case x < 0.28:
			q.agent = dtPick(r, "rogue", "Summarizer")
		}
		out = append(out, q)
	}
	return out
}

// dtView is what one subject may see, computed from dtPolicy by hand.
type dtView struct {
	w               *dtWorld
	s               *dtSubject
	docErr, noteErr bool // the policy refuses the subject on the resource
	doc, note       map[int]bool
	secret          map[int]*string // visible doc id -> the value secret must read
}

func dtViewOf(w *dtWorld, s *dtSubject) *dtView {
	v := &dtView{w: w, s: s, doc: map[int]bool{}, note: map[int]bool{}, secret: map[int]*string{}}
	if s.subject == nil || s.subject.Tenant == "" {
		v.docErr, v.noteErr = true, true
		return v
	}
	switch s.agent {
	case "":
	case "summarizer":
		v.noteErr = true // no grant on notes
	default:
		v.docErr, v.noteErr = true, true
	}
	sub := s.subject
	var id *string
	if sub.ID != "" {
		id = &sub.ID
	}
	var clearance *int
	switch c := sub.Attributes["clearance"].(type) {
	case int:
		clearance = dtIP(c)
	case int64:
		clearance = dtIP(int(c))
	case float64:
		clearance = dtIP(int(c))
	}
	auditor := slices.Contains(sub.Roles, "auditor")
	for _, d := range w.docs {
		var allow []dtTri
		if id != nil {
			allow = append(allow, dtEqSS(d.owner, id))
		}
		allow = append(allow, dtAnyEq(d.grp, sub.Groups), dtOf(slices.Contains(sub.Roles, "admin")))
		deny := []dtTri{dtTrue} // a deny rule without its attribute denies every row
		if clearance != nil {
			deny[0] = dtCmp(d.level, ">", *clearance)
		}
		deny = append(deny, dtOf(d.grp != nil && *d.grp == "quarantine"))
		parts := []dtTri{dtEqS(d.tenant, sub.Tenant), dtOr(allow...), dtNot(dtOr(deny...))}
		if s.agent == "summarizer" {
			parts = append(parts, dtEqS(d.grp, "public"), dtNot(dtCmp(d.level, ">=", 2)))
		}
		if dtAnd(parts...) == dtTrue {
			v.doc[d.id] = true
			if auditor {
				v.secret[d.id] = d.secret
			} else {
				v.secret[d.id] = nil
			}
		}
	}
	for _, n := range w.notes {
		allow := []dtTri{dtOf(slices.Contains(sub.Roles, "reader"))}
		if id != nil {
			// EXISTS over the relation, restricted to the subject's tenant.
			owns := dtFalse
			if n.docID != nil {
				if p := w.docByID[*n.docID]; p != nil && dtAnd(dtEqS(p.tenant, sub.Tenant), dtEqSS(p.owner, id)) == dtTrue {
					owns = dtTrue
				}
			}
			allow = append(allow, owns)
		}
		deny := dtLike(n.body, "draft")
		if dtAnd(dtEqS(n.tenant, sub.Tenant), dtOr(allow...), dtNot(deny)) == dtTrue {
			v.note[n.id] = true
		}
	}
	return v
}

// dtAnyEq is x = ANY (array without NULLs).
func dtAnyEq(x *string, arr []string) dtTri {
	if len(arr) == 0 {
		return dtFalse
	}
	if x == nil {
		return dtNull
	}
	return dtOf(slices.Contains(arr, *x))
}

// dtLike is x LIKE 'prefix%'.
func dtLike(x *string, prefix string) dtTri {
	if x == nil {
		return dtNull
	}
	return dtOf(strings.HasPrefix(*x, prefix))
}

// docs and notes are the visible rows for which p is TRUE.
func (v *dtView) docs(p dtPred[*dtDoc]) []*dtDoc {
	var out []*dtDoc
	for _, d := range v.w.docs {
		if v.doc[d.id] && p.eval(d) == dtTrue {
			out = append(out, d)
		}
	}
	return out
}

func (v *dtView) notes(p dtPred[*dtNote]) []*dtNote {
	var out []*dtNote
	for _, n := range v.w.notes {
		if v.note[n.id] && p.eval(n) == dtTrue {
			out = append(out, n)
		}
	}
	return out
}

// visibleDoc is the visible doc with this id, or nil.
func (v *dtView) visibleDoc(id *int) *dtDoc {
	if id == nil || !v.doc[*id] {
		return nil
	}
	return v.w.docByID[*id]
}

// ---------------------------------------------------------------------------
// Predicates: SQL text for a qualifier ("" or "d.") and a Go evaluator.

type dtPred[T any] struct {
	sql    func(q string) string
	eval   func(T) dtTri
	strict bool // strict mode refuses it
	masked bool // it uses the masked column
}

func dtTruePred[T any]() dtPred[T] {
	return dtPred[T]{sql: func(q string) string { return "TRUE" }, eval: func(T) dtTri { return dtTrue }}
}

func dtCombine[T any](r *rand.Rand, depth int, atom func(*rand.Rand) dtPred[T]) dtPred[T] {
	if depth <= 0 || dtChance(r, 0.45) {
		return atom(r)
	}
	a := dtCombine(r, depth-1, atom)
	flags := func(p dtPred[T], xs ...dtPred[T]) dtPred[T] {
		for _, x := range xs {
			p.strict, p.masked = p.strict || x.strict, p.masked || x.masked
		}
		return p
	}
	switch r.IntN(5) {
	case 0, 1:
		b := dtCombine(r, depth-1, atom)
		return flags(dtPred[T]{
			sql:  func(q string) string { return "(" + a.sql(q) + " AND " + b.sql(q) + ")" },
			eval: func(x T) dtTri { return dtAnd(a.eval(x), b.eval(x)) },
		}, a, b)
	case 2, 3:
		b := dtCombine(r, depth-1, atom)
		return flags(dtPred[T]{
			sql:  func(q string) string { return "(" + a.sql(q) + " OR " + b.sql(q) + ")" },
			eval: func(x T) dtTri { return dtOr(a.eval(x), b.eval(x)) },
		}, a, b)
	}
	return flags(dtPred[T]{
		sql:  func(q string) string { return "NOT (" + a.sql(q) + ")" },
		eval: func(x T) dtTri { return dtNot(a.eval(x)) },
	}, a)
}

func dtDocAtom(r *rand.Rand) dtPred[*dtDoc] {
	type P = dtPred[*dtDoc]
	f := func(format string, args ...any) func(string) string {
		return func(q string) string {
			a := make([]any, len(args))
			for i, x := range args {
				if x == "Q" {
					x = q
				}
				a[i] = x
			}
			return fmt.Sprintf(format, a...)
		}
	}
	switch r.IntN(24) {
	case 0, 1, 2:
		g := dtPick(r, append(dtGroups, "quarantine", "nope")...)
		return P{sql: f("%sgrp = '%s'", "Q", g), eval: func(d *dtDoc) dtTri { return dtEqS(d.grp, g) }}
	case 3, 4:
		n := r.IntN(4)
		return P{sql: f("%slevel >= %d", "Q", n), eval: func(d *dtDoc) dtTri { return dtCmp(d.level, ">=", n) }}
	case 5:
		return P{sql: f("%slevel IS NULL", "Q"), eval: func(d *dtDoc) dtTri { return dtOf(d.level == nil) }}
	case 6:
		return P{sql: f("%sowner_id IS NOT NULL", "Q"), eval: func(d *dtDoc) dtTri { return dtOf(d.owner != nil) }}
	case 7, 8:
		u := dtPick(r, dtUsers...)
		return P{sql: f("%sowner_id = '%s'", "Q", u), eval: func(d *dtDoc) dtTri { return dtEqS(d.owner, u) }}
	case 9, 10:
		n := 1 + r.IntN(220)
		return P{sql: f("%sid < %d", "Q", n), eval: func(d *dtDoc) dtTri { return dtOf(d.id < n) }}
	case 11:
		a := r.IntN(200)
		b := a + r.IntN(100)
		return P{sql: f("%sid BETWEEN %d AND %d", "Q", a, b), eval: func(d *dtDoc) dtTri { return dtOf(d.id >= a && d.id <= b) }}
	case 12:
		a, b := dtPick(r, dtGroups...), dtPick(r, dtGroups...)
		return P{sql: f("%sgrp IN ('%s', '%s')", "Q", a, b), eval: func(d *dtDoc) dtTri { return dtOr(dtEqS(d.grp, a), dtEqS(d.grp, b)) }}
	case 13:
		n := r.IntN(4)
		return P{sql: f("coalesce(%slevel, 0) <= %d", "Q", n), eval: func(d *dtDoc) dtTri {
			l := 0
			if d.level != nil {
				l = *d.level
			}
			return dtOf(l <= n)
		}}
	case 14:
		u := dtPick(r, dtUsers...)
		return P{sql: f("%sowner_id IS DISTINCT FROM '%s'", "Q", u), eval: func(d *dtDoc) dtTri { return dtOf(d.owner == nil || *d.owner != u) }}
	case 15:
		p := dtPick(r, "e", "p", "s", "o")
		return P{sql: f("%sgrp LIKE '%s%%'", "Q", p), eval: func(d *dtDoc) dtTri { return dtLike(d.grp, p) }}
	case 16:
		tn := dtPick(r, dtTenants...)
		return P{sql: f("%stenant_id = '%s'", "Q", tn), eval: func(d *dtDoc) dtTri { return dtEqS(d.tenant, tn) }}
	case 17:
		return P{sql: f("lower(%sgrp) = 'eng'", "Q"), eval: func(d *dtDoc) dtTri { return dtEqS(d.grp, "eng") }}
	case 18:
		n := r.IntN(4)
		return P{sql: f("%slevel <> %d", "Q", n), eval: func(d *dtDoc) dtTri { return dtCmp(d.level, "<>", n) }}
	case 19:
		return P{sql: f("%sembedding IS NULL", "Q"), eval: func(d *dtDoc) dtTri { return dtOf(d.emb == nil) }}
	case 20:
		n := r.IntN(4)
		return P{sql: f("greatest(%slevel, 1) = %d", "Q", n), eval: func(d *dtDoc) dtTri {
			l := 1
			if d.level != nil && *d.level > 1 {
				l = *d.level
			}
			return dtOf(l == n)
		}}
	case 21:
		if dtChance(r, 0.5) {
			// Modulo can fail (not here, but in general): strict refuses it.
			return P{sql: f("%sid %% 3 = 0", "Q"), eval: func(d *dtDoc) dtTri { return dtOf(d.id%3 == 0) }, strict: true}
		}
	case 22:
		if dtChance(r, 0.4) {
			return P{sql: f("%ssecret IS NULL", "Q"), eval: func(*dtDoc) dtTri { panic("a masked predicate ran") }, masked: true}
		}
	}
	return P{sql: f("%sid IS NOT NULL", "Q"), eval: func(*dtDoc) dtTri { return dtTrue }}
}

func dtNoteAtom(r *rand.Rand) dtPred[*dtNote] {
	type P = dtPred[*dtNote]
	switch r.IntN(11) {
	case 0, 1:
		p := dtPick(r, "d", "draft", "a", "g", "D")
		return P{sql: func(q string) string { return q + "body LIKE '" + p + "%'" }, eval: func(n *dtNote) dtTri { return dtLike(n.body, p) }}
	case 2:
		return P{sql: func(q string) string { return q + "doc_id IS NULL" }, eval: func(n *dtNote) dtTri { return dtOf(n.docID == nil) }}
	case 3, 4:
		k := r.IntN(220)
		return P{sql: func(q string) string { return fmt.Sprintf("%sdoc_id < %d", q, k) }, eval: func(n *dtNote) dtTri { return dtCmp(n.docID, "<", k) }}
	case 5:
		k := r.IntN(300)
		return P{sql: func(q string) string { return fmt.Sprintf("%sid > %d", q, k) }, eval: func(n *dtNote) dtTri { return dtOf(n.id > k) }}
	case 6:
		w := dtPick(r, dtWords...)
		return P{sql: func(q string) string { return q + "body = '" + w + "'" }, eval: func(n *dtNote) dtTri { return dtEqS(n.body, w) }}
	case 7:
		k := 3 + r.IntN(5)
		return P{sql: func(q string) string { return fmt.Sprintf("length(%sbody) > %d", q, k) }, eval: func(n *dtNote) dtTri {
			if n.body == nil {
				return dtNull
			}
			return dtOf(len(*n.body) > k)
		}}
	case 8:
		tn := dtPick(r, dtTenants...)
		return P{sql: func(q string) string { return q + "tenant_id = '" + tn + "'" }, eval: func(n *dtNote) dtTri { return dtEqS(n.tenant, tn) }}
	case 9:
		if dtChance(r, 0.4) {
			return P{sql: func(q string) string { return q + "id % 2 = 1" }, eval: func(n *dtNote) dtTri { return dtOf(n.id%2 == 1) }, strict: true}
		}
	}
	return P{sql: func(q string) string { return q + "body IS NOT NULL" }, eval: func(n *dtNote) dtTri { return dtOf(n.body != nil) }}
}

// ---------------------------------------------------------------------------
// Queries.

// dtCol says what an output column holds, for the checks that always apply.
type dtCol int

const (
	cOther  dtCol = iota
	cDoc          // a docs.id: must be visible
	cNote         // a notes.id: must be visible
	cSecret       // docs.secret of the row's first cDoc column
	cTenant       // a protected row's tenant_id: must be the subject's
	cSkip         // not compared (a vector, a distance)
)

type dtQuery struct {
	kind        string
	sql         string
	vec         []float32 // bound as $1 when set
	cols        []dtCol
	docs, notes bool         // reads the protected tables (not only a CTE named like them)
	masked      bool         // refused in every mode: the masked column outside the select list
	refuse      rewrite.Code // refused in every mode with this code
	strict      bool         // refused in strict mode: an operator that can fail
	strictOnly  bool         // an attack on strict mode: run in strict mode only
	// poison says which docs make a strictOnly statement fail.
	poison  func(*dtDoc) bool
	ordered bool // compare rows in order
	topK    int  // ORDER BY distance LIMIT topK: want gives the candidates
	want    func(v *dtView) [][]string
}

func (q *dtQuery) flags(ps ...interface{ flagsOf() (bool, bool) }) *dtQuery {
	for _, p := range ps {
		s, m := p.flagsOf()
		q.strict, q.masked = q.strict || s, q.masked || m
	}
	return q
}

func (p dtPred[T]) flagsOf() (bool, bool) { return p.strict, p.masked }

func dtItoa(n int) string { return strconv.Itoa(n) }

func dtStr(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

func dtInt(n *int) string {
	if n == nil {
		return "NULL"
	}
	return dtItoa(*n)
}

// dtGen generates queries.
type dtGen struct {
	r      *rand.Rand
	schema string
}

func (g *dtGen) dp() dtPred[*dtDoc]  { return dtCombine(g.r, 2, dtDocAtom) }
func (g *dtGen) np() dtPred[*dtNote] { return dtCombine(g.r, 1, dtNoteAtom) }

func (g *dtGen) query() *dtQuery {
	shapes := []func() *dtQuery{
		g.plainDocs, g.plainDocs, g.plainDocs, g.secretDocs, g.countDocs, g.groupDocs, g.plainNotes,
		g.innerJoin, g.leftJoin, g.antiJoin, g.inSub, g.notInSub, g.exists, g.scalarCount,
		g.scalarWhere, g.scalarOfNote, g.cte, g.twoCTEs, g.shadow, g.setOp, g.setOpMixed,
		g.vector, g.vector, g.tableDocs, g.selectStar, g.tableNotes, g.labelsJoin, g.labelsExcept,
		g.fromSubquery, g.lateral, g.aggLeftJoin, g.distinct, g.selfJoin, g.maskedUse, g.strictProbe,
		g.captureProbe,
	}
	return dtPick(g.r, shapes...)()
}

func dtIDs(docs []*dtDoc) [][]string {
	out := make([][]string, len(docs))
	for i, d := range docs {
		out[i] = []string{dtItoa(d.id)}
	}
	return out
}

func dtNoteIDs(notes []*dtNote) [][]string {
	out := make([][]string, len(notes))
	for i, n := range notes {
		out[i] = []string{dtItoa(n.id)}
	}
	return out
}

func (g *dtGen) plainDocs() *dtQuery {
	p := g.dp()
	var sel, from, q string
	switch g.r.IntN(7) {
	case 0:
		sel, from, q = "id", "docs", ""
	case 1:
		sel, from, q = "d.id", "docs d", "d."
	case 2:
		sel, from, q = "docs.id", "docs", "docs."
	case 3:
		sel, from, q = "x.id", "docs AS x", "x."
	case 4:
		sel, from, q = "id", "ONLY docs", ""
	case 5:
		sel, from, q = "id", pgx.Identifier{g.schema, "docs"}.Sanitize(), ""
	default:
		sel, from, q = "id", `"docs"`, ""
	}
	return (&dtQuery{kind: "plain", sql: fmt.Sprintf("SELECT %s FROM %s WHERE %s", sel, from, p.sql(q)),
		cols: []dtCol{cDoc}, docs: true,
		want: func(v *dtView) [][]string { return dtIDs(v.docs(p)) }}).flags(p)
}

func (g *dtGen) secretDocs() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "secret", sql: "SELECT id, secret FROM docs WHERE " + p.sql(""),
		cols: []dtCol{cDoc, cSecret}, docs: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p) {
				out = append(out, []string{dtItoa(d.id), dtStr(v.secret[d.id])})
			}
			return out
		}}).flags(p)
}

func (g *dtGen) countDocs() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "count", sql: "SELECT count(*) FROM docs WHERE " + p.sql(""),
		cols: []dtCol{cOther}, docs: true,
		want: func(v *dtView) [][]string { return [][]string{{dtItoa(len(v.docs(p)))}} }}).flags(p)
}

func (g *dtGen) groupDocs() *dtQuery {
	p := g.dp()
	having, least := "", 0
	if dtChance(g.r, 0.4) {
		least = 1 + g.r.IntN(3)
		having = fmt.Sprintf(" HAVING count(*) >= %d", least)
	}
	return (&dtQuery{kind: "group", sql: "SELECT grp, count(*) FROM docs d WHERE " + p.sql("d.") + " GROUP BY grp" + having,
		cols: []dtCol{cOther, cOther}, docs: true,
		want: func(v *dtView) [][]string {
			counts := map[string]int{}
			for _, d := range v.docs(p) {
				counts[dtStr(d.grp)]++
			}
			var out [][]string
			for k, n := range counts {
				if n >= least {
					out = append(out, []string{k, dtItoa(n)})
				}
			}
			return out
		}}).flags(p)
}

func (g *dtGen) plainNotes() *dtQuery {
	p := g.np()
	f := dtPick(g.r, [3]string{"id", "notes", ""}, [3]string{"n.id", "notes n", "n."}, [3]string{"notes.id", "notes", "notes."})
	sel, from, q := f[0], f[1], f[2]
	return (&dtQuery{kind: "notes", sql: fmt.Sprintf("SELECT %s FROM %s WHERE %s", sel, from, p.sql(q)),
		cols: []dtCol{cNote}, notes: true,
		want: func(v *dtView) [][]string { return dtNoteIDs(v.notes(p)) }}).flags(p)
}

func (g *dtGen) innerJoin() *dtQuery {
	pd, pn := g.dp(), g.np()
	return (&dtQuery{kind: "join", sql: "SELECT d.id, n.id FROM docs d JOIN notes n ON n.doc_id = d.id WHERE " + pd.sql("d.") + " AND " + pn.sql("n."),
		cols: []dtCol{cDoc, cNote}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(pd) {
				for _, n := range v.notes(pn) {
					if n.docID != nil && *n.docID == d.id {
						out = append(out, []string{dtItoa(d.id), dtItoa(n.id)})
					}
				}
			}
			return out
		}}).flags(pd, pn)
}

func (g *dtGen) leftJoin() *dtQuery {
	pd, pn := g.dp(), g.np()
	return (&dtQuery{kind: "left-join", sql: "SELECT d.id, n.id FROM docs d LEFT JOIN notes n ON n.doc_id = d.id AND " + pn.sql("n.") + " WHERE " + pd.sql("d."),
		cols: []dtCol{cDoc, cNote}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(pd) {
				found := false
				for _, n := range v.notes(pn) {
					if n.docID != nil && *n.docID == d.id {
						out = append(out, []string{dtItoa(d.id), dtItoa(n.id)})
						found = true
					}
				}
				if !found {
					out = append(out, []string{dtItoa(d.id), "NULL"})
				}
			}
			return out
		}}).flags(pd, pn)
}

func (g *dtGen) antiJoin() *dtQuery {
	pd := g.dp()
	return (&dtQuery{kind: "anti-join", sql: "SELECT n.id FROM notes n LEFT JOIN docs d ON d.id = n.doc_id AND " + pd.sql("d.") + " WHERE d.id IS NULL",
		cols: []dtCol{cNote}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			match := map[int]bool{}
			for _, d := range v.docs(pd) {
				match[d.id] = true
			}
			var out [][]string
			for _, n := range v.notes(dtTruePred[*dtNote]()) {
				if n.docID == nil || !match[*n.docID] {
					out = append(out, []string{dtItoa(n.id)})
				}
			}
			return out
		}}).flags(pd)
}

func (g *dtGen) inSub() *dtQuery {
	pd, pn := g.dp(), g.np()
	return (&dtQuery{kind: "in", sql: "SELECT id FROM notes WHERE " + pn.sql("notes.") + " AND doc_id IN (SELECT id FROM docs WHERE " + pd.sql("") + ")",
		cols: []dtCol{cNote}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			set := map[int]bool{}
			for _, d := range v.docs(pd) {
				set[d.id] = true
			}
			var out [][]string
			for _, n := range v.notes(pn) {
				if n.docID != nil && set[*n.docID] {
					out = append(out, []string{dtItoa(n.id)})
				}
			}
			return out
		}}).flags(pd, pn)
}

func (g *dtGen) notInSub() *dtQuery {
	pd := g.dp()
	return (&dtQuery{kind: "not-in", sql: "SELECT n.id FROM notes n WHERE n.doc_id NOT IN (SELECT d.id FROM docs d WHERE " + pd.sql("d.") + ")",
		cols: []dtCol{cNote}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			set := map[int]bool{}
			for _, d := range v.docs(pd) {
				set[d.id] = true
			}
			var out [][]string
			for _, n := range v.notes(dtTruePred[*dtNote]()) {
				// x NOT IN (empty) is TRUE even for NULL; else NULL x is NULL.
				if len(set) == 0 || (n.docID != nil && !set[*n.docID]) {
					out = append(out, []string{dtItoa(n.id)})
				}
			}
			return out
		}}).flags(pd)
}

func (g *dtGen) exists() *dtQuery {
	pd, pn := g.dp(), g.np()
	not := dtChance(g.r, 0.4)
	kw := "EXISTS"
	if not {
		kw = "NOT EXISTS"
	}
	return (&dtQuery{kind: "exists", sql: "SELECT d.id FROM docs d WHERE " + pd.sql("d.") + " AND " + kw + " (SELECT 1 FROM notes n WHERE n.doc_id = d.id AND " + pn.sql("n.") + ")",
		cols: []dtCol{cDoc}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			has := map[int]bool{}
			for _, n := range v.notes(pn) {
				if n.docID != nil {
					has[*n.docID] = true
				}
			}
			var out [][]string
			for _, d := range v.docs(pd) {
				if has[d.id] != not {
					out = append(out, []string{dtItoa(d.id)})
				}
			}
			return out
		}}).flags(pd, pn)
}

func (g *dtGen) scalarCount() *dtQuery {
	pd := g.dp()
	return (&dtQuery{kind: "scalar-count", sql: "SELECT d.id, (SELECT count(*) FROM notes n WHERE n.doc_id = d.id) FROM docs d WHERE " + pd.sql("d."),
		cols: []dtCol{cDoc, cOther}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(pd) {
				c := 0
				for _, n := range v.notes(dtTruePred[*dtNote]()) {
					if n.docID != nil && *n.docID == d.id {
						c++
					}
				}
				out = append(out, []string{dtItoa(d.id), dtItoa(c)})
			}
			return out
		}}).flags(pd)
}

func (g *dtGen) scalarWhere() *dtQuery {
	k := 1 + g.r.IntN(2)
	return &dtQuery{kind: "scalar-where", sql: fmt.Sprintf("SELECT d.id FROM docs d WHERE (SELECT count(*) FROM notes n WHERE n.doc_id = d.id) >= %d", k),
		cols: []dtCol{cDoc}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(dtTruePred[*dtDoc]()) {
				c := 0
				for _, n := range v.notes(dtTruePred[*dtNote]()) {
					if n.docID != nil && *n.docID == d.id {
						c++
					}
				}
				if c >= k {
					out = append(out, []string{dtItoa(d.id)})
				}
			}
			return out
		}}
}

// scalarOfNote reads a doc's group or (masked) secret through a scalar
// subquery: NULL for a doc the subject may not see.
func (g *dtGen) scalarOfNote() *dtQuery {
	pn := g.np()
	col := dtPick(g.r, "grp", "secret")
	return (&dtQuery{kind: "scalar-of-note", sql: "SELECT n.id, (SELECT d." + col + " FROM docs d WHERE d.id = n.doc_id) FROM notes n WHERE " + pn.sql("n."),
		cols: []dtCol{cNote, cOther}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, n := range v.notes(pn) {
				val := "NULL"
				if d := v.visibleDoc(n.docID); d != nil {
					if col == "grp" {
						val = dtStr(d.grp)
					} else {
						val = dtStr(v.secret[d.id])
					}
				}
				out = append(out, []string{dtItoa(n.id), val})
			}
			return out
		}}).flags(pn)
}

func (g *dtGen) cte() *dtQuery {
	p1, p2 := g.dp(), g.dp()
	return (&dtQuery{kind: "cte", sql: "WITH v AS (SELECT * FROM docs WHERE " + p1.sql("") + ") SELECT v.id, v.secret FROM v WHERE " + p2.sql("v."),
		cols: []dtCol{cDoc, cSecret}, docs: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p1) {
				if p2.eval(d) == dtTrue {
					out = append(out, []string{dtItoa(d.id), dtStr(v.secret[d.id])})
				}
			}
			return out
		}}).flags(p1, p2)
}

func (g *dtGen) twoCTEs() *dtQuery {
	pd, pn := g.dp(), g.np()
	return (&dtQuery{kind: "two-ctes", sql: "WITH v AS (SELECT id FROM docs WHERE " + pd.sql("") + "), m AS (SELECT doc_id FROM notes WHERE " + pn.sql("") + ") SELECT id FROM v WHERE id IN (SELECT doc_id FROM m)",
		cols: []dtCol{cDoc}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			has := map[int]bool{}
			for _, n := range v.notes(pn) {
				if n.docID != nil {
					has[*n.docID] = true
				}
			}
			var out [][]string
			for _, d := range v.docs(pd) {
				if has[d.id] {
					out = append(out, []string{dtItoa(d.id)})
				}
			}
			return out
		}}).flags(pd, pn)
}

// shadow: CTEs named like protected tables, in and out of scope.
func (g *dtGen) shadow() *dtQuery {
	p1, p2 := g.dp(), g.dp()
	pn := g.np()
	switch g.r.IntN(5) {
	case 0: // the CTE's body reads the real docs; the main query reads the CTE
		return (&dtQuery{kind: "shadow-docs", sql: "WITH docs AS (SELECT * FROM docs WHERE " + p1.sql("") + ") SELECT id FROM docs WHERE " + p2.sql(""),
			cols: []dtCol{cDoc}, docs: true,
			want: func(v *dtView) [][]string {
				var out [][]string
				for _, d := range v.docs(p1) {
					if p2.eval(d) == dtTrue {
						out = append(out, []string{dtItoa(d.id)})
					}
				}
				return out
			}}).flags(p1, p2)
	case 1: // "docs" is notes
		return (&dtQuery{kind: "shadow-notes-as-docs", sql: "WITH docs AS (SELECT id, doc_id FROM notes WHERE " + pn.sql("") + ") SELECT id FROM docs",
			cols: []dtCol{cNote}, notes: true,
			want: func(v *dtView) [][]string { return dtNoteIDs(v.notes(pn)) }}).flags(pn)
	case 2: // "notes" is docs
		return (&dtQuery{kind: "shadow-docs-as-notes", sql: "WITH notes AS (SELECT id FROM docs WHERE " + p1.sql("") + ") SELECT n.id FROM notes n",
			cols: []dtCol{cDoc}, docs: true,
			want: func(v *dtView) [][]string { return dtIDs(v.docs(p1)) }}).flags(p1)
	case 3: // the shadow is local to a sublink: the outer docs is the table
		return (&dtQuery{kind: "shadow-in-sublink", sql: "SELECT id FROM docs WHERE " + p1.sql("") + " AND id IN (WITH docs AS (SELECT doc_id AS id FROM notes) SELECT id FROM docs)",
			cols: []dtCol{cDoc}, docs: true, notes: true,
			want: func(v *dtView) [][]string {
				has := map[int]bool{}
				for _, n := range v.notes(dtTruePred[*dtNote]()) {
					if n.docID != nil {
						has[*n.docID] = true
					}
				}
				var out [][]string
				for _, d := range v.docs(p1) {
					if has[d.id] {
						out = append(out, []string{dtItoa(d.id)})
					}
				}
				return out
			}}).flags(p1)
	}
	// The shadow is local to a FROM subquery; the join's docs is the table.
	return &dtQuery{kind: "shadow-in-from", sql: "SELECT d.id FROM (WITH docs AS (SELECT id FROM notes) SELECT id FROM docs) x JOIN docs d ON d.id = x.id",
		cols: []dtCol{cDoc}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, n := range v.notes(dtTruePred[*dtNote]()) {
				if v.doc[n.id] {
					out = append(out, []string{dtItoa(n.id)})
				}
			}
			return out
		}}
}

// dtSetOp applies a set operation to two id lists; all keeps duplicates.
func dtSetOp(op string, all bool, a, b []int) [][]string {
	count := func(xs []int) map[int]int {
		m := map[int]int{}
		for _, x := range xs {
			m[x]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	if !all { // set semantics: duplicates go first
		for k := range ca {
			ca[k] = 1
		}
		for k := range cb {
			cb[k] = 1
		}
	}
	keys := map[int]bool{}
	for k := range ca {
		keys[k] = true
	}
	for k := range cb {
		keys[k] = true
	}
	var out [][]string
	for k := range keys {
		var n int
		switch op {
		case "UNION":
			n = ca[k] + cb[k]
		case "INTERSECT":
			n = min(ca[k], cb[k])
		case "EXCEPT":
			n = max(ca[k]-cb[k], 0)
		}
		if !all && n > 0 {
			n = 1
		}
		for range n {
			out = append(out, []string{dtItoa(k)})
		}
	}
	return out
}

func dtDocIDs(docs []*dtDoc) []int {
	out := make([]int, len(docs))
	for i, d := range docs {
		out[i] = d.id
	}
	return out
}

func (g *dtGen) setOp() *dtQuery {
	p1, p2 := g.dp(), g.dp()
	op := dtPick(g.r, "UNION", "INTERSECT", "EXCEPT")
	all := dtChance(g.r, 0.3)
	kw := op
	if all {
		kw += " ALL"
	}
	return (&dtQuery{kind: "setop", sql: "SELECT id FROM docs WHERE " + p1.sql("") + " " + kw + " SELECT id FROM docs WHERE " + p2.sql(""),
		cols: []dtCol{cDoc}, docs: true,
		want: func(v *dtView) [][]string { return dtSetOp(op, all, dtDocIDs(v.docs(p1)), dtDocIDs(v.docs(p2))) }}).flags(p1, p2)
}

// setOpMixed: the doc ids notes point at, against docs; with UNION the
// output holds doc ids of invisible documents, so the column is cOther.
func (g *dtGen) setOpMixed() *dtQuery {
	pd, pn := g.dp(), g.np()
	op := dtPick(g.r, "UNION", "INTERSECT", "EXCEPT")
	col := cDoc
	if op != "INTERSECT" {
		col = cOther
	}
	return (&dtQuery{kind: "setop-mixed", sql: "SELECT doc_id FROM notes WHERE " + pn.sql("") + " AND doc_id IS NOT NULL " + op + " SELECT id FROM docs WHERE " + pd.sql(""),
		cols: []dtCol{col}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var a []int
			for _, n := range v.notes(pn) {
				if n.docID != nil {
					a = append(a, *n.docID)
				}
			}
			return dtSetOp(op, false, a, dtDocIDs(v.docs(pd)))
		}}).flags(pd, pn)
}

func (g *dtGen) vector() *dtQuery {
	p := g.dp()
	k := 1 + g.r.IntN(12)
	vec := dtVec(g.r)
	q := &dtQuery{kind: "vector", vec: vec, topK: k, docs: true, cols: []dtCol{cDoc}}
	switch g.r.IntN(5) {
	case 0:
		q.sql = fmt.Sprintf("SELECT id FROM docs WHERE %s ORDER BY embedding <=> $1 LIMIT %d", p.sql(""), k)
		q.want = func(v *dtView) [][]string { return dtIDs(v.docs(p)) }
	case 1:
		q.kind = "vector-labels"
		lbl := dtPick(g.r, dtColours...)
		q.sql = fmt.Sprintf("SELECT d.id, l.label FROM docs d JOIN labels l ON l.doc_id = d.id WHERE l.label = '%s' AND %s ORDER BY d.embedding <=> $1 LIMIT %d", lbl, p.sql("d."), k)
		q.cols = []dtCol{cDoc, cOther}
		q.want = func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p) {
				for _, l := range v.w.labels {
					if l.docID != nil && *l.docID == d.id && dtEqS(l.label, lbl) == dtTrue {
						out = append(out, []string{dtItoa(d.id), lbl})
					}
				}
			}
			return out
		}
	case 2:
		q.kind = "vector-cte"
		q.sql = fmt.Sprintf("WITH c AS (SELECT id, embedding FROM docs WHERE %s) SELECT id FROM c ORDER BY embedding <=> $1 LIMIT %d", p.sql(""), k)
		q.want = func(v *dtView) [][]string { return dtIDs(v.docs(p)) }
	case 3:
		q.kind = "vector-secret"
		q.sql = fmt.Sprintf("SELECT id, secret FROM docs WHERE %s ORDER BY embedding <=> $1 LIMIT %d", p.sql(""), k)
		q.cols = []dtCol{cDoc, cSecret}
		q.want = func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p) {
				out = append(out, []string{dtItoa(d.id), dtStr(v.secret[d.id])})
			}
			return out
		}
	default:
		q.kind = "vector-distance"
		q.sql = fmt.Sprintf("SELECT d.id, d.embedding <=> $1 AS distance FROM docs d WHERE %s ORDER BY distance LIMIT %d", p.sql("d."), k)
		q.cols = []dtCol{cDoc, cSkip}
		q.want = func(v *dtView) [][]string { return dtIDs(v.docs(p)) }
	}
	return q.flags(p)
}

func (v *dtView) fullDocRows(docs []*dtDoc) [][]string {
	var out [][]string
	for _, d := range docs {
		out = append(out, []string{dtItoa(d.id), dtStr(d.tenant), dtStr(d.owner), dtStr(d.grp), dtInt(d.level), dtStr(v.secret[d.id])})
	}
	return out
}

var dtDocCols = []dtCol{cDoc, cTenant, cOther, cOther, cOther, cSecret, cSkip}

func (g *dtGen) tableDocs() *dtQuery {
	return &dtQuery{kind: "table", sql: "TABLE docs", cols: dtDocCols, docs: true,
		want: func(v *dtView) [][]string { return v.fullDocRows(v.docs(dtTruePred[*dtDoc]())) }}
}

func (g *dtGen) selectStar() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "star", sql: "SELECT * FROM docs WHERE " + p.sql(""), cols: dtDocCols, docs: true,
		want: func(v *dtView) [][]string { return v.fullDocRows(v.docs(p)) }}).flags(p)
}

func (g *dtGen) tableNotes() *dtQuery {
	return &dtQuery{kind: "table-notes", sql: "TABLE notes", cols: []dtCol{cNote, cTenant, cOther, cOther}, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, n := range v.notes(dtTruePred[*dtNote]()) {
				out = append(out, []string{dtItoa(n.id), dtStr(n.tenant), dtInt(n.docID), dtStr(n.body)})
			}
			return out
		}}
}

func (g *dtGen) labelsJoin() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "labels-join", sql: "SELECT d.id, l.label FROM docs d JOIN labels l ON l.doc_id = d.id WHERE " + p.sql("d."),
		cols: []dtCol{cDoc, cOther}, docs: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p) {
				for _, l := range v.w.labels {
					if l.docID != nil && *l.docID == d.id {
						out = append(out, []string{dtItoa(d.id), dtStr(l.label)})
					}
				}
			}
			return out
		}}).flags(p)
}

// labelsExcept: label doc ids that are not visible documents.
func (g *dtGen) labelsExcept() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "labels-except", sql: "SELECT doc_id FROM labels EXCEPT SELECT id FROM docs WHERE " + p.sql(""),
		cols: []dtCol{cOther}, docs: true,
		want: func(v *dtView) [][]string {
			vis := map[int]bool{}
			for _, d := range v.docs(p) {
				vis[d.id] = true
			}
			seen := map[string]bool{}
			var out [][]string
			for _, l := range v.w.labels {
				k := dtInt(l.docID)
				if (l.docID == nil || !vis[*l.docID]) && !seen[k] {
					seen[k] = true
					out = append(out, []string{k})
				}
			}
			return out
		}}).flags(p)
}

func (g *dtGen) fromSubquery() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "from-subquery", sql: "SELECT x.id, x.grp FROM (SELECT id, grp FROM docs WHERE " + p.sql("") + ") x WHERE x.grp IS NOT NULL",
		cols: []dtCol{cDoc, cOther}, docs: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p) {
				if d.grp != nil {
					out = append(out, []string{dtItoa(d.id), *d.grp})
				}
			}
			return out
		}}).flags(p)
}

func (g *dtGen) lateral() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "lateral", sql: "SELECT d.id, x.c FROM docs d CROSS JOIN LATERAL (SELECT count(*) AS c FROM notes n WHERE n.doc_id = d.id) x WHERE " + p.sql("d."),
		cols: []dtCol{cDoc, cOther}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, d := range v.docs(p) {
				c := 0
				for _, n := range v.notes(dtTruePred[*dtNote]()) {
					if n.docID != nil && *n.docID == d.id {
						c++
					}
				}
				out = append(out, []string{dtItoa(d.id), dtItoa(c)})
			}
			return out
		}}).flags(p)
}

func (g *dtGen) aggLeftJoin() *dtQuery {
	return &dtQuery{kind: "agg-left-join", sql: "SELECT d.grp, count(n.id) FROM docs d LEFT JOIN notes n ON n.doc_id = d.id GROUP BY d.grp",
		cols: []dtCol{cOther, cOther}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			counts := map[string]int{}
			for _, d := range v.docs(dtTruePred[*dtDoc]()) {
				k := dtStr(d.grp)
				counts[k] += 0
				for _, n := range v.notes(dtTruePred[*dtNote]()) {
					if n.docID != nil && *n.docID == d.id {
						counts[k]++
					}
				}
			}
			var out [][]string
			for k, n := range counts {
				out = append(out, []string{k, dtItoa(n)})
			}
			return out
		}}
}

func (g *dtGen) distinct() *dtQuery {
	pn := g.np()
	return (&dtQuery{kind: "distinct", sql: "SELECT DISTINCT n.doc_id FROM notes n JOIN docs d ON d.id = n.doc_id WHERE " + pn.sql("n."),
		cols: []dtCol{cDoc}, docs: true, notes: true,
		want: func(v *dtView) [][]string {
			seen := map[int]bool{}
			var out [][]string
			for _, n := range v.notes(pn) {
				if d := v.visibleDoc(n.docID); d != nil && !seen[d.id] {
					seen[d.id] = true
					out = append(out, []string{dtItoa(d.id)})
				}
			}
			return out
		}}).flags(pn)
}

func (g *dtGen) selfJoin() *dtQuery {
	p := g.dp()
	return (&dtQuery{kind: "self-join", sql: "SELECT a.id, b.id FROM docs a JOIN docs b ON a.owner_id = b.owner_id AND a.id < b.id WHERE " + p.sql("a."),
		cols: []dtCol{cDoc, cDoc}, docs: true,
		want: func(v *dtView) [][]string {
			var out [][]string
			for _, a := range v.docs(p) {
				for _, b := range v.docs(dtTruePred[*dtDoc]()) {
					if dtEqSS(a.owner, b.owner) == dtTrue && a.id < b.id {
						out = append(out, []string{dtItoa(a.id), dtItoa(b.id)})
					}
				}
			}
			return out
		}}).flags(p)
}

// maskedUse puts the masked column where it would filter, join, group or
// order: refused in every mode.
func (g *dtGen) maskedUse() *dtQuery {
	sql := dtPick(g.r,
		"SELECT id FROM docs ORDER BY secret",
		"SELECT secret, count(*) FROM docs GROUP BY secret",
		"SELECT d.id FROM docs d JOIN notes n ON n.body = d.secret",
		"SELECT id FROM docs WHERE secret LIKE 's-1%'",
		"SELECT n.id FROM notes n WHERE EXISTS (SELECT 1 FROM docs d WHERE d.id = n.doc_id AND d.secret IS NOT NULL)",
	)
	return &dtQuery{kind: "masked-use", sql: sql, cols: []dtCol{cOther}, docs: true, notes: strings.Contains(sql, "notes"), masked: true}
}

// strictProbe tries to learn about hidden rows through an error: some
// owner_id values are invalid LIKE patterns and some grp values invalid
// regular expressions, and PostgreSQL may evaluate the statement's own
// predicate before the policy's. Strict mode must refuse each of these.
func (g *dtGen) strictProbe() *dtQuery {
	sql := dtPick(g.r,
		`SELECT id FROM docs WHERE 'ab' ~~ owner_id`,
		`SELECT id FROM docs WHERE 'ab' ~~* owner_id`,
		`SELECT id FROM docs WHERE 'ab' !~~ owner_id`,
		`SELECT id FROM docs WHERE 'ab' LIKE ANY (ARRAY[owner_id])`,
		`SELECT id FROM docs WHERE 'ab' ILIKE ALL (ARRAY[owner_id])`,
		`SELECT id FROM docs WHERE 'x' ~ ANY (SELECT grp FROM docs)`,
		`SELECT n.id FROM notes n WHERE 'ab' LIKE ANY (SELECT owner_id FROM docs)`,
	)
	poison := func(d *dtDoc) bool { return d.owner != nil && *d.owner == `a\` }
	if strings.Contains(sql, "grp") {
		poison = func(d *dtDoc) bool { return d.grp != nil && *d.grp == "((" }
	}
	return &dtQuery{kind: "strict-probe", sql: sql, cols: []dtCol{cOther}, docs: true,
		notes: strings.Contains(sql, "notes"), strict: true, strictOnly: true, poison: poison}
}

// captureProbe names a CTE like the table notes' policy reads through its
// relation (parent: docs) and fills it so that everyone owns every
// document. Were the CTE to stand in for the table inside the filtered
// subquery, the statement would decide which notes the policy grants: it
// must be refused, in every mode.
func (g *dtGen) captureProbe() *dtQuery {
	values := func(xs []string) string {
		parts := make([]string, len(xs))
		for i, x := range xs {
			parts[i] = "('" + x + "')"
		}
		return "(VALUES " + strings.Join(parts, ", ") + ")"
	}
	forged := "WITH docs AS (SELECT l.doc_id AS id, t.tenant_id, u.owner_id FROM labels l, " +
		values(dtTenants) + " t(tenant_id), " + values(dtUsers) + " u(owner_id)) "
	sql := forged + dtPick(g.r, "SELECT n.id FROM notes n", "SELECT id FROM notes WHERE doc_id IN (SELECT id FROM docs)")
	return &dtQuery{kind: "capture-probe", sql: sql, cols: []dtCol{cNote}, notes: true, refuse: rewrite.CodeExpression}
}

// ---------------------------------------------------------------------------
// Running and checking one (query, subject) case.

type dtStats struct {
	ran, refused, rows, exact, nonEmpty, masks, maskedNull, unmasked, failures atomic.Int64
}

type dtCase struct {
	q    *dtQuery
	s    *dtSubject
	v    *dtView
	mode rewrite.Mode
}

func (c *dtCase) String() string {
	mode := "strict"
	if c.mode == rewrite.Trusted {
		mode = "trusted"
	}
	return fmt.Sprintf("query (%s, %s): %s\n  subject %s", c.q.kind, mode, c.q.sql, c.s)
}

func dtRun(ctx context.Context, pool *pgxpool.Pool, rw *rewrite.Rewriter, pol *filter.Policy, c *dtCase, st *dtStats, fail func(string, ...any)) {
	q, v := c.q, c.v
	var callerArgs []any
	if q.vec != nil {
		callerArgs = append(callerArgs, pgvector.NewVector(q.vec))
	}
	freq := filter.Request{Subject: c.s.subject, Agent: c.s.agent}
	res, err := rw.Rewrite(q.sql, rewrite.Request{Fragments: pol.Fragments(freq), Mode: c.mode, NArgs: len(callerArgs)})

	// Refusals: the statement's own, or the policy's for this subject.
	codes := map[rewrite.Code]bool{}
	if q.masked {
		codes[rewrite.CodeMaskedColumn] = true
	}
	if q.refuse != "" {
		codes[q.refuse] = true
	}
	if q.strict && c.mode == rewrite.Strict {
		codes[rewrite.CodeOperator] = true
		if q.strictOnly {
			codes[rewrite.CodeExpression] = true
		}
	}
	if (q.docs && v.docErr) || (q.notes && v.noteErr) {
		codes[rewrite.CodePolicy] = true
	}
	if len(codes) > 0 {
		switch code := rewrite.CodeOf(err); {
		case err == nil:
			args := append(slices.Clone(callerArgs), res.Args...)
			ran := "running it succeeds (the checks below say whether it leaks)"
			_, qerr := dtQueryRows(ctx, pool, res.SQL, args, q.cols)
			if qerr != nil {
				ran = "running it fails on a visible row's data: " + qerr.Error()
				if q.poison != nil && !slices.ContainsFunc(v.w.docs, func(d *dtDoc) bool { return v.doc[d.id] && q.poison(d) }) {
					ran = "LEAK: running it fails on a hidden row's data (no visible row holds the value): " + qerr.Error()
				}
			}
			fail("%s\n  accepted, want a refusal (%v); %s\n  rewritten: %s\n  args: %s",
				c, slices.Sorted(dtKeys(codes)), ran, res.SQL, dtFormatArgs(args))
			if qerr != nil || v.docErr && q.docs || v.noteErr && q.notes {
				return
			}
			// Go on to the checks that hold for every statement.
		case !codes[code]:
			fail("%s\n  refused with %q (%v), want one of %v", c, code, err, slices.Sorted(dtKeys(codes)))
		case code == rewrite.CodePolicy:
			fc := filter.CodeOf(err)
			if fc != filter.CodeNoSubject && fc != filter.CodeAgentNotGranted {
				fail("%s\n  policy refusal %v does not wrap a no_subject or agent_not_granted filter.Error", c, err)
			}
		}
		if err != nil {
			st.refused.Add(1)
			return
		}
	} else if err != nil {
		fail("%s\n  refused: %v", c, err)
		return
	}
	sub := c.s.subject
	for _, val := range []string{sub.Tenant, sub.ID} {
		if val != "" && strings.Contains(res.SQL, "'"+val+"'") && !strings.Contains(q.sql, "'"+val+"'") {
			fail("%s\n  a subject value (%q) is written into the SQL text: %s", c, val, res.SQL)
		}
	}
	args := append(slices.Clone(callerArgs), res.Args...)
	detail := func() string { return fmt.Sprintf("\n  rewritten: %s\n  args: %v", res.SQL, dtFormatArgs(args)) }
	got, err := dtQueryRows(ctx, pool, res.SQL, args, q.cols)
	if err != nil {
		fail("%s\n  query failed: %v%s", c, err, detail())
		return
	}
	st.ran.Add(1)
	st.rows.Add(int64(len(got)))
	if len(got) > 0 {
		st.nonEmpty.Add(1)
	}

	// Properties that hold for every statement.
	for _, row := range got {
		firstDoc := ""
		for i, kind := range q.cols {
			val := row.cells[i]
			switch kind {
			case cDoc:
				if firstDoc == "" {
					firstDoc = val
				}
				if id, err := strconv.Atoi(val); val != "NULL" && (err != nil || !v.doc[id]) {
					fail("%s\n  LEAK: docs.id %s is in the output but not visible to the subject%s", c, val, detail())
				}
			case cNote:
				if id, err := strconv.Atoi(val); val != "NULL" && (err != nil || !v.note[id]) {
					fail("%s\n  LEAK: notes.id %s is in the output but not visible to the subject%s", c, val, detail())
				}
			case cTenant:
				if val != sub.Tenant {
					fail("%s\n  LEAK: a row of tenant %s is returned to tenant %s%s", c, val, sub.Tenant, detail())
				}
			case cSecret:
				id, err := strconv.Atoi(firstDoc)
				if err != nil || !v.doc[id] {
					continue // reported above
				}
				st.masks.Add(1)
				want := dtStr(v.secret[id])
				if want == "NULL" {
					st.maskedNull.Add(1)
				} else {
					st.unmasked.Add(1)
				}
				if val != want {
					fail("%s\n  doc %d: secret reads %s, want %s (subject roles %v, stored %s)%s", c, id, val, want, sub.Roles, dtStr(v.w.docByID[id].secret), detail())
				}
			}
		}
	}

	// The whole result, where the statement's meaning is plain.
	if q.want == nil {
		return
	}
	want := dtRowsOf(q.want(v))
	st.exact.Add(1)
	if q.topK > 0 {
		if msg := dtCheckTopK(v.w, q, want, got); msg != "" {
			fail("%s\n  %s%s", c, msg, detail())
		}
		return
	}
	if !q.ordered {
		dtSort(want)
		dtSort(got)
	}
	if missing, extra := dtDiff(want, got); len(missing)+len(extra) > 0 {
		fail("%s\n  the database and the oracle disagree\n  oracle only (%d): %v\n  database only (%d): %v%s",
			c, len(missing), dtFirst(missing), len(extra), dtFirst(extra), detail())
	}
}

func dtKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func dtFormatArgs(args []any) string {
	parts := make([]string, len(args))
	for i, a := range args {
		if vec, ok := a.(pgvector.Vector); ok {
			parts[i] = fmt.Sprintf("$%d=vector%v", i+1, vec.Slice())
			continue
		}
		parts[i] = fmt.Sprintf("$%d=%#v", i+1, a)
	}
	return strings.Join(parts, " ")
}

// dtRow is an output row as text, NULL as "NULL", skipped columns empty.
type dtRow struct {
	cells []string
	key   string // the compared cells joined
}

func dtRowsOf(rows [][]string) []dtRow {
	out := make([]dtRow, len(rows))
	for i, r := range rows {
		out[i] = dtRow{cells: r, key: strings.Join(r, "|")}
	}
	return out
}

func dtQueryRows(ctx context.Context, pool *pgxpool.Pool, sql string, args []any, cols []dtCol) ([]dtRow, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dtRow
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		if len(vals) != len(cols) {
			return nil, fmt.Errorf("%d columns, the test expects %d", len(vals), len(cols))
		}
		var row dtRow
		var keyParts []string
		for i, x := range vals {
			cell := dtText(x)
			row.cells = append(row.cells, cell)
			if cols[i] != cSkip {
				keyParts = append(keyParts, cell)
			}
		}
		row.key = strings.Join(keyParts, "|")
		out = append(out, row)
	}
	return out, rows.Err()
}

func dtText(x any) string {
	switch v := x.(type) {
	case nil:
		return "NULL"
	case int32:
		return dtItoa(int(v))
	case int64:
		return strconv.FormatInt(v, 10)
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case pgvector.Vector:
		return fmt.Sprint(v.Slice())
	}
	return fmt.Sprintf("%T:%v", x, x)
}

func dtSort(rows []dtRow) {
	sort.Slice(rows, func(i, j int) bool { return rows[i].key < rows[j].key })
}

// dtDiff returns the rows of want missing from got and those of got not in
// want, as multisets.
func dtDiff(want, got []dtRow) (missing, extra []string) {
	n := map[string]int{}
	for _, r := range want {
		n[r.key]++
	}
	for _, r := range got {
		n[r.key]--
	}
	for k, c := range n {
		for ; c > 0; c-- {
			missing = append(missing, k)
		}
		for ; c < 0; c++ {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

func dtFirst(xs []string) []string {
	if len(xs) > 20 {
		return append(xs[:20:20], "...")
	}
	return xs
}

// dtDistance is embedding <=> vec; a NULL embedding sorts last.
func dtDistance(d *dtDoc, vec []float32) float64 {
	if d.emb == nil {
		return 100
	}
	var dot float64
	for i := range vec {
		dot += float64(d.emb[i]) * float64(vec[i])
	}
	return 1 - dot/(dtNorm(d.emb)*dtNorm(vec))
}

// dtCheckTopK checks ORDER BY distance LIMIT k against the candidates,
// allowing any order among rows whose distances are equal within float
// rounding (PostgreSQL computes in float4, the oracle in float64).
func dtCheckTopK(w *dtWorld, q *dtQuery, cands, got []dtRow) string {
	const eps = 1e-5
	dist := func(r dtRow) float64 {
		id, _ := strconv.Atoi(r.cells[0])
		if d := w.docByID[id]; d != nil {
			return dtDistance(d, q.vec)
		}
		return math.Inf(1)
	}
	if want := min(q.topK, len(cands)); len(got) != want {
		return fmt.Sprintf("LIMIT %d returned %d rows, the oracle has %d candidates (want %d)", q.topK, len(got), len(cands), want)
	}
	if missing, extra := dtDiff(cands, got); len(extra) > 0 {
		_ = missing
		return fmt.Sprintf("rows that are not candidates: %v", dtFirst(extra))
	}
	last := math.Inf(-1)
	for i, r := range got {
		d := dist(r)
		if d < last-eps {
			return fmt.Sprintf("row %d (%s) at distance %.6f comes after distance %.6f", i, r.key, d, last)
		}
		last = math.Max(last, d)
	}
	// Every candidate strictly closer than the last row returned must be in.
	n := map[string]int{}
	for _, r := range got {
		n[r.key]++
	}
	for _, r := range cands {
		if dist(r) < last-eps {
			if n[r.key] == 0 {
				return fmt.Sprintf("candidate %s at distance %.6f is missing; the last row returned is at %.6f", r.key, dist(r), last)
			}
			n[r.key]--
		}
	}
	return ""
}

// ---------------------------------------------------------------------------
// The test.

func TestRewriteDifferential(t *testing.T) {
	t.Parallel()
	start := time.Now()
	pool, schema := testdb.Schema(t)
	set, err := policy.Parse(policy.Source{Name: "differential.yaml", Data: []byte(dtPolicy)})
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	pol, err := filter.Compile(set)
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	rw := rewrite.New(set, []string{schema, "public"})

	rng := rand.New(rand.NewPCG(20250612, 11))
	w := dtGenWorld(rng, 200, 300, 250)
	dtLoad(t, pool, w)
	subjects := dtGenSubjects(rng, 40)
	views := make([]*dtView, len(subjects))
	for i, s := range subjects {
		views[i] = dtViewOf(w, s)
	}

	g := &dtGen{r: rng, schema: schema}
	const perQuery = 4
	var cases []*dtCase
	for i := range *dtCases {
		q := g.query()
		for j := range perQuery {
			si := rng.IntN(len(subjects))
			if j == 0 {
				si = i % len(subjects) // every subject, the error ones included
			}
			mode := rewrite.Strict
			if dtChance(rng, 0.25) && !q.strictOnly {
				mode = rewrite.Trusted
			}
			cases = append(cases, &dtCase{q: q, s: subjects[si], v: views[si], mode: mode})
		}
	}

	var st dtStats
	fail := func(format string, args ...any) {
		if st.failures.Add(1) <= 12 {
			t.Errorf(format, args...)
		}
	}
	work := make(chan *dtCase)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for c := range work {
				dtRun(t.Context(), pool, rw, pol, c, &st, fail)
			}
		})
	}
	for _, c := range cases {
		work <- c
	}
	close(work)
	wg.Wait()

	if n := st.failures.Load(); n > 12 {
		t.Errorf("... and %d more failures", n-12)
	}
	t.Logf("%d docs, %d notes, %d labels, %d subjects; %d queries x %d subjects = %d cases: %d ran (%d non-empty, %d rows, %d whole-result comparisons), %d refused as expected; %d masked values checked (%d hidden, %d shown); %v",
		len(w.docs), len(w.notes), len(w.labels), len(subjects), *dtCases, perQuery, len(cases),
		st.ran.Load(), st.nonEmpty.Load(), st.rows.Load(), st.exact.Load(), st.refused.Load(),
		st.masks.Load(), st.maskedNull.Load(), st.unmasked.Load(), time.Since(start).Round(time.Millisecond))
	// The run must not pass vacuously.
	if *dtCases >= 100 && (st.nonEmpty.Load() < int64(len(cases))/4 || st.maskedNull.Load() == 0 || st.unmasked.Load() == 0 || st.refused.Load() == 0) {
		t.Errorf("too little was checked: %d non-empty results of %d cases, %d hidden and %d shown masked values, %d refusals",
			st.nonEmpty.Load(), len(cases), st.maskedNull.Load(), st.unmasked.Load(), st.refused.Load())
	}
}
