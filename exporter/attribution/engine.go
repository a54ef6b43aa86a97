// Package attribution turns what a stock sing-box tells through its Clash
// API into per-user byte counts.
//
// The facts: /connections lists open connections with their byte counts and
// client address but no user, and exact node totals; the log stream names the
// user and client address of each new connection. A connection seen in two
// snapshots is metered exactly. What the snapshots cannot see (connections
// that open and close between two polls, and the last bytes of a connection
// after its final snapshot) shows up as the node total minus the observed
// bytes: the remainder. The remainder is given to the users whose unseen
// activity explains it: connections logged but never seen, and connections
// that vanished. When those all belong to one user the result is exact; when
// several users share a remainder it is split by estimated weight and also
// counted as Estimated, so operators can see how much of the figure is a
// guess. A remainder nobody can explain becomes Unattributed: so does the
// share of connections whose user was never learnt, and all of a window in
// which log lines may have been lost, since the connections they named
// could be anyone's.
package attribution

import (
	"sync"
	"time"

	"github.com/boxfleet/boxfleet/exporter/clashapi"
)

// Traffic is a pair of byte counts, from the client's point of view.
type Traffic struct {
	Up   uint64 `json:"up"`
	Down uint64 `json:"down"`
}

// Add returns t plus o.
func (t Traffic) Add(o Traffic) Traffic { return Traffic{t.Up + o.Up, t.Down + o.Down} }

// Owner is who a byte count belongs to.
type Owner struct {
	User    string
	Inbound string
}

// Activity is what a user has open right now.
type Activity struct {
	Connections int
	SourceIPs   int
	// Sources are the distinct client addresses behind SourceIPs, for the
	// collector's fleet-wide device count; they never become labels. The
	// set is the one counted, handed on as it is: read it, never change it.
	Sources map[string]bool
}

// Result is what one snapshot added.
type Result struct {
	Restarted    bool // sing-box started again since the previous snapshot
	Node         Traffic
	Owners       map[Owner]Traffic
	Inbounds     map[string]Traffic
	Unattributed Traffic
	Estimated    Traffic // the part of Owners split between several users
	Active       map[string]Activity
	Unowned      int // open connections whose user is not known
	Settled      Settlement
	// Unheard is the part of Unattributed that a window without the
	// log stream's every line left (see LogDown), for debug logs.
	Unheard Traffic
}

// Settlement describes how a remainder was given out, for debug logs.
type Settlement struct {
	Remainder Traffic
	Users     map[string]int // candidates per user
}

// Options tune the engine; the zero value picks the defaults.
type Options struct {
	// Settle is how long a logged connection may take to appear in
	// /connections. sing-box tracks a connection right after logging its
	// user, and the log line reaches us later still, so this is small.
	Settle time.Duration
	// PoolPolls is how many snapshots a remainder waits for an explanation
	// before it is declared unattributed.
	PoolPolls int
}

const (
	up = iota
	down
)

type key struct{ inbound, source string }

type pendingFrom struct {
	key
	at time.Time
}

type birth struct {
	key
	user string
	at   time.Time
}

type tracked struct {
	ConnState
}

// Engine holds the attribution state of one node. It is safe for one
// goroutine feeding log lines and another applying snapshots.
type Engine struct {
	mu   sync.Mutex
	opts Options

	from     map[uint32]pendingFrom
	owners   map[key]birth
	lastUser string
	births   []birth
	conns    map[string]*tracked
	started  bool
	total    Traffic
	pool     [2]int64
	idle     int
	avg      map[string]*[2]float64
	// deaf: the log stream is down now, so connections that begin are not
	// heard of. lost: lines may have been lost since the last snapshot
	// (the stream was down at some point, or the process started after
	// sing-box), so that snapshot's remainder cannot be explained by the
	// births that were heard: they are only some of the window's.
	deaf, lost bool
}

// New returns an empty engine.
func New(opts Options) *Engine {
	if opts.Settle == 0 {
		opts.Settle = 10 * time.Millisecond
	}
	if opts.PoolPolls == 0 {
		opts.PoolPolls = 3
	}
	return &Engine{
		opts:   opts,
		from:   map[uint32]pendingFrom{},
		owners: map[key]birth{},
		conns:  map[string]*tracked{},
		avg:    map[string]*[2]float64{},
		deaf:   true,
		lost:   true,
	}
}

// LogUp tells the engine that the log stream is connected: from now on it
// hears of every connection that begins.
func (e *Engine) LogUp() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deaf = false
}

