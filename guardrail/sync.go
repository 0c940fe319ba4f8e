package guardrail

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ragfence/ragfence/sqlc/store"
)

// item is one key's report in a sync: its current window's, or a past
// window's tail.
type item struct {
	c       *counter
	window  int64
	current bool // grants in the answer apply to the counter
	joining bool
	history int
	used    [budgets]int64
	release [budgets]int64
	max     [budgets]int64
	docs    []string
}

// snapshot collects what c has to report and marks it as being reported.
// evict is true when the counter had nothing to say in a window it was
// not used in: it is then dead, and its key must be removed.
func (c *counter) snapshot(now time.Time, live int64) (items []item, evict bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now)
	r := c.rule
	if t := c.tail; t != nil {
		items = append(items, item{c: c, window: t.window, joining: t.joining, history: r.historyWindows(),
			used: t.used, release: t.release, docs: t.docs})
		c.tail = nil
	}
	if !c.touched {
		c.dead = len(items) == 0
		return items, c.dead
	}
	if !c.wantsSync(r, live) {
		return items, false
	}
	// Only a key in use asks for a grant: one idle since the last sync only
	// gives back what it holds beyond its floor.
	_, _, spent := c.spent(r)
	wants := !c.joined || (r.leased && !spent && !c.hasShare(r, live))
	it := item{c: c, window: c.window, current: true, joining: !c.joined, history: r.historyWindows(), docs: c.newDocs}
	c.newDocs = nil
	for b := range c.meters {
		if c.meters[b].used > 0 || wants {
			it.max[b] = r.grantLimit(b)
		}
		it.used[b], it.release[b] = c.meters[b].snapshot(r.bootstrap(b, live))
	}
	return append(items, it), false
}

// wantsSync reports whether the current window has anything to report,
// to give back or to ask for.
func (c *counter) wantsSync(r *rule, live int64) bool {
	if !c.joined || len(c.newDocs) > 0 || (r.g.Baseline != nil && !c.hist.known) {
		return true
	}
	for b := range c.meters {
		if m := c.meters[b]; m.used > 0 || m.held > r.bootstrap(b, live) {
			return true
		}
	}
	_, _, spent := c.spent(r)
	return r.leased && !spent && !c.hasShare(r, live)
}

// synced applies the database's answer to an item.
func (c *counter) synced(it item, row store.SyncGuardrailsRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !it.current || it.window != c.window {
		return // reported; grants of a past window are of no use
	}
	totals := [budgets]int64{row.RowCount, row.RequestCount, row.DocumentCount}
	grants := [budgets]int64{row.GrantRows, row.GrantRequests, row.GrantDocuments}
	for b := range c.meters {
		c.meters[b].synced(totals[b], grants[b])
	}
	c.joined = true
	if row.FirstWindow.Valid {
		first := windowIndex(row.FirstWindow.Time, c.key.windowSec)
		c.hist = history{known: true, rows: row.HistoryRows, windows: c.window - first}
	}
}

// failed takes back an item whose sync did not reach the database, to
// report it next time.
func (c *counter) failed(it item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it.current && it.window == c.window {
		for b := range c.meters {
			c.meters[b].failed()
		}
		c.newDocs = append(it.docs, c.newDocs...)
		return
	}
	// A tail, or a window that ended while its report was under way. Only
	// the latest past window is kept: see doc.go.
	if c.tail != nil && c.tail.window != it.window {
		if c.tail.window > it.window {
			return
		}
		c.tail = nil
	}
	if c.tail == nil {
		c.tail = &tail{window: it.window, joining: it.joining}
	}
	for b := range it.used {
		c.tail.used[b] += it.used[b]
		c.tail.release[b] += it.release[b]
	}
	c.tail.docs = append(c.tail.docs, it.docs...)
}

// syncOnce reports every counter's news in one round trip and applies the
// answers. Syncs never overlap.
func (e *Engine) syncOnce(ctx context.Context) error {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	now := e.now()
	items := e.collect(now)
	if len(items) == 0 && e.sinceSync() < e.heartbeatEvery() {
		return nil
	}
	e.lastSync.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, e.syncTimeout())
	defer cancel()
	rows, err := e.q.SyncGuardrails(ctx, e.params(items))
	if err == nil && len(rows) != len(items) {
		err = fmt.Errorf("%d answers for %d keys", len(rows), len(items))
	}
	if err != nil {
		for _, it := range items {
			it.c.failed(it)
		}
		return fmt.Errorf("guardrail: sync: %w", err)
	}
	for _, row := range rows {
		it := items[row.Idx-1]
		it.c.synced(it, row)
		e.live.Store(int64(max(row.LiveInstances, 1)))
	}
	return nil
}

