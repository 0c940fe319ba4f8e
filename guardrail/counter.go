package guardrail

import (
	"sync"
	"time"
)

// counterKey identifies the budget of one (tenant, subject, agent) under
// one guardrail. The window length is part of it, so a policy that
// changes a guardrail's window starts new counts rather than mixing them.
type counterKey struct {
	guardrail string
	windowSec int64
	tenant    string
	subject   string
	agent     string
}

// counter is this instance's state of one key in its current window.
type counter struct {
	key counterKey

	mu      sync.Mutex
	rule    *rule // the definition it was last checked under
	dead    bool  // evicted: look the key up again
	window  int64 // index of the current window
	touched bool  // a request was checked or recorded in the window
	joined  bool  // the database counts this instance in the window
	meters  [budgets]meter
	// docs are the documents served here in the window, newDocs those not
	// yet reported.
	docs       map[string]struct{}
	newDocs    []string
	hist       history
	fired      bool // the window's event was emitted
	suspension *Suspension
	// tail is what the previous window still has to report.
	tail *tail
}

// history is the baseline's input, from the window's last sync.
type history struct {
	known   bool
	rows    int64 // rows of the baseline's windows before this one
	windows int64 // whole windows of the key's history before this one
}

// tail is a past window's use not yet reported.
type tail struct {
	window  int64
	joining bool
	used    [budgets]int64
	release [budgets]int64
	docs    []string
}

// decision is one guardrail's answer for one request.
type decision struct {
	action          Action
	pending         bool
	retryAfter      time.Duration
	capK            int
	observed, limit int64
	fire            bool // the guardrail's first trigger of the window here
	needSync        bool // the key waits for a grant: sync soon
	suspension      *Suspension
}

// roll moves the counter to the window holding now, keeping what the old
// window has not reported as its tail. A clock that steps back keeps the
// later window.
func (c *counter) roll(now time.Time) {
	w := windowIndex(now, c.key.windowSec)
	if w <= c.window {
		return
	}
	if t := c.oldTail(); t != nil {
		c.tail = t // an older unreported tail, if any, is dropped: see doc.go
	}
	c.window, c.touched, c.joined, c.fired = w, false, false, false
	c.meters = [budgets]meter{}
	c.docs, c.newDocs = nil, nil
	c.hist, c.suspension = history{}, nil
}

// oldTail is the current window's unreported use, before a roll.
func (c *counter) oldTail() *tail {
	t := &tail{window: c.window, joining: !c.joined, docs: c.newDocs}
	some := len(t.docs) > 0
	for b := range c.meters {
		t.used[b] = c.meters[b].used
		t.release[b] = c.meters[b].held
		some = some || t.used[b] > 0
	}
	if !some {
		return nil
	}
	return t
}

// check decides a request under r, before it is served; ok is false
// when the counter was evicted and the key must be looked up again.
func (c *counter) check(r *rule, now time.Time, live int64, syncEvery time.Duration, suspend func(*counter, *rule) *Suspension) (d decision, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return d, false
	}
	c.rule = r
	c.roll(now)
	c.touched = true
	if observed, limit, spent := c.spent(r); spent {
		d = decision{action: r.action, observed: observed, limit: limit, fire: !c.fired}
		c.fired = true
		switch r.action {
		case Throttle:
			_, end := WindowOf(now, r.g.Window)
			d.retryAfter = end.Sub(now)
		case Cap:
			d.capK = r.g.CapK
		case Suspend:
			if c.suspension == nil {
				c.suspension = suspend(c, r)
			}
			d.suspension = c.suspension
		}
		return d, true
	}
	d.needSync = !c.joined
	if r.leased && !c.hasShare(r, live) {
		// The budget may be spent elsewhere: hold back until the next sync
		// says. A cap stays a cap; anything else waits.
		d.pending, d.needSync = true, true
		if r.action == Cap {
			d.action, d.capK = Cap, r.g.CapK
			return d, true
		}
		d.action, d.retryAfter = Throttle, syncEvery
	}
	return d, true
}

// spent reports a budget (or the baseline) the key has used up, as far as
// this instance knows: the window's count already reached it before this
// request.
func (c *counter) spent(r *rule) (observed, limit int64, ok bool) {
	for b, lim := range r.limits {
		if v := c.meters[b].view(); lim > 0 && v >= lim {
			return v, lim, true
		}
	}
	if b := r.g.Baseline; b != nil && c.hist.known {
		if t, ok := SpikeThreshold(*b, c.hist.rows, c.hist.windows); ok {
			if v := c.meters[rowsBudget].view(); v >= t {
				return v, t, true
			}
		}
	}
	return 0, 0, false
}

func (c *counter) hasShare(r *rule, live int64) bool {
	for b, lim := range r.limits {
		if lim > 0 && !c.meters[b].hasShare(c.joined, r.bootstrap(b, live)) {
			return false
		}
	}
	return true
}

// admit counts a request that is served; false means evicted, as check.
func (c *counter) admit(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return false
	}
	c.roll(now)
	c.touched = true
	c.meters[requestsBudget].used++
	return true
}

// record counts what a served request returned; documents are counted
// only for a guardrail with a documents budget. False means evicted.
func (c *counter) record(now time.Time, rows int, documents []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return false
	}
	c.roll(now)
	c.touched = true
	c.meters[rowsBudget].used += int64(max(rows, 0))
	if c.rule.limits[documentsBudget] == 0 {
		return true
	}
	for _, d := range documents {
		if _, seen := c.docs[d]; seen {
			continue
		}
		if c.docs == nil {
			c.docs = map[string]struct{}{}
		}
		c.docs[d] = struct{}{}
		c.newDocs = append(c.newDocs, d)
		c.meters[documentsBudget].used++
	}
	return true
}
