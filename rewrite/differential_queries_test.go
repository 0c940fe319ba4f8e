package rewrite_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ragfence/ragfence/rewrite"
)

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