// LogDown tells the engine that the log stream is down: connections that
// begin until LogUp are not heard of, so remainders up to the first
// snapshot after LogUp are declared unattributed rather than given to the
// users who happened to be heard of.
func (e *Engine) LogDown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deaf, e.lost = true, true
}

// Observe feeds one parsed log line received at the given time. It reports
// whether the line starts a connection of another user than the previous
// one did: a snapshot taken now keeps the two users' unseen bytes apart, so
// the caller should poll soon.
func (e *Engine) Observe(l clashapi.LogLine, at time.Time) (switched bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch l.Kind {
	case clashapi.LogFrom:
		e.from[l.ID] = pendingFrom{key{l.Inbound, l.Source}, at}
	case clashapi.LogUser:
		p, ok := e.from[l.ID]
		if !ok || p.inbound != l.Inbound {
			return false
		}
		delete(e.from, l.ID)
		b := birth{p.key, l.User, at}
		e.owners[p.key] = b
		e.births = append(e.births, b)
		switched = e.lastUser != l.User
		e.lastUser = l.User
	}
	return switched
}

// Apply meters one snapshot that was requested at the given time.
func (e *Engine) Apply(s *clashapi.Snapshot, requested time.Time) Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := Result{
		Owners:   map[Owner]Traffic{},
		Inbounds: map[string]Traffic{},
		Active:   map[string]Activity{},
	}
	now := Traffic{s.UploadTotal, s.DownloadTotal}
	if !e.started {
		e.baseline(s, now)
		e.activity(&r)
		return r
	}
	if now.Up < e.total.Up || now.Down < e.total.Down {
		// A new sing-box instance: its counters restarted at zero and
		// none of the tracked connections survived it.
		r.Restarted = true
		e.total = Traffic{}
		e.conns = map[string]*tracked{}
	}
	r.Node = Traffic{now.Up - e.total.Up, now.Down - e.total.Down}
	e.total = now

	seen, open, observed := e.meterOpen(s, requested, &r)
	cands := e.gone(open, requested, &r)
	cands = append(cands, e.unseenBirths(seen, requested, e.opts.Settle)...)
	e.pool[up] += int64(r.Node.Up) - int64(observed.Up)
	e.pool[down] += int64(r.Node.Down) - int64(observed.Down)
	if blind := e.lost; blind {
		// The window's candidates are used up all the same: their bytes
		// are in what is declared here.
		r.Unheard = e.declare(&r)
	} else {
		e.settle(cands, &r)
	}
	e.lost = e.deaf
	e.prune(requested, seen)
	e.activity(&r)
	return r
}

func (e *Engine) baseline(s *clashapi.Snapshot, now Traffic) {
	e.started = true
	e.lost = e.deaf
	e.total = now
	for _, c := range s.Connections {
		t := &tracked{ConnState: ConnState{Inbound: c.Inbound, Source: c.Source, SourceIP: c.SourceIP, Up: c.Upload, Down: c.Download}}
		if b, ok := e.owners[key{c.Inbound, c.Source}]; ok {
			t.User = b.user
		}
		e.conns[c.ID] = t
	}
}

// meterOpen credits the bytes each open connection moved since the previous
// snapshot and returns the keys and ids it saw and the bytes it observed.
func (e *Engine) meterOpen(s *clashapi.Snapshot, now time.Time, r *Result) (map[key]bool, map[string]bool, Traffic) {
	seen := make(map[key]bool, len(s.Connections))
	ids := make(map[string]bool, len(s.Connections))
	var observed Traffic
	for _, c := range s.Connections {
		k := key{c.Inbound, c.Source}
		seen[k] = true
		ids[c.ID] = true
		t, ok := e.conns[c.ID]
		if !ok {
			t = &tracked{ConnState: ConnState{Inbound: c.Inbound, Source: c.Source, SourceIP: c.SourceIP, Born: c.Start}}
			e.conns[c.ID] = t
		}
		d := Traffic{sub(c.Upload, t.Up), sub(c.Download, t.Down)}
		t.Up, t.Down = c.Upload, c.Download
		t.Last = [2]uint64{d.Up, d.Down}
		if !t.Seen.IsZero() {
			t.Interval = now.Sub(t.Seen)
		}
		t.Seen = now
		observed = observed.Add(d)
		r.Inbounds[c.Inbound] = r.Inbounds[c.Inbound].Add(d)
		if t.User == "" {
			if b, ok := e.owners[k]; ok {
				t.User = b.user
			}
		}
		if t.User == "" {
			t.Pending = t.Pending.Add(d)
			continue
		}
		o := Owner{t.User, t.Inbound}
		r.Owners[o] = r.Owners[o].Add(d).Add(t.Pending)
		t.Pending = Traffic{}
	}
	return seen, ids, observed
}

