// Package agent is the node side of the fleet: it registers the node with
// the controller, pulls the user set the node must serve, writes it into the
// sing-box config and reloads sing-box, carefully. A reload drops every
// connection on the node (sing-box has no live user API), so reloads are
// batched, skipped when the rendered file is unchanged, validated before and
// confirmed after, and undone when sing-box does not come back.
package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// Config says which node this is, where its controller is and how to
// manage its sing-box.
type Config struct {
	ControllerURL string
	TokenFile     string

	NodeName        string
	NodeAddress     string
	ExporterAddress string
	Labels          map[string]string

	ConfigPath    string   // the sing-box config the agent rewrites
	Managed       []string // inbound tags; empty: every inbound of a supported type
	Binary        string   // sing-box, for `check` and `version`
	PIDFile       string   // reload by SIGHUP to this pid...
	ReloadCommand string   // ...or by running this through /bin/sh

	// MinReloadInterval is the least time between two reloads; sets that
	// arrive within it are applied together.
	MinReloadInterval time.Duration
	// ReloadTimeout bounds the wait for sing-box to come back after one.
	ReloadTimeout time.Duration
	// Heartbeat is how often the node registers again.
	Heartbeat time.Duration
	// Wait is the long-poll time asked of the controller, in seconds.
	Wait int

	// StatePath keeps the applied revision and ETag across restarts; empty
	// keeps nothing.
	StatePath string

	Clash *clashapi.Client
	// BeforeReload runs just before sing-box reloads: the meter polls there,
	// since a reload restarts sing-box's counters and the bytes since the
	// last poll would otherwise be lost.
	BeforeReload func(context.Context)

	Registerer prometheus.Registerer
	Log        logrus.FieldLogger
}

// Agent runs the node's side of the control loop.
type Agent struct {
	cfg        Config
	controller *controller
	metrics    *metrics
	binVersion string
}

// New checks the configuration and registers the agent's metrics.
func New(cfg Config) (*Agent, error) {
	u, err := url.Parse(cfg.ControllerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("controller URL %q: want http(s)://host[:port]", cfg.ControllerURL)
	}
	switch {
	case cfg.NodeName == "":
		return nil, errors.New("the agent needs a node name")
	case cfg.NodeAddress == "":
		return nil, errors.New("the agent needs the node's public address")
	case cfg.ConfigPath == "":
		return nil, errors.New("the agent needs the sing-box config path")
	case cfg.PIDFile == "" && cfg.ReloadCommand == "":
		return nil, errors.New("the agent needs a way to reload sing-box: a pid file or a reload command")
	}
	if cfg.Binary == "" {
		cfg.Binary = "sing-box"
	}
	if cfg.MinReloadInterval <= 0 {
		cfg.MinReloadInterval = 30 * time.Second
	}
	if cfg.ReloadTimeout <= 0 {
		cfg.ReloadTimeout = 30 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Minute
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 60
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	src, err := os.ReadFile(cfg.ConfigPath)
	if err != nil {
		return nil, err
	}
	// Fail at start, not at the first user set, on a file we cannot manage.
	if _, err := sbconfig.ParseInbounds(src, cfg.Managed); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.ConfigPath, err)
	}
	a := &Agent{
		cfg:        cfg,
		controller: &controller{base: u, node: cfg.NodeName, tokenFile: cfg.TokenFile, http: &http.Client{}},
		metrics:    newMetrics(cfg.Registerer),
	}
	return a, nil
}

// desired is one user set as the controller sent it.
type desired struct {
	set  sbconfig.NodeUsers
	etag string
}

// Run registers, pulls and applies until ctx ends. With the controller away
// nothing changes on the node: sing-box keeps its last good user set.
func (a *Agent) Run(ctx context.Context) {
	a.binVersion = binaryVersion(ctx, a.cfg.Binary)
	state := a.loadState()
	a.metrics.revision.Set(float64(state.Revision))
	sets := make(chan desired, 1)
	done := make(chan struct{})
	go func() { a.registerLoop(ctx); close(done) }()
	go a.pullLoop(ctx, state.ETag, sets)
	a.applyLoop(ctx, sets)
	<-done
}

// loadState returns what the file on disk is known to hold, or nothing when
// it changed since the agent wrote it.
func (a *Agent) loadState() applied {
	state, err := loadApplied(a.statePath())
	if err != nil {
		a.cfg.Log.WithError(err).Warn("agent state unreadable; fetching the full user set")
		return applied{}
	}
	src, err := os.ReadFile(a.cfg.ConfigPath)
	if err != nil || hashOf(src) != state.ConfigSHA256 {
		return applied{}
	}
	return state
}

func (a *Agent) statePath() string {
	if a.cfg.StatePath == "" {
		return ""
	}
	return a.cfg.StatePath + ".agent.json"
}

// pullLoop follows the controller's user set and hands every new one to
// the applier, latest first: a set not yet applied is replaced by a newer.
func (a *Agent) pullLoop(ctx context.Context, etag string, out chan desired) {
	// A controller that comes back is noticed within half a minute.
	b := backoff{max: 30 * time.Second}
	for ctx.Err() == nil {
		reqCtx, cancel := context.WithTimeout(ctx, time.Duration(a.cfg.Wait)*time.Second+30*time.Second)
		set, tag, err := a.controller.users(reqCtx, etag, a.cfg.Wait)
		cancel()
		switch {
		case errors.Is(err, errNotModified):
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			a.metrics.controllerErrors.WithLabelValues("users").Inc()
			d := b.next()
			a.cfg.Log.WithError(err).WithField("retry_in", d).Warn("fetching the user set failed; keeping the last one")
			sleep(ctx, d)
			continue
		default:
			etag = tag
			select {
			case <-out:
			default:
			}
			out <- desired{set: set, etag: tag}
		}
		b.reset()
		a.metrics.lastSync.SetToCurrentTime()
	}
}

// applyLoop applies the latest set, at most one reload per
// MinReloadInterval, and retries a failed set with a growing delay.
func (a *Agent) applyLoop(ctx context.Context, in chan desired) {
	var (
		pending    *desired
		next       time.Time
		lastReload time.Time
		failures   backoff
	)
	failures.base = a.cfg.MinReloadInterval
	for {
		var due <-chan time.Time
		if pending != nil {
			due = time.After(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case d := <-in:
			pending = &d
			failures.reset()
			next = lastReload.Add(a.cfg.MinReloadInterval)
			continue
		case <-due:
		}
		reloaded, err := a.apply(ctx, pending.set, pending.etag)
		if reloaded {
			lastReload = time.Now()
		}
		next = lastReload.Add(a.cfg.MinReloadInterval)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			retry := failures.next()
			next = maxTime(next, time.Now().Add(retry))
			a.cfg.Log.WithError(err).WithFields(logrus.Fields{"revision": pending.set.Revision, "retry_in": retry}).Error("applying the user set failed; sing-box keeps the previous one")
			continue
		}
		pending = nil
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// backoff doubles from base (1s by default) up to max (ten minutes by
// default), with jitter.
type backoff struct {
	base, max time.Duration
	n         int
}

func (b *backoff) next() time.Duration {
	base := b.base
	if base <= 0 {
		base = time.Second
	}
	limit := b.max
	if limit <= 0 {
		limit = 10 * time.Minute
	}
	d := min(base<<min(b.n, 16), limit)
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
