package guardrail

// meter is one budget of one key in the current window (rows, requests or
// documents), as one instance sees it: what every instance had reported
// at its last sync, what it used since, and the share of the remaining
// budget the database has granted it.
//
// The database keeps, per key and window, the total used and the budget
// it has granted instances but they have not yet reported used (held).
// Each sync reports what was used, gives back what the instance will not
// need and takes a share of what nobody uses or holds; so used + held
// never exceeds the budget, and an instance that serves only within its
// grant cannot push the sum over it (see doc.go for the bound).
type meter struct {
	total   int64 // every instance's use, as of the last sync
	used    int64 // used here since the last snapshot
	sending int64 // used before the snapshot, in the sync under way
	held    int64 // what the database holds for this instance
	prev    int64 // held before the snapshot, restored if the sync fails
}

// view is the best known use of the budget by every instance.
func (m *meter) view() int64 { return m.total + m.sending + m.used }

// hasShare reports whether this instance may use one more unit. Before
// its first sync in a window (not joined) it may use a bootstrap share of
// the budget that no grant backs, shared with the sync under way.
func (m *meter) hasShare(joined bool, bootstrap int64) bool {
	if !joined {
		return m.sending+m.used < bootstrap
	}
	return m.used < m.held
}

// snapshot starts a sync: it returns what to report used and what to give
// back, keeping of the unused grant what the instance used since the last
// sync (its likely need until the next one), and at least keep.
func (m *meter) snapshot(keep int64) (used, release int64) {
	used = m.used
	kept := min(max(m.held-used, 0), max(used, keep))
	release = m.held - kept
	m.prev, m.sending, m.used, m.held = m.held, used, 0, kept
	return used, release
}

// synced applies a sync's answer: every instance's total, and a grant on
// top of what the instance kept.
func (m *meter) synced(total, grant int64) {
	m.total, m.sending = total, 0
	m.held += grant
}

// failed undoes a snapshot whose sync did not reach the database.
func (m *meter) failed() {
	m.used += m.sending
	m.sending, m.held = 0, m.prev
}
