package api

import (
	"sync"
	"time"
)

// loginLimiter locks a client address or an account name after too many
// failed logins: lockFails failures within lockWindow lock the key for
// lockFor. Both keys count, so neither a spray of names from one address
// nor a spray of addresses at one name gets more than a few guesses.
// Locking a name lets anyone lock that admin out for a while; that is the
// price of stopping a botnet's guesses, and the owner keeps the token file.
//
// Each attempt is charged before its password is checked and refunded if
// it succeeds: a password check takes tens of milliseconds, and a burst of
// parallel guesses would otherwise all pass the gate before the first
// failure was counted.
type loginLimiter struct {
	mu   sync.Mutex
	keys map[string]*loginKey
}

type loginKey struct {
	fails  []time.Time // charged attempts in the window
	locked time.Time   // until
}

const (
	lockFails  = 5
	lockWindow = 5 * time.Minute
	lockFor    = 15 * time.Minute
	// maxLoginKeys bounds the table under a spray of addresses or names.
	maxLoginKeys = 10_000
)

func newLoginLimiter() *loginLimiter { return &loginLimiter{keys: map[string]*loginKey{}} }

// attempt charges one attempt to every key, or, when a key is locked or
// has no attempts left, charges none and returns when the lock ends.
func (l *loginLimiter) attempt(now time.Time, keys ...string) (lockedUntil time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		e := l.keys[k]
		if e == nil {
			continue
		}
		e.prune(now)
		if !e.locked.After(now) && len(e.fails) >= lockFails {
			e.locked, e.fails = now.Add(lockFor), nil
		}
		if e.locked.After(now) && e.locked.After(lockedUntil) {
			lockedUntil = e.locked
		}
	}
	if !lockedUntil.IsZero() {
		return lockedUntil
	}
	for _, k := range keys {
		e := l.keys[k]
		if e == nil {
			l.makeRoom(now)
			e = &loginKey{}
			l.keys[k] = e
		}
		e.fails = append(e.fails, now)
	}
	return time.Time{}
}

// failed keeps the attempt's charge and reports whether a key has now used
// up its attempts, so the answer can say that the next one will wait.
func (l *loginLimiter) failed(now time.Time, keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	locked := false
	for _, k := range keys {
		if e := l.keys[k]; e != nil && len(e.fails) >= lockFails {
			e.locked, e.fails = now.Add(lockFor), nil
			locked = true
		}
	}
	return locked
}

// succeeded refunds the attempt: the account forgets its failures (the
// owner typing a password wrong twice should not carry that for five
// minutes); the address gets back only this attempt, so one good account
// does not reset a guesser's budget.
func (l *loginLimiter) succeeded(nameKey, addrKey string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, nameKey)
	if e := l.keys[addrKey]; e != nil && len(e.fails) > 0 {
		e.fails = e.fails[:len(e.fails)-1]
	}
}

func (e *loginKey) prune(now time.Time) {
	i := 0
	for i < len(e.fails) && now.Sub(e.fails[i]) >= lockWindow {
		i++
	}
	e.fails = e.fails[i:]
}

// makeRoom drops entries with nothing left to remember, and if the table
// is still full, arbitrary unlocked ones; l.mu must be held.
func (l *loginLimiter) makeRoom(now time.Time) {
	if len(l.keys) < maxLoginKeys {
		return
	}
	for k, e := range l.keys {
		if e.prune(now); !e.locked.After(now) && len(e.fails) == 0 {
			delete(l.keys, k)
		}
	}
	for k, e := range l.keys {
		if len(l.keys) < maxLoginKeys {
			break
		}
		if !e.locked.After(now) {
			delete(l.keys, k)
		}
	}
}
