package meter

import (
	"context"
	"time"

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

// creditEvents adds exact per-user bytes; connections without a user are
// unattributed. The caller holds pollMu.
func (m *Meter) creditEvents(d map[attribution.Owner]attribution.Traffic) {
	c := &m.file.Counters
	for o, t := range d {
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
// an interval or two late. The caller holds pollMu.
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
	least := g.gap
	for _, p := range m.gaps {
		least[0], least[1] = min(least[0], p.gap[0]), min(least[1], p.gap[1])
	}
	declared := attribution.Traffic{Up: uint64(max(least[0], 0)), Down: uint64(max(least[1], 0))}
	c.Unattributed = c.Unattributed.Add(declared)
	keep := m.gaps[:0]
	for _, p := range m.gaps {
		if now.Sub(p.at) < window {
			p.gap[0] -= int64(declared.Up)
			p.gap[1] -= int64(declared.Down)
			keep = append(keep, p)
		}
	}
	m.gaps = keep
}
