package meter

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/state"
)

// View is what the collector exposes: a copy, safe to read while the loop
// goes on.
type View struct {
	Mode            string
	Up              bool
	Version         string
	Memory          uint64
	Connections     map[string]int // by network
	Counters        state.Counters
	Active          map[string]attribution.Activity
	Unowned         int
	Polls           uint64
	PollErrors      uint64
	PollDuration    time.Duration
	PollInterval    time.Duration
	LastSuccess     time.Time // when the last successful poll asked for its snapshot
	StateWrites     uint64
	StateErrors     uint64
	StateLoadFailed bool
	LogStreamUp     bool
	LogLines        uint64
	LogErrors       uint64
	Restarts        uint64
}

// View returns the latest view.
func (m *Meter) View() View {
	m.mu.RLock()
	v := m.view
	m.mu.RUnlock()
	v.LogStreamUp = m.logUp.Load()
	v.LogLines = m.logLines.Load()
	v.LogErrors = m.logErrors.Load()
	return v
}

// Poll takes one snapshot and folds it into the counters. It returns how
// long reading and metering the snapshot took: the CPU cost that polling
// puts on sing-box and the exporter, which the budget is about.
func (m *Meter) Poll(ctx context.Context) (took time.Duration) {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	took, _ = m.poll(ctx, false)
	return took
}

// poll is Poll's body; the caller holds pollMu. A final poll (Flush) also
// settles what the engine still holds and writes the state whatever its
// age. The error is the poll's, joined with the state write's.
func (m *Meter) poll(ctx context.Context, final bool) (took time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	start := time.Now()
	cost := startCost()
	snap, err := m.cfg.Clash.Connections(ctx)
	var res attribution.Result
	if err == nil {
		if m.cfg.Events != nil {
			res = m.meterEvents(snap)
		} else {
			res = m.engine.Apply(snap, start)
		}
		if res.Settled.Users != nil {
			m.cfg.Log.WithFields(logrus.Fields{"up": res.Settled.Remainder.Up, "down": res.Settled.Remainder.Down, "candidates": res.Settled.Users}).Debug("remainder attributed")
		}
		if res.Unheard != (attribution.Traffic{}) {
			m.cfg.Log.WithFields(logrus.Fields{"up": res.Unheard.Up, "down": res.Unheard.Down}).Debug("remainder declared unattributed: log lines may have been lost in this window")
		}
		m.account(res)
		switch {
		case final && m.cfg.Events != nil:
			m.observeOpen(snap)
		case final:
			m.settleNow(start)
		}
		if m.cfg.Events != nil {
			m.declareGap(snap, start)
		}
		if m.cfg.Stats != nil {
			err = m.readStats(ctx, res.Restarted)
		}
	}
	version := m.versionFor(ctx, err == nil)
	save := m.maybeSave
	if final {
		save = m.save
	}
	wrote, werr := save()
	if snap != nil {
		took = cost.done(len(snap.Connections), &m.gcSeen)
	} else {
		cost.done(0, &m.gcSeen) // took stays 0: a failed poll is paced by its wall time
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	v := &m.view
	v.Polls++
	v.PollDuration = time.Since(start)
	if took == 0 {
		took = v.PollDuration
	}
	v.Up = err == nil
	v.Version = version
	if wrote {
		v.StateWrites++
	}
	if werr != nil {
		v.StateErrors++
	}
	v.Counters = m.file.Counters.Clone()
	if err != nil {
		v.PollErrors++
		m.cfg.Log.WithError(err).Warn("polling sing-box failed")
		return took, errors.Join(err, werr)
	}
	v.LastSuccess = start
	if res.Restarted {
		v.Restarts++
	}
	v.Memory = snap.Memory
	v.Connections = byNetwork(snap.Connections)
	v.Active = res.Active
	v.Unowned = res.Unowned
	return took, werr
}

// account adds one snapshot's result to the durable counters.
func (m *Meter) account(res attribution.Result) {
	c := &m.file.Counters
	c.Node = c.Node.Add(res.Node)
	for in, t := range res.Inbounds {
		c.Inbounds[in] = c.Inbounds[in].Add(t)
	}
	if m.cfg.Stats != nil || m.cfg.Events != nil {
		return // users come from the stats service or the events, exactly
	}
	for o, t := range res.Owners {
		c.Users[o.User] = c.Users[o.User].Add(t)
	}
	c.Unattributed = c.Unattributed.Add(res.Unattributed)
	c.Estimated = c.Estimated.Add(res.Estimated)
}

// readStats adds what each user's V2Ray counter moved. The counters start
// again at zero with sing-box, so a restart (seen by the Clash API totals, or
// by a counter going down) counts the new value whole.
func (m *Meter) readStats(ctx context.Context, restarted bool) error {
	raw, err := m.cfg.Stats.Users(ctx)
	if err != nil {
		return err
	}
	c := &m.file.Counters
	if m.file.Stats == nil {
		m.file.Stats = raw // the first reading is the baseline
	} else {
		for user, now := range raw {
			last := m.file.Stats[user]
			if restarted {
				last = attribution.Traffic{}
			}
			c.Users[user] = c.Users[user].Add(attribution.Traffic{Up: delta(now.Up, last.Up), Down: delta(now.Down, last.Down)})
		}
		m.file.Stats = raw
	}
	var sum attribution.Traffic
	for _, t := range c.Users {
		sum = sum.Add(t)
	}
	// Stats and node totals are read a moment apart; keeping the larger
	// value keeps the counter monotonic while the gap closes.
	c.Unattributed.Up = max(c.Unattributed.Up, sub(c.Node.Up, sum.Up))
	c.Unattributed.Down = max(c.Unattributed.Down, sub(c.Node.Down, sum.Down))
	return nil
}

func delta(now, last uint64) uint64 {
	if now < last {
		return now
	}
	return now - last
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// versionFor asks /version once per time sing-box comes (back) up.
func (m *Meter) versionFor(ctx context.Context, up bool) string {
	m.mu.RLock()
	v, wasUp := m.view.Version, m.view.Up
	m.mu.RUnlock()
	if !up {
		return v
	}
	if wasUp && v != "" {
		return v
	}
	if got, err := m.cfg.Clash.Version(ctx); err == nil {
		return got
	}
	return v
}

func byNetwork(conns []clashapi.Connection) map[string]int {
	out := map[string]int{}
	for _, c := range conns {
		out[c.Network]++
	}
	return out
}

// maybeSave writes the state file when the last write is older than the
// write interval. Counters and the baselines they were counted against are
// saved together, so an older file is still consistent: after a crash the
// bytes since are counted again from sing-box's totals, once.
func (m *Meter) maybeSave() (bool, error) {
	if time.Since(m.file.SavedAt) < m.cfg.WriteInterval {
		return false, nil
	}
	return m.save()
}

// save writes the state file; it reports whether it wrote.
func (m *Meter) save() (bool, error) {
	if m.cfg.StatePath == "" {
		return false, nil
	}
	if m.cfg.Events != nil {
		m.file.Engine = m.nodeTotalState()
		m.file.Events = m.ledger.Export()
	} else {
		m.file.Engine = m.engine.Export()
	}
	m.file.SavedAt = time.Now()
	err := state.Save(m.cfg.StatePath, m.file)
	m.file.Engine, m.file.Events = nil, nil // copies of every open connection: not kept between writes
	if err != nil {
		m.cfg.Log.WithError(err).Error("writing state file failed")
		return false, err
	}
	return true, nil
}
