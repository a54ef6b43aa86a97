package meter

import (
	"context"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
)

// EventSource is sing-box's API service: connection events that name each
// connection's user and report its final bytes at close.
type EventSource interface {
	Subscribe(ctx context.Context, interval time.Duration, fn func(sbapi.Batch)) error
}

// followEvents keeps the connection event stream open and credits what it
// reports. The stream replaces the log stream: it names users itself.
// While it is down, what connections move is credited when it comes back
// (its first message lists every open connection and the last 1,000 closed
// ones with their totals); what cannot be recovered that way shows as the
// node total running ahead of users plus unattributed.
func (m *Meter) followEvents(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := m.cfg.Events.Subscribe(ctx, m.cfg.EventInterval, func(b sbapi.Batch) {
			m.logUp.Store(true)
			backoff = time.Second
			m.logLines.Add(uint64(len(b.Events)))
			m.pollMu.Lock()
			m.creditEvents(m.ledger.Apply(b))
			m.pollMu.Unlock()
		})
		m.logUp.Store(false)
		if ctx.Err() != nil {
			return
		}
		m.logErrors.Add(1)
		m.cfg.Log.WithError(err).Debug("connection event stream closed; reconnecting")
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// creditEvents adds exact per-user and per-inbound bytes; connections
// without a user are unattributed. The caller holds pollMu.
func (m *Meter) creditEvents(d map[attribution.Owner]attribution.Traffic) {
	c := &m.file.Counters
	for o, t := range d {
		if o.Inbound != "" {
			c.Inbounds[o.Inbound] = c.Inbounds[o.Inbound].Add(t)
		}
		if o.User == "" {
			c.Unattributed = c.Unattributed.Add(t)
			continue
		}
		c.Users[o.User] = c.Users[o.User].Add(t)
	}
}

// observeOpen credits, from a /connections snapshot, what the open
// connections moved since their last event: a flush does it so that a stop
// right after loses nothing. The caller holds pollMu.
func (m *Meter) observeOpen(s *clashapi.Snapshot) {
	d := map[attribution.Owner]attribution.Traffic{}
	for _, c := range s.Connections {
		if o, t, ok := m.ledger.Observe(c.ID, c.Upload, c.Download); ok {
			d[o] = d[o].Add(t)
		}
	}
	m.creditEvents(d)
}

// gapSample is, at one poll, how far the node total ran ahead of users,
// unattributed and the bytes still in flight on open connections.
type gapSample struct {
	at  time.Time
	gap [2]int64
}

// declareGap makes users plus unattributed add up to the node total in
// events mode. Bytes sing-box counted that no event will ever report
// (sing-box drops events when a burst overflows its buffer, and a
// connection whose opening and closing were both dropped is never
// reported) leave a gap that stays; the gap of events still on their way
// closes within an update interval. So only the least gap seen over two
// intervals is declared unattributed: a delay never is, a loss always is,
// an interval or two late.
//
// The gap can also stay below zero: the node total lost bytes its
// connections' events did report. sing-box's totals start again at zero
// when it reloads or restarts, so what it counted between the last poll
// and the reload is in no total, while the connections' final events still
// bring it to their users. The events are the better witness there (they
// name every byte), so the node total is raised by the least such deficit
// seen over the same two intervals; an event that merely arrived before the
// snapshot that counted its bytes is a deficit for one poll, never raised.
// The caller holds pollMu.
func (m *Meter) declareGap(s *clashapi.Snapshot, now time.Time) {
	c := &m.file.Counters
	var users attribution.Traffic
	for _, t := range c.Users {
		users = users.Add(t)
	}
	flight := m.ledger.InFlight(func(yield func(string, attribution.Traffic) bool) {
		for _, o := range s.Connections {
			if !yield(o.ID, attribution.Traffic{Up: o.Upload, Down: o.Download}) {
				return
			}
		}
	})
	g := gapSample{at: now, gap: [2]int64{
		int64(c.Node.Up) - int64(users.Up+c.Unattributed.Up+flight.Up),
		int64(c.Node.Down) - int64(users.Down+c.Unattributed.Down+flight.Down),
	}}
	m.gaps = append(m.gaps, g)
	window := 2 * m.cfg.EventInterval
	if now.Sub(m.gaps[0].at) < window {
		return
	}
	least, most := g.gap, g.gap
	for _, p := range m.gaps {
		least[0], least[1] = min(least[0], p.gap[0]), min(least[1], p.gap[1])
		most[0], most[1] = max(most[0], p.gap[0]), max(most[1], p.gap[1])
	}
	// At most one of the two is non-zero in a direction.
	declared := attribution.Traffic{Up: uint64(max(least[0], 0)), Down: uint64(max(least[1], 0))}
	behind := attribution.Traffic{Up: uint64(max(-most[0], 0)), Down: uint64(max(-most[1], 0))}
	c.Unattributed = c.Unattributed.Add(declared)
	c.Node = c.Node.Add(behind)
	if behind != (attribution.Traffic{}) {
		m.cfg.Log.WithFields(logrus.Fields{"up": behind.Up, "down": behind.Down}).Debug("node total raised to what its connections reported (sing-box's totals started again)")
	}
	keep := m.gaps[:0]
	for _, p := range m.gaps {
		if now.Sub(p.at) < window {
			p.gap[0] += int64(behind.Up) - int64(declared.Up)
			p.gap[1] += int64(behind.Down) - int64(declared.Down)
			keep = append(keep, p)
		}
	}
	m.gaps = keep
}

// meterEvents is a poll's metering in Events mode, where the events
// attribute every byte and the attribution engine has nothing to do: the
// snapshot gives the node totals and what is open now, the ledger whose
// each open connection is. The caller holds pollMu.
func (m *Meter) meterEvents(s *clashapi.Snapshot) attribution.Result {
	r := attribution.Result{Active: map[string]attribution.Activity{}}
	now := attribution.Traffic{Up: s.UploadTotal, Down: s.DownloadTotal}
	switch {
	case !m.totalKnown:
		// The baseline: what sing-box moved before the exporter first
		// ran is not counted.
	case now.Up < m.total.Up || now.Down < m.total.Down:
		r.Restarted = true // a new sing-box: its totals started again at zero
		r.Node = now
	default:
		r.Node = attribution.Traffic{Up: now.Up - m.total.Up, Down: now.Down - m.total.Down}
	}
	m.total, m.totalKnown = now, true

	// Users online, from the connections open now: the snapshot is what
	// is open, the events say whose. A connection opened since the last
	// batch of events is not known yet and counts as unowned until the
	// next one (an update interval), as does one without a user.
	ips := map[string]map[string]bool{}
	for _, c := range s.Connections {
		o, ok := m.ledger.Owner(c.ID)
		if !ok || o.User == "" {
			r.Unowned++
			continue
		}
		a := r.Active[o.User]
		a.Connections++
		r.Active[o.User] = a
		if ips[o.User] == nil {
			ips[o.User] = map[string]bool{}
		}
		ips[o.User][c.SourceIP] = true
	}
	for u, set := range ips {
		a := r.Active[u]
		a.SourceIPs = len(set)
		a.Sources = set
		r.Active[u] = a
	}
	return r
}

// nodeTotalState is what Events mode keeps of the engine's state: only the
// node totals the next poll counts from (the ledger keeps the
// connections). Nil before the first poll.
func (m *Meter) nodeTotalState() *attribution.State {
	if !m.totalKnown {
		return nil
	}
	return &attribution.State{Total: m.total}
}

// restoreEngine takes back what the state file kept of the engine. Events
// mode needs only the node totals. A file written in Events mode and read
// in another holds no engine connections: the ledger's open connections
// stand in for them, so that the engine counts on from what they had
// moved, their users known, rather than taking their bytes so far for new
// ones.
func (m *Meter) restoreEngine() {
	f := m.file
	if f.Engine == nil {
		return
	}
	if m.cfg.Events != nil {
		m.total, m.totalKnown = f.Engine.Total, true
		return
	}
	if f.Events != nil && len(f.Engine.Conns) == 0 {
		conns := make(map[string]attribution.ConnState, len(f.Events.Conns))
		for id, c := range f.Events.Conns {
			ip, _, _ := net.SplitHostPort(c.Source)
			conns[id] = attribution.ConnState{User: c.User, Inbound: c.Inbound, Source: c.Source, SourceIP: ip, Up: c.Up, Down: c.Down}
		}
		f.Engine.Conns = conns
	}
	m.engine.Import(f.Engine)
}
