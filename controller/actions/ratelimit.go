package actions

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is "at most N actions per window", written N/window (30/1m).
type Rate struct {
	N      int
	Window time.Duration
}

// ParseRate reads N/window; "0" or "" disables the limit.
func ParseRate(s string) (Rate, error) {
	if s == "" || s == "0" {
		return Rate{}, nil
	}
	n, w, ok := strings.Cut(s, "/")
	count, err1 := strconv.Atoi(n)
	win, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || count < 0 || win <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate like 30/1m", s)
	}
	return Rate{N: count, Window: win}, nil
}

func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	return fmt.Sprintf("%d/%s", r.N, r.Window)
}

// limiter is a sliding-window counter: a burst of alerts (a whole region
// failing at once) acts on at most N targets per window, and the rest wait
// for Alertmanager's retries.
type limiter struct {
	mu   sync.Mutex
	rate Rate
	at   []time.Time
}

// take records one action in every limiter, or in none when one of them
// is full. Fix: checking them one by one let a refusal by the per-action
// limiter use up a slot of the global one, so retried drains starved
// suspensions.
func take(now time.Time, ls ...*limiter) bool {
	for _, l := range ls {
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	for _, l := range ls {
		if !l.room(now) {
			return false
		}
	}
	for _, l := range ls {
		if l.rate.N > 0 {
			l.at = append(l.at, now)
		}
	}
	return true
}

// room drops the actions that left the window and reports whether one more
// fits; l.mu must be held.
func (l *limiter) room(now time.Time) bool {
	if l.rate.N == 0 {
		return true
	}
	cut := now.Add(-l.rate.Window)
	i := 0
	for i < len(l.at) && !l.at[i].After(cut) {
		i++
	}
	l.at = l.at[i:]
	return len(l.at) < l.rate.N
}
