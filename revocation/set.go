package revocation

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Caller is who a request acts for, as its token says.
type Caller struct {
	Tenant  string
	Subject string
	Agent   string // "" when the user calls directly
	TokenID string // the jti, or ""
}

// key is what a revocation matches on: a token, a subject, or an agent
// with (subject set) or without a user.
type key struct {
	tenant  string
	kind    Kind
	target  string // token id, subject or agent
	subject string // KindAgent limited to one user
}

func keyOf(r Revocation) key {
	switch r.Kind {
	case KindToken:
		return key{r.Tenant, KindToken, r.TokenID, ""}
	case KindSubject:
		return key{r.Tenant, KindSubject, r.Subject, ""}
	}
	return key{r.Tenant, KindAgent, r.Agent, r.Subject}
}

// set is the revocations a Watcher knows, indexed for Match: a request's
// lookup is at most four map reads under a read lock.
type set struct {
	mu    sync.RWMutex
	byID  map[int64]Revocation
	byKey map[key][]int64 // ids in increasing order
}

func newSet() *set { return &set{byID: map[int64]Revocation{}, byKey: map[key][]int64{}} }

// replace makes rs the whole set (a reload).
func (s *set) replace(rs []Revocation) {
	byID, byKey := make(map[int64]Revocation, len(rs)), make(map[key][]int64, len(rs))
	for _, r := range rs {
		byID[r.ID] = r
		k := keyOf(r)
		byKey[k] = append(byKey[k], r.ID)
	}
	for _, ids := range byKey {
		slices.Sort(ids)
	}
	s.mu.Lock()
	s.byID, s.byKey = byID, byKey
	s.mu.Unlock()
}

// put adds or updates r; a lifted revocation leaves the set.
func (s *set) put(r Revocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(r.ID)
	if !r.LiftedAt.IsZero() {
		return
	}
	s.byID[r.ID] = r
	k := keyOf(r)
	ids := append(s.byKey[k], r.ID)
	slices.Sort(ids)
	s.byKey[k] = ids
}

func (s *set) remove(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(id)
}

func (s *set) removeLocked(id int64) {
	old, ok := s.byID[id]
	if !ok {
		return
	}
	delete(s.byID, id)
	k := keyOf(old)
	ids := slices.DeleteFunc(s.byKey[k], func(x int64) bool { return x == id })
	if len(ids) == 0 {
		delete(s.byKey, k)
		return
	}
	s.byKey[k] = ids
}

// match returns the revocation in force at now that refuses c, the most
// specific first: the token, the user, the agent for this user, the agent.
func (s *set) match(c Caller, now time.Time) (Revocation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := [4]key{
		{c.Tenant, KindToken, c.TokenID, ""},
		{c.Tenant, KindSubject, c.Subject, ""},
		{c.Tenant, KindAgent, c.Agent, c.Subject},
		{c.Tenant, KindAgent, c.Agent, ""},
	}
	n := 4
	if c.Agent == "" {
		n = 2
	}
	for i, k := range keys[:n] {
		if k.target == "" || (i == 2 && k.subject == "") {
			continue
		}
		for _, id := range s.byKey[k] {
			if r := s.byID[id]; r.InForce(now) {
				return r, true
			}
		}
	}
	return Revocation{}, false
}

// concerning lists the revocations in force at now that touch c's
// subject or agent (for "what may this identity see").
func (s *set) concerning(c Caller, now time.Time) []Revocation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Revocation
	for _, r := range s.byID {
		if r.Tenant != c.Tenant || !r.InForce(now) {
			continue
		}
		switch {
		case r.Kind == KindToken && r.TokenID == c.TokenID && c.TokenID != "",
			r.Kind == KindSubject && r.Subject == c.Subject,
			r.Kind == KindAgent && c.Agent != "" && r.Agent == c.Agent && (r.Subject == "" || r.Subject == c.Subject):
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Revocation) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
