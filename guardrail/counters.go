package guardrail

import (
	"hash/maphash"
	"sync"
	"time"
)

// counters maps keys to counters in shards, so concurrent requests for
// different keys rarely share a lock, and a lookup allocates nothing.
type counters struct {
	seed   maphash.Seed
	shards [64]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[counterKey]*counter
}

func newCounters() *counters {
	cs := &counters{seed: maphash.MakeSeed()}
	for i := range cs.shards {
		cs.shards[i].m = map[counterKey]*counter{}
	}
	return cs
}

func (cs *counters) shard(k counterKey) *shard {
	h := maphash.String(cs.seed, k.subject) ^ maphash.String(cs.seed, k.agent) ^ maphash.String(cs.seed, k.guardrail)
	return &cs.shards[h%uint64(len(cs.shards))]
}

// get returns the live counter of k, making one in the window of now.
func (cs *counters) get(k counterKey, r *rule, now time.Time) *counter {
	s := cs.shard(k)
	s.mu.RLock()
	c := s.m[k]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.m[k]; c == nil {
		c = &counter{key: k, rule: r, window: windowIndex(now, k.windowSec)}
		s.m[k] = c
	}
	return c
}

// remove drops c, if it is still k's counter.
func (cs *counters) remove(c *counter) {
	s := cs.shard(c.key)
	s.mu.Lock()
	if s.m[c.key] == c {
		delete(s.m, c.key)
	}
	s.mu.Unlock()
}

// each calls fn for every counter, holding no shard lock while it runs.
func (cs *counters) each(fn func(*counter)) {
	var batch []*counter
	for i := range cs.shards {
		s := &cs.shards[i]
		s.mu.RLock()
		batch = batch[:0]
		for _, c := range s.m {
			batch = append(batch, c)
		}
		s.mu.RUnlock()
		for _, c := range batch {
			fn(c)
		}
	}
}
