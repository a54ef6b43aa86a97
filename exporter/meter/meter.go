// Package meter runs the exporter's measuring loop: it follows sing-box's log
// stream, polls /connections at a pace that keeps sing-box's own cost within
// a budget, feeds both to the attribution engine (or reads the V2Ray stats
// service in exact mode, or, in API service mode, credits the connection
// events and leaves the engine idle), and keeps the durable counters. Scrapes only read
// the latest View, so a slow or dead sing-box never slows a scrape.
package meter

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
	"github.com/boxfleet/boxfleet/exporter/state"
)

// StatsReader is the V2Ray stats service, read without resetting.
type StatsReader interface {
	Users(ctx context.Context) (map[string]attribution.Traffic, error)
}

// Config says what to meter and how.
type Config struct {
	Clash *clashapi.Client
	Stats StatsReader // nil: attribute from the Clash API (or Events)
	// Events, when set, is sing-box's API service: per-user traffic comes
	// from its connection events exactly, with updates of open
	// connections every EventInterval (default 1s).
	Events        EventSource
	EventInterval time.Duration
	StatePath     string // empty: keep nothing across restarts
	// WriteInterval is the least time between two writes of the state.
	WriteInterval time.Duration
	// Polls happen between MinInterval and MaxInterval apart, as far apart
	// as it takes for one poll's duration to stay within Budget (a
	// fraction of one core) of sing-box's and the exporter's time.
	MinInterval time.Duration
	MaxInterval time.Duration
	Budget      float64
	Timeout     time.Duration
	Log         logrus.FieldLogger
}

// Meter is one node's measuring loop.
type Meter struct {
	cfg    Config
	engine *attribution.Engine // Clash API and V2Ray modes
	ledger *sbapi.Ledger       // Events mode; owned by whoever holds pollMu
	// total is sing-box's node totals at the last poll, in Events mode
	// (the engine keeps them in the other modes); pollMu.
	total      attribution.Traffic
	totalKnown bool
	gaps       []gapSample // Events mode; pollMu
	file       *state.File // owned by whoever holds pollMu

	// pollMu serialises polls: the loop's own and those the agent asks for
	// just before a reload.
	pollMu sync.Mutex
	gcSeen time.Duration // garbage-collection CPU when the last poll ended; pollMu

	mu   sync.RWMutex
	view View

	kick      chan struct{}
	logUp     atomic.Bool
	logLines  atomic.Uint64
	logErrors atomic.Uint64
}

// New loads the state file (a missing or corrupt one is logged and replaced
// by an empty state) and returns a meter ready to Run.
func New(cfg Config) *Meter {
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 250 * time.Millisecond
	}
	if cfg.MaxInterval < cfg.MinInterval {
		cfg.MaxInterval = 30 * time.Second
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 0.03
	}
	if cfg.WriteInterval <= 0 {
		cfg.WriteInterval = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.EventInterval <= 0 {
		cfg.EventInterval = time.Second
	}
	m := &Meter{cfg: cfg, engine: attribution.New(attribution.Options{}), file: state.New(), kick: make(chan struct{}, 1)}
	if cfg.StatePath != "" {
		f, err := state.Load(cfg.StatePath)
		switch {
		case errors.Is(err, state.ErrNotExist):
			cfg.Log.WithField("path", cfg.StatePath).Info("no state file yet; counting from zero")
		case err != nil:
			cfg.Log.WithError(err).Error("state file unusable; counting from zero (Prometheus will see a counter reset)")
			m.view.StateLoadFailed = true
		default:
			m.file = f
			m.restoreEngine()
			f.Engine = nil
		}
	}
	m.ledger = sbapi.NewLedger(m.file.Events)
	m.file.Events = nil
	m.view.Counters = m.file.Counters.Clone()
	m.view.Mode = m.mode()
	return m
}

func (m *Meter) mode() string {
	switch {
	case m.cfg.Stats != nil:
		return "v2ray_api"
	case m.cfg.Events != nil:
		return "api"
	}
	return "clash_api"
}

// Run polls until ctx ends, then flushes one last time.
//
// Polls come at a regular interval, and sooner when the log stream shows a
// connection of another user than the one before (a kick): a snapshot
// between the two keeps their unseen bytes apart. Either way, polls are
// spaced so that their cost stays within the budget.
func (m *Meter) Run(ctx context.Context) {
	if m.cfg.Events != nil {
		go m.followEvents(ctx)
	} else {
		go m.followLogs(ctx)
	}
	for {
		spacing, regular := m.intervals(m.Poll(ctx))
		if !sleep(ctx, spacing) {
			break
		}
		select {
		case <-ctx.Done():
		case <-m.kick:
		case <-time.After(regular - spacing):
		}
		if ctx.Err() != nil {
			break
		}
	}
	// A last flush: on a shutdown the exporter may stop before sing-box
	// (and the flush sing-box's unit asks for then finds no one), so
	// what moved since the last poll is counted now. If sing-box is gone
	// already, the state is saved as it is.
	final, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Flush(final); err != nil {
		m.save()
	}
}

// intervals returns the least spacing the budget allows after a poll that
// took this long, and the regular interval.
func (m *Meter) intervals(took time.Duration) (spacing, regular time.Duration) {
	spacing = min(time.Duration(float64(took)/m.cfg.Budget), m.cfg.MaxInterval)
	regular = min(max(spacing, m.cfg.MinInterval), m.cfg.MaxInterval)
	m.mu.Lock()
	m.view.PollInterval = regular
	m.mu.Unlock()
	return spacing, regular
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// followLogs keeps the log stream open; while it is down new connections
// cannot be attributed, which shows as unattributed traffic (the engine is
// told, so that it does not give such bytes to the users it did hear of).
//
// The first retry is quick: the stream mostly ends because sing-box
// reloaded, which takes it milliseconds, and every moment without the
// stream is traffic nobody can be billed for.
func (m *Meter) followLogs(ctx context.Context) {
	const firstRetry = 100 * time.Millisecond
	backoff := firstRetry
	for ctx.Err() == nil {
		err := m.cfg.Clash.StreamLogs(ctx, "info", func() {
			m.engine.LogUp()
			m.logUp.Store(true)
			backoff = firstRetry
		}, func(payload string) {
			m.logLines.Add(1)
			if l, ok := clashapi.ParseLogLine(payload); ok && m.engine.Observe(l, time.Now()) {
				select {
				case m.kick <- struct{}{}:
				default:
				}
			}
		})
		m.engine.LogDown()
		m.logUp.Store(false)
		if ctx.Err() != nil {
			return
		}
		m.logErrors.Add(1)
		m.cfg.Log.WithError(err).Debug("log stream closed; reconnecting")
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