// gone retires connections missing from the snapshot. Their last bytes are
// in the remainder; each becomes a candidate weighted by its recent rate,
// one whose user was never learnt as well (its share is unattributed).
func (e *Engine) gone(open map[string]bool, now time.Time, r *Result) []candidate {
	var cands []candidate
	for id, t := range e.conns {
		if open[id] {
			continue
		}
		delete(e.conns, id)
		c := candidate{
			Owner:  Owner{t.User, t.Inbound},
			weight: [2]float64{e.tailWeight(t, up, now), e.tailWeight(t, down, now)},
		}
		if t.User == "" {
			// Its tail is in the remainder too: as a candidate of no
			// known user it keeps its share out of the known users'.
			r.Unattributed = r.Unattributed.Add(t.Pending)
			cands = append(cands, c)
			continue
		}
		e.learnSize(t)
		cands = append(cands, c)
	}
	return cands
}

// A connection closed at some point after it was last seen; its unseen tail
// is on average its latest rate over half the time since. The rate of a
// connection seen once is what it moved since sing-box began tracking it;
// such a connection is usually a short one about to end, so its tail is
// also at most what the user's short connections move beyond what was seen.
func (e *Engine) tailWeight(t *tracked, dir int, now time.Time) float64 {
	span := t.Interval
	if span <= 0 && !t.Born.IsZero() {
		// A few milliseconds at least: a connection seen the instant it
		// began would otherwise have an absurd rate.
		span = max(t.Seen.Sub(t.Born), 5*time.Millisecond)
	}
	if span <= 0 {
		return float64(t.Last[dir])/2 + 1
	}
	rate := float64(t.Last[dir]) / span.Seconds()
	w := rate * now.Sub(t.Seen).Seconds() / 2
	if t.Interval <= 0 {
		seen := float64(t.Up)
		if dir == down {
			seen = float64(t.Down)
		}
		if a, ok := e.avg[t.User]; ok && seen < a[dir] {
			w = min(w, a[dir]-seen)
		}
	}
	return w + 1
}

// unseenBirths returns, as candidates, logged connections that had time to
// appear in a snapshot and never did: they opened and closed in between.
//
// Which window an unseen connection's bytes are in is decided by the log
// stream's order where it can be: sing-box logs connections in the order
// they begin, so one logged before a connection that the snapshot holds
// began before the snapshot too, and if the snapshot does not hold it, it
// has closed in this window, however late its line arrived. Only the
// connections logged after the last one the snapshot holds are judged by
// when their line arrived: settle before the snapshot was requested.
func (e *Engine) unseenBirths(seen map[key]bool, requested time.Time, settle time.Duration) []candidate {
	var cands []candidate
	last := -1
	for i, b := range e.births {
		if seen[b.key] {
			last = i
		}
	}
	keep := e.births[:0]
	for i, b := range e.births {
		switch {
		case seen[b.key]:
		case i < last || requested.Sub(b.at) >= settle:
			cands = append(cands, candidate{Owner: Owner{b.user, b.inbound}, weight: e.birthWeight(b.user), birth: true})
		default:
			keep = append(keep, b)
		}
	}
	e.births = keep
	return cands
}

func (e *Engine) activity(r *Result) {
	ips := map[string]map[string]bool{}
	for _, t := range e.conns {
		if t.User == "" {
			r.Unowned++
			continue
		}
		a := r.Active[t.User]
		a.Connections++
		r.Active[t.User] = a
		if ips[t.User] == nil {
			ips[t.User] = map[string]bool{}
		}
		ips[t.User][t.SourceIP] = true
	}
	for u, set := range ips {
		a := r.Active[u]
		a.SourceIPs = len(set)
		a.Sources = set
		r.Active[u] = a
	}
}

// prune forgets log lines that can no longer matter, so memory stays bounded
// on a node whose log stream carries lines for connections never tracked.
func (e *Engine) prune(now time.Time, seen map[key]bool) {
	const keepFrom, keepOwner = time.Minute, 10 * time.Minute
	for id, p := range e.from {
		if now.Sub(p.at) > keepFrom {
			delete(e.from, id)
		}
	}
	for k, b := range e.owners {
		if !seen[k] && now.Sub(b.at) > keepOwner {
			delete(e.owners, k)
		}
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