// collect snapshots every counter, sorted by key and window: concurrent
// syncs then lock the database's rows in one order.
func (e *Engine) collect(now time.Time) []item {
	var items []item
	live := e.live.Load()
	e.counters.each(func(c *counter) {
		its, evict := c.snapshot(now, live)
		items = append(items, its...)
		if evict {
			e.counters.remove(c)
		}
	})
	slices.SortFunc(items, func(a, b item) int {
		ka, kb := a.c.key, b.c.key
		return cmp.Or(cmp.Compare(ka.guardrail, kb.guardrail), cmp.Compare(ka.windowSec, kb.windowSec),
			cmp.Compare(ka.tenant, kb.tenant), cmp.Compare(ka.subject, kb.subject), cmp.Compare(ka.agent, kb.agent),
			cmp.Compare(a.window, b.window))
	})
	return items
}

// params lays the items out as the parallel arrays of guardrail_sync.
func (e *Engine) params(items []item) store.SyncGuardrailsParams {
	p := store.SyncGuardrailsParams{Instance: e.instance, LiveSeconds: e.liveFor().Seconds()}
	for _, it := range items {
		k := it.c.key
		p.Guardrails = append(p.Guardrails, k.guardrail)
		p.WindowSeconds = append(p.WindowSeconds, int32(k.windowSec))
		p.Tenants, p.Subjects, p.Agents = append(p.Tenants, k.tenant), append(p.Subjects, k.subject), append(p.Agents, k.agent)
		p.WindowStarts = append(p.WindowStarts, pgtype.Timestamptz{Time: windowStart(it.window, k.windowSec), Valid: true})
		p.HistoryWindows = append(p.HistoryWindows, int32(it.history))
		p.Joining = append(p.Joining, it.joining)
		p.Rows, p.Requests = append(p.Rows, it.used[rowsBudget]), append(p.Requests, it.used[requestsBudget])
		p.ReleaseRows = append(p.ReleaseRows, it.release[rowsBudget])
		p.ReleaseRequests = append(p.ReleaseRequests, it.release[requestsBudget])
		p.ReleaseDocuments = append(p.ReleaseDocuments, it.release[documentsBudget])
		p.MaxRows = append(p.MaxRows, it.max[rowsBudget])
		p.MaxRequests = append(p.MaxRequests, it.max[requestsBudget])
		p.MaxDocuments = append(p.MaxDocuments, it.max[documentsBudget])
		docs := documentKeys(it.docs)
		p.DocFrom = append(p.DocFrom, int32(len(p.Documents)+1))
		p.Documents = append(p.Documents, docs...)
		p.DocTo = append(p.DocTo, int32(len(p.Documents)))
	}
	return p
}

// documentKeys are the documents as the database keeps them: a hash of
// each, so a long or sensitive id is neither stored nor too long for an
// index, sorted so concurrent syncs insert in one order.
func documentKeys(docs []string) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		sum := sha256.Sum256([]byte(d))
		out[i] = hex.EncodeToString(sum[:16])
	}
	slices.Sort(out)
	return out
}

// prune drops the windows no instance reads any more; each key's own sync
// prunes it, this catches keys no one counts.
func (e *Engine) prune(ctx context.Context) error {
	now := pgtype.Timestamptz{Time: e.now(), Valid: true}
	if _, err := e.q.PruneGuardrailCounters(ctx, now); err != nil {
		return fmt.Errorf("guardrail: prune counters: %w", err)
	}
	if _, err := e.q.PruneGuardrailDocuments(ctx, now); err != nil {
		return fmt.Errorf("guardrail: prune documents: %w", err)
	}
	if _, err := e.q.PruneGuardrailInstances(ctx); err != nil {
		return fmt.Errorf("guardrail: prune instances: %w", err)
	}
	return nil
}
