package rewrite_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/policy"
)

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
