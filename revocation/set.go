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
	// PriorActors are the agents earlier in the delegation chain (nested
	// act claims): a revoked agent is refused wherever it stands in it.
	PriorActors []string
	TokenID     string // the jti, or ""
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
// specific first: the token, the user, then each agent of the chain, for
// this user before for anyone.
func (s *set) match(c Caller, now time.Time) (Revocation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]key, 0, 2+2*(1+len(c.PriorActors)))
	if c.TokenID != "" {
		keys = append(keys, key{c.Tenant, KindToken, c.TokenID, ""})
	}
	keys = append(keys, key{c.Tenant, KindSubject, c.Subject, ""})
	for _, agent := range append([]string{c.Agent}, c.PriorActors...) {
		if agent != "" {
			keys = append(keys, key{c.Tenant, KindAgent, agent, c.Subject}, key{c.Tenant, KindAgent, agent, ""})
		}
	}
	for _, k := range keys {
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
			r.Kind == KindAgent && (r.Agent == c.Agent && c.Agent != "" || slices.Contains(c.PriorActors, r.Agent)) &&
				(r.Subject == "" || r.Subject == c.Subject):
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Revocation) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
