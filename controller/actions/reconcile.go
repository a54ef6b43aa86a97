package actions

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
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
// Every interval the loop asks Prometheus which acting alerts are pending
// or firing; an applied episode that Prometheus has answered "not firing"
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
	active, err := a.activeAlerts(ctx, names)
	if err != nil {
		// No answer is no evidence: forget every clock, so that the grace
		// is measured again on answers only.
		clear(quiet)
		a.Log.WithError(err).WithField("episodes", len(applied)).Warn("reconcile: cannot ask Prometheus which alerts fire; nothing resolved")
		return
	}
	for _, e := range applied {
		if active[activeKey(e.AlertName, e.Action, e.Target)] {
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

func activeKey(alertname, action, target string) string {
	return alertname + "\x00" + action + "\x00" + target
}

// activeAlerts asks Prometheus which of the named alerts are pending or
// firing, keyed by alertname, action and target. Pending counts: after a
// restart of Prometheus an alert whose condition still holds is pending
// again for its rule's "for", and its episode must not be resolved then.
// Like stillFiring it reads both the ALERTS series and the rule engine's
// list, since either may trail the other; both must answer.
func (a *Actor) activeAlerts(ctx context.Context, names map[string]bool) (map[string]bool, error) {
	if a.Prom == nil {
		return nil, fmt.Errorf("no Prometheus configured")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var re []string
	for n := range names {
		re = append(re, regexp.QuoteMeta(n))
	}
	slices.Sort(re)
	active := map[string]bool{}
	add := func(ls model.LabelSet) {
		name := string(ls["alertname"])
		if !names[name] {
			return
		}
		// The action label is the rule's; an alert without it (say a rule
		// changed meanwhile) still counts for either action on its target.
		acts := []string{string(ls[ActionLabel])}
		if acts[0] == "" {
			acts = []string{DrainNode, SuspendUser}
		}
		for _, act := range acts {
			switch act {
			case DrainNode:
				if n := ls[nodeLabel]; n != "" {
					active[activeKey(name, act, string(n))] = true
				}
			case SuspendUser:
				if u := ls[userLabel]; u != "" {
					active[activeKey(name, act, string(u))] = true
				}
			}
		}
	}
	q := fmt.Sprintf(`ALERTS{alertname=~%q}`, strings.Join(re, "|"))
	v, _, _, err := a.Prom.Query(ctx, q, time.Now())
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("ALERTS query returned %s, not a vector", v.Type())
	}
	for _, s := range vec {
		add(model.LabelSet(s.Metric))
	}
	res, err := a.Prom.Alerts(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range res.Alerts {
		if r.State == promv1.AlertStateFiring || r.State == promv1.AlertStatePending {
			add(r.Labels)
		}
	}
	return active, nil
}
