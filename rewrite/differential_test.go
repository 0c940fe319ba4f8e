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
	"flag"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

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
