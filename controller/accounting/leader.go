package accounting

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// Leader keeps the singleton lease and runs the accountant while it holds
// it. Renewal runs on its own ticker so that a long cycle does not let the
// lease lapse; the ledger commit re-checks the lease inside its
// transaction, so a controller that lost it mid-cycle cannot write.
type Leader struct {
	Store    *store.Store
	Acct     *Accountant
	Log      logrus.FieldLogger
	Holder   string
	Interval time.Duration // between accounting cycles
	TTL      time.Duration // a dead leader is replaced within this

	held  atomic.Bool
	until atomic.Int64 // Unix ns: when the lease held runs out unless renewed
	gauge prometheus.Gauge
}

// Register adds boxfleet_leader to reg.
func (l *Leader) Register(reg prometheus.Registerer) {
	f := promauto.With(reg)
	l.gauge = f.NewGauge(prometheus.GaugeOpts{
		Name: "boxfleet_leader",
		Help: "1 when this controller holds the lease for accounting and sweeps.",
	})
}

// Run blocks until ctx ends, then releases the lease.
func (l *Leader) Run(ctx context.Context) {
	go l.renew(ctx)
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	for {
		if l.IsLeader() {
			cctx, cancel := l.leading(ctx)
			if err := l.Acct.Cycle(cctx); err != nil && ctx.Err() == nil {
				l.Log.WithError(err).Warn("accounting cycle failed; retrying next interval")
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := l.Store.ReleaseLease(rctx, LeaseName, l.Holder); err != nil {
				l.Log.WithError(err).Warn("releasing the lease")
			}
			return
		case <-t.C:
		}
	}
}

func (l *Leader) renew(ctx context.Context) {
	t := time.NewTicker(l.TTL / 3)
	defer t.Stop()
	for {
		// An attempt may take until the lease held runs out, and no longer
		// than a TTL: without a deadline, a query on a connection whose
		// packets vanish (a cut link, a database host gone) waits for TCP
		// to give up, about 15 minutes, and this controller would go on
		// leading beside the one that took the lease over.
		start := time.Now()
		deadline := start.Add(l.TTL)
		if until := time.Unix(0, l.until.Load()); l.held.Load() && until.Before(deadline) {
			deadline = until
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		held, err := l.Store.TryLease(actx, LeaseName, l.Holder, l.TTL.Milliseconds())
		cancel()
		if err != nil && ctx.Err() == nil {
			l.Log.WithError(err).Warn("lease: database unreachable")
			held = false
		}
		if held {
			// The database's expiry counts from its clock reading, taken
			// after start: the lease runs out no sooner than this.
			l.until.Store(start.Add(l.TTL).UnixNano())
		}
		if held != l.held.Swap(held) {
			l.Log.WithField("leader", held).Info("lease changed hands")
		}
		if l.gauge != nil {
			l.gauge.Set(map[bool]float64{true: 1, false: 0}[held])
		}
		select {
		case <-ctx.Done():
			l.held.Store(false)
			return
		case <-t.C:
		}
	}
}

// leading returns a context that ends with ctx or as soon as this
// controller stops leading. A cycle runs under it: its commits would be
// refused by the lease check anyway, and a query stuck on a connection
// whose packets vanish (a cut link) is abandoned at once (the MySQL driver
// closes the connection when the context ends) instead of holding up the
// next cycle until TCP gives up, about 15 minutes, after the link is back.
func (l *Leader) leading(ctx context.Context) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(max(l.TTL/20, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
				if !l.IsLeader() {
					cancel()
					return
				}
			}
		}
	}()
	return lctx, cancel
}

// IsLeader reports whether this controller holds the lease now: renewed,
// and not run out since (a renewal under way may still fail).
func (l *Leader) IsLeader() bool {
	return l.held.Load() && time.Now().UnixNano() < l.until.Load()
}
