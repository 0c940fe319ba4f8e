package filter_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/ragfence/ragfence/policy"
)

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
