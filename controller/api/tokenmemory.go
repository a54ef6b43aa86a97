package api

import (
	"sync"
	"time"
)

// The token memory's bounds. The TTL is how long a token the database
// vouched for is still honoured once the database stops answering, and so
// how long another replica's revocation can go unnoticed here (see
// tokenMemory). A few hundred tokens cover every automation an operator
// runs; a bigger set is not remembered in full, which only means some
// tokens get 503 during an outage.
const (
	lookupTimeout    = 2 * time.Second
	tokenMemoryTTL   = 5 * time.Minute
	tokenMemoryLimit = 512
)

// tokenMemory remembers bearer tokens the database lately vouched for, so
// that a database outage does not lock out the callers that need the
// controller most then: Prometheus scraping /metrics (whose
// boxfleet_store_up says the database is gone) and an operator's CLI.
//
// It is consulted only when the database lookup fails, never instead of
// it, so a token revoked while the database answers is refused at once on
// every replica. Revocation through this API (a token deleted, a reseller
// account changed or deleted) drops the tokens it revokes at once. What it cannot see is a token
// revoked through another replica just before this one lost the database:
// that token is honoured here for at most the TTL after this replica last
// verified it, and only while the database stays unreachable.
//
// Entries are keyed by the token's hash (store.HashToken): the memory
// holds no secret, and its keys open nothing.
type tokenMemory struct {
	ttl   time.Duration
	limit int

	mu sync.Mutex
	// gen moves with every drop: a lookup that began before a revocation
	// must not put back what the revocation dropped.
	gen     uint64
	entries map[string]rememberedToken
	warned  time.Time // the last recall logged as a warning
}

type rememberedToken struct {
	who   Principal
	until time.Time
}

func newTokenMemory(ttl time.Duration, limit int) *tokenMemory {
	return &tokenMemory{ttl: ttl, limit: limit, entries: map[string]rememberedToken{}}
}

// generation is to be read before a lookup and handed to remember.
func (m *tokenMemory) generation() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

// remember records that the database vouched for the token with hash h at
// now. expires, when set, is the token's own expiry, past which it is not
// honoured either.
func (m *tokenMemory) remember(h string, who *Principal, expires time.Time, gen uint64, now time.Time) {
	until := now.Add(m.ttl)
	if !expires.IsZero() && expires.Before(until) {
		until = expires
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if gen != m.gen {
		return
	}
	if _, ok := m.entries[h]; !ok && len(m.entries) >= m.limit {
		m.evict(now)
	}
	w := *who
	w.Session = nil
	m.entries[h] = rememberedToken{who: w, until: until}
}

// evict makes room: the expired entries go, or else the one that would
// expire first. Called with mu held, only when the memory is full.
func (m *tokenMemory) evict(now time.Time) {
	var first string
	for h, e := range m.entries {
		if !now.Before(e.until) {
			delete(m.entries, h)
			continue
		}
		if first == "" || e.until.Before(m.entries[first].until) {
			first = h
		}
	}
	if len(m.entries) >= m.limit {
		delete(m.entries, first)
	}
}

// forget drops one token: the database said it is no token (any more).
func (m *tokenMemory) forget(h string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, h)
}

// drop forgets every token whose principal matches: something that can
// revoke it went through.
func (m *tokenMemory) drop(match func(*Principal) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	for h, e := range m.entries {
		if match(&e.who) {
			delete(m.entries, h)
		}
	}
}

// recall returns the principal of a token remembered and not expired at
// now, marked as answered from memory, or nil.
func (m *tokenMemory) recall(h string, now time.Time) *Principal {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[h]
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		delete(m.entries, h)
		return nil
	}
	w := e.who
	w.Remembered = true
	return &w
}

// warnRecall says whether a recall at now should be logged as a warning:
// once a minute, since during an outage every scrape and call recalls.
func (m *tokenMemory) warnRecall(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.warned) < time.Minute {
		return false
	}
	m.warned = now
	return true
}
