package api

import (
	"fmt"
	"testing"
	"time"
)

// TestTokenMemoryBounds: the memory honours a token for at most its TTL
// and never past the token's own expiry, holds at most its limit, and a
// lookup that began before a revocation cannot put the token back.
func TestTokenMemoryBounds(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newTokenMemory(time.Minute, 3)
	who := &Principal{Actor: "token:prom", Role: "viewer"}

	m.remember("a", who, time.Time{}, m.generation(), now)
	if p := m.recall("a", now.Add(59*time.Second)); p == nil || p.Actor != "token:prom" || !p.Remembered {
		t.Errorf("recall within the TTL: %+v", p)
	}
	if p := m.recall("a", now.Add(time.Minute)); p != nil {
		t.Errorf("recalled at the TTL: %+v", p)
	}

	m.remember("b", who, now.Add(10*time.Second), m.generation(), now)
	if p := m.recall("b", now.Add(10*time.Second)); p != nil {
		t.Errorf("recalled at the token's own expiry, before the TTL: %+v", p)
	}

	gen := m.generation() // a lookup begins
	m.drop(func(p *Principal) bool { return p.Actor == "token:prom" })
	m.remember("c", who, time.Time{}, gen, now) // and ends after the revocation
	if p := m.recall("c", now); p != nil {
		t.Errorf("a lookup that raced a revocation put the token back: %+v", p)
	}

	for i := range 10 {
		m.remember(fmt.Sprint("k", i), &Principal{Actor: fmt.Sprint("token:t", i)}, time.Time{}, m.generation(), now.Add(time.Duration(i)*time.Second))
	}
	if len(m.entries) != 3 {
		t.Errorf("%d entries, want the limit of 3", len(m.entries))
	}
	for i := 7; i < 10; i++ {
		if m.recall(fmt.Sprint("k", i), now.Add(10*time.Second)) == nil {
			t.Errorf("k%d, among the newest, was evicted", i)
		}
	}
}
