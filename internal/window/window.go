// Package window counts events in a sliding time window. The controller
// limits two things with it: alert actions (so a burst of alerts acts on at
// most N targets per window) and unknown subscription tokens per address
// (so tokens cannot be guessed).
package window

import (
	"sync"
	"time"
)

// Counter holds at most N events per Window; N 0 means no limit.
type Counter struct {
	N      int
	Window time.Duration

	mu sync.Mutex
	at []time.Time
}

// New returns a counter of n events per w.
func New(n int, w time.Duration) *Counter { return &Counter{N: n, Window: w} }

// Full reports whether no more event fits now.
func (c *Counter) Full(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.room(now)
}

// Wait is how long until one more event fits: zero when one fits now.
func (c *Counter) Wait(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.room(now) {
		return 0
	}
	return c.at[len(c.at)-c.N].Add(c.Window).Sub(now)
}

// Add records an event, whether or not it fits.
func (c *Counter) Add(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.room(now)
	if c.N > 0 {
		c.at = append(c.at, now)
	}
}

// TakeAll records one event in every counter, or in none when one of them
// is full: a refusal by one limit must not use up another's room.
func TakeAll(now time.Time, cs ...*Counter) bool {
	for _, c := range cs {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	for _, c := range cs {
		if !c.room(now) {
			return false
		}
	}
	for _, c := range cs {
		if c.N > 0 {
			c.at = append(c.at, now)
		}
	}
	return true
}

// room drops the events that left the window and reports whether one more
// fits; c.mu must be held.
func (c *Counter) room(now time.Time) bool {
	if c.N <= 0 {
		return true
	}
	i := 0
	for i < len(c.at) && now.Sub(c.at[i]) >= c.Window {
		i++
	}
	c.at = c.at[i:]
	return len(c.at) < c.N
}
