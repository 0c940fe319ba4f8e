package rewrite_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/rewrite"
)

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
