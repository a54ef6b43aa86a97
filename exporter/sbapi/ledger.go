package sbapi

import (
	"iter"

	"github.com/boxfleet/boxfleet/exporter/attribution"
)

// closedMemory is how many closed connections the ledger remembers, so that
// a connection reported closed again (a Reset lists the last 1,000 that
// sing-box saw close) is not counted twice.
const closedMemory = 4096

// Conn is what the ledger keeps of an open connection: whose it is, where
// from, and the totals already credited to that user.
type Conn struct {
	User    string `json:"user"`
	Inbound string `json:"inbound"`
	Source  string `json:"source,omitempty"` // the client's host:port
	Up      uint64 `json:"up"`
	Down    uint64 `json:"down"`
}

// State is the ledger's durable part, saved with the exporter's state so
// that an exporter restart neither loses nor repeats a byte of the
// connections it knew.
type State struct {
	Conns  map[string]Conn `json:"conns"`
	Closed []string        `json:"closed"` // oldest first
}

// Ledger turns connection events into per-user byte counts, exactly: each
// connection's bytes are credited to its user as they are reported, and at
// close up to its final totals.
type Ledger struct {
	started bool // a first Reset has set the baseline
	conns   map[string]*Conn
	closed  map[string]bool
	order   []string // closed ids, oldest first
}

// NewLedger returns an empty ledger, or one restored from s.
func NewLedger(s *State) *Ledger {
	l := &Ledger{conns: map[string]*Conn{}, closed: map[string]bool{}}
	if s == nil {
		return l
	}
	l.started = true
	for id, c := range s.Conns {
		l.conns[id] = &c
	}
	for _, id := range s.Closed {
		l.remember(id)
	}
	return l
}

// Export returns a copy of the durable state.
func (l *Ledger) Export() *State {
	s := &State{Conns: make(map[string]Conn, len(l.conns)), Closed: append([]string(nil), l.order...)}
	for id, c := range l.conns {
		s.Conns[id] = *c
	}
	return s
}

// Open is how many connections the ledger holds open.
func (l *Ledger) Open() int { return len(l.conns) }

// Owner is whose the open connection id is, as its events named it. It is
// false for a connection the ledger does not hold open: one whose opening
// has not been reported yet (events come every update interval), or one
// already closed. A connection without a user has an Owner with an empty
// User.
func (l *Ledger) Owner(id string) (attribution.Owner, bool) {
	c := l.conns[id]
	if c == nil {
		return attribution.Owner{}, false
	}
	return attribution.Owner{User: c.User, Inbound: c.Inbound}, true
}

// Apply folds one batch in and returns what each user's connections moved
// in it. Connections without a user (sing-box's own DNS, inbounds without
// users) are credited to the empty user: the caller counts them as
// unattributed.
//
// A Reset replaces the ledger's view of what is open: connections it held
// that the Reset neither lists open nor closed belonged to an earlier
// sing-box instance (or closed so long ago that sing-box forgot them); what
// they moved after their last report is lost, and shows as unattributed too.
//
// The first Reset a new ledger sees is its baseline: what sing-box moved
// before the exporter first ran is not counted, as with every other
// counter of the exporter.
func (l *Ledger) Apply(b Batch) map[attribution.Owner]attribution.Traffic {
	out := map[attribution.Owner]attribution.Traffic{}
	if !l.started {
		if !b.Reset {
			return out // not a baseline: wait for the Reset that begins every subscription
		}
		l.started = true
		l.baseline(b)
		return out
	}
	var listed map[string]bool
	if b.Reset {
		listed = make(map[string]bool, len(b.Events))
	}
	for _, e := range b.Events {
		if listed != nil {
			listed[e.ID] = true
		}
		if l.closed[e.ID] {
			continue
		}
		c := l.conns[e.ID]
		if c == nil && e.HasTotals {
			c = &Conn{User: e.User, Inbound: e.Inbound, Source: e.Source}
			l.conns[e.ID] = c
		}
		if c == nil {
			continue // an update or close of a connection never seen new
		}
		var d attribution.Traffic
		switch {
		case e.Kind == Update:
			d = attribution.Traffic{Up: e.DeltaUp, Down: e.DeltaDown}
			c.Up += d.Up
			c.Down += d.Down
		case e.HasTotals:
			d = attribution.Traffic{Up: sub(e.Up, c.Up), Down: sub(e.Down, c.Down)}
			c.Up, c.Down = max(c.Up, e.Up), max(c.Down, e.Down)
		}
		if d != (attribution.Traffic{}) {
			o := attribution.Owner{User: c.User, Inbound: c.Inbound}
			out[o] = out[o].Add(d)
		}
		if e.Kind == Closed || e.ClosedAt != 0 {
			delete(l.conns, e.ID)
			l.remember(e.ID)
		}
	}
	if listed != nil {
		for id := range l.conns {
			if !listed[id] {
				delete(l.conns, id)
			}
		}
	}
	return out
}

func (l *Ledger) baseline(b Batch) {
	for _, e := range b.Events {
		if e.Kind == Closed || e.ClosedAt != 0 {
			l.remember(e.ID)
			continue
		}
		if e.HasTotals {
			l.conns[e.ID] = &Conn{User: e.User, Inbound: e.Inbound, Source: e.Source, Up: e.Up, Down: e.Down}
		}
	}
}

// Observe credits what an open connection has moved according to another
// reading of its totals (the Clash API's /connections, whose ids are the
// same): a flush before sing-box stops counts the bytes since the last
// event that way.
func (l *Ledger) Observe(id string, up, down uint64) (attribution.Owner, attribution.Traffic, bool) {
	c := l.conns[id]
	if c == nil {
		return attribution.Owner{}, attribution.Traffic{}, false
	}
	d := attribution.Traffic{Up: sub(up, c.Up), Down: sub(down, c.Down)}
	c.Up, c.Down = max(c.Up, up), max(c.Down, down)
	return attribution.Owner{User: c.User, Inbound: c.Inbound}, d, true
}

func (l *Ledger) remember(id string) {
	if l.closed[id] {
		return
	}
	l.closed[id] = true
	l.order = append(l.order, id)
	if len(l.order) > closedMemory {
		delete(l.closed, l.order[0])
		l.order = l.order[1:]
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// InFlight is what the open connections of a /connections snapshot (id
// and totals) have moved beyond what the ledger credited them: bytes
// sing-box has counted in its node total that no event has reported yet.
func (l *Ledger) InFlight(open iter.Seq2[string, attribution.Traffic]) attribution.Traffic {
	var t attribution.Traffic
	for id, now := range open {
		c := l.conns[id]
		if c == nil {
			t = t.Add(now)
			continue
		}
		t = t.Add(attribution.Traffic{Up: sub(now.Up, c.Up), Down: sub(now.Down, c.Down)})
	}
	return t
}
