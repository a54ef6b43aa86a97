package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// checkEvery is how often the agent looks for changes of the config's
// public parameters (an operator edited a port or a key) to report them
// before the next heartbeat.
const checkEvery = 10 * time.Second

// registerLoop registers the node at start, at every heartbeat, and as soon
// as what it would report changes.
func (a *Agent) registerLoop(ctx context.Context) {
	var (
		sent     []byte
		lastSent time.Time
		retryAt  time.Time
		b        = backoff{max: a.cfg.Heartbeat}
	)
	for {
		reg, err := a.registration(ctx)
		body, _ := json.Marshal(reg)
		now := time.Now()
		due := !bytes.Equal(body, sent) || now.Sub(lastSent) >= a.cfg.Heartbeat
		switch {
		case err != nil:
			a.cfg.Log.WithError(err).Error("reading the sing-box config for registration failed")
		case due && !now.Before(retryAt):
			if err := a.register(ctx, reg); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.metrics.controllerErrors.WithLabelValues("register").Inc()
				d := b.next()
				retryAt = now.Add(d)
				a.cfg.Log.WithError(err).WithField("retry_in", d).Warn("registering with the controller failed")
			} else {
				b.reset()
				sent, lastSent = body, now
				a.metrics.lastRegistration.SetToCurrentTime()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(checkEvery, a.cfg.Heartbeat)):
		}
	}
}

func (a *Agent) register(ctx context.Context, reg sbconfig.Registration) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return a.controller.register(ctx, reg)
}

// registration is what the node reports now.
func (a *Agent) registration(ctx context.Context) (sbconfig.Registration, error) {
	src, err := os.ReadFile(a.cfg.ConfigPath)
	if err != nil {
		return sbconfig.Registration{}, err
	}
	inbounds, err := sbconfig.ParseInbounds(src, a.cfg.Managed)
	if err != nil {
		return sbconfig.Registration{}, err
	}
	version := a.binVersion
	if a.cfg.Clash != nil {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if v, err := a.cfg.Clash.Version(vctx); err == nil {
			version = v
		}
		cancel()
	}
	return sbconfig.Registration{
		Address:  a.cfg.NodeAddress,
		Exporter: a.cfg.ExporterAddress,
		Labels:   a.cfg.Labels,
		Inbounds: inbounds,
		Version:  version,
	}, nil
}

// binaryVersion asks the sing-box binary for its version ("1.14.1"), or
// returns "" when it cannot.
func binaryVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "sing-box version"))
}
