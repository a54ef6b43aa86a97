package actions

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// Defaults of the reconcile loop. The grace is longer than the
// controller route's group_interval (1m in prometheus/alertmanager.yml),
// the longest Alertmanager waits before it sends a resolved notification,
// so that a normal resolution always arrives first and reconciliation
// only catches the ones that were lost.
const (
	DefaultReconcileInterval = 30 * time.Second
	DefaultReconcileGrace    = 2 * time.Minute
)

// episodeID is one applied episode, as the reconcile loop tracks it.
type episodeID = store.AlertKey

// Reconcile resolves, on the lease holder, applied alert episodes whose
// resolved notification never came. Alertmanager keeps its notification
// log in memory and on a local file: when Prometheus and Alertmanager both
// restart between an alert's end and its resolved notification, nothing
// remembers the alert any more and the resolution is never sent, which
// would leave a node drained or a user suspended until the next episode.
// Every interval the loop asks the rule evaluator which acting alerts are
// pending or firing (readAlertStates: its rule list, not ALERTS, which a
// restarted Prometheus leaves reading "firing" after the alert ended); an applied episode that Prometheus has answered "not firing"
// for throughout the grace period is resolved as a resolved notification
// would resolve it, with the same guards (only what the episode itself
// drained or suspended is undone). When Prometheus does not answer,
// nothing is resolved and the grace starts over: an outage of Prometheus
// must never undo actions.
func (a *Actor) Reconcile(ctx context.Context, isLeader func() bool) {
	interval := a.Config.ReconcileInterval
	if interval <= 0 {
		interval = DefaultReconcileInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	quiet := map[episodeID]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if isLeader != nil && !isLeader() {
			// A former leader's observations may be stale by the time it
			// leads again: start over.
			clear(quiet)
			continue
		}
		a.reconcilePass(ctx, time.Now(), quiet)
	}
}

// reconcilePass is one pass; quiet holds, per applied episode, since when
// Prometheus has been seen not firing it without interruption.
func (a *Actor) reconcilePass(ctx context.Context, now time.Time, quiet map[episodeID]time.Time) {
	grace := a.Config.ReconcileGrace
	if grace <= 0 {
		grace = DefaultReconcileGrace
	}
	eps, err := a.Store.FiringAlertActions(ctx, 0)
	if err != nil {
		a.Log.WithError(err).Warn("reconcile: cannot list firing alert episodes")
		return
	}
	var applied []*store.AlertAction
	names := map[string]bool{}
	for _, e := range eps {
		if e.Applied && (e.Action == DrainNode || e.Action == SuspendUser) {
			applied = append(applied, e)
			names[e.AlertName] = true
		}
	}
	live := map[episodeID]bool{}
	for _, e := range applied {
		live[e.AlertKey] = true
	}
	for k := range quiet {
		if !live[k] {
			delete(quiet, k) // resolved by its notification, or by a pass
		}
	}
	if len(applied) == 0 {
		return
	}
	active, err := a.readAlertStates(ctx, names)
	if err != nil {
		// No answer is no evidence: forget every clock, so that the grace
		// is measured again on answers only.
		clear(quiet)
		a.Log.WithError(err).WithField("episodes", len(applied)).Warn("reconcile: cannot ask Prometheus which alerts fire; nothing resolved")
		return
	}
	for _, e := range applied {
		if active[activeKey(e.AlertName, e.Action, e.Target)] != "" {
			delete(quiet, e.AlertKey)
			continue
		}
		since, ok := quiet[e.AlertKey]
		if !ok {
			quiet[e.AlertKey] = now
			continue
		}
		if now.Sub(since) < grace {
			continue
		}
		al := Alert{Status: "resolved", Labels: map[string]string{"alertname": e.AlertName, ActionLabel: e.Action},
			Fingerprint: e.Fingerprint, StartsAt: time.Unix(e.StartsAt, 0)}
		log := a.Log.WithFields(logrus.Fields{"alertname": e.AlertName, "action": e.Action, "target": e.Target,
			"starts_at": al.StartsAt.UTC().Format(time.RFC3339), "not_firing_for": now.Sub(since).Round(time.Second).String()})
		out, resolved := a.resolveEpisode(ctx, e, al)
		if out.Err != nil {
			log.WithError(out.Err).Warn("reconcile: resolving an episode whose resolution was lost")
			continue
		}
		delete(quiet, e.AlertKey)
		if !resolved {
			log.Debug("reconcile: the episode was resolved meanwhile")
			continue
		}
		a.reconciled.WithLabelValues(e.Action).Inc()
		log.WithField("result", out.Result).Info("reconcile: Prometheus no longer fires the alert and its resolution never arrived; resolved it")
	}
}

// resolveEpisode resolves e as its resolved notification would, unless
// that notification (or another controller) got there first; resolved
// says whether this call resolved it.
func (a *Actor) resolveEpisode(ctx context.Context, e *store.AlertAction, al Alert) (Outcome, bool) {
	cur, err := a.Store.GetAlertAction(ctx, e.AlertKey)
	if err != nil {
		return Outcome{Result: resultError, Err: err}, false
	}
	if cur.State != "firing" || !cur.Applied {
		return Outcome{Result: resultNoop}, false
	}
	out := a.resolve(ctx, e.AlertKey, al, true)
	return out, out.Err == nil
}
