// Package actions is the controller's side of the alert-driven control
// loop: it receives Alertmanager's webhook, applies the action an alert
// names (boxfleet_action: suspend_user, drain_node) to the target it names
// (user, node), undoes it on resolution when that is safe, and guards
// against runaway automation.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/window"
)

// Labels an acting alert carries.
const (
	ActionLabel  = "boxfleet_action"
	SuspendUser  = "suspend_user"
	DrainNode    = "drain_node"
	userLabel    = "user"
	nodeLabel    = "node"
	resultOK     = "applied"
	resultNoop   = "noop"
	resultDryRun = "dry_run"
	resultRefuse = "refused"
	resultError  = "error"
)

// Health tells whether a node is healthy now, for the "never drain the last
// healthy node" guard; ok is false when the node has no score yet.
type Health interface {
	Score(node string) (score float64, ok bool)
}

// Config holds the guards.
type Config struct {
	DryRun bool
	// Global and per-action rate limits.
	Rate, SuspendRate, DrainRate Rate
	// MaxDrainedRatio caps the share of a group's nodes that may be drained
	// by alerts at once.
	MaxDrainedRatio float64
	// ReconcileInterval and ReconcileGrace pace the loop that resolves
	// episodes whose resolved notification was lost (see Reconcile); zero
	// means DefaultReconcileInterval and DefaultReconcileGrace.
	ReconcileInterval, ReconcileGrace time.Duration
}

// Actor applies alert actions.
type Actor struct {
	Store  *store.Store
	Prom   promv1.API // drains are confirmed against Prometheus first
	Health Health
	Log    logrus.FieldLogger
	Config Config

	global, suspend, drain *window.Counter
	actions                *prometheus.CounterVec
	received               *prometheus.CounterVec
	reconciled             *prometheus.CounterVec

	// step runs before a firing action is applied ("apply") and before it
	// is recorded ("finish"); tests deliver the resolution there to
	// reproduce each order of the race.
	step func(name string)
}

// New builds an Actor and registers its metrics.
func New(st *store.Store, prom promv1.API, h Health, log logrus.FieldLogger, cfg Config, reg prometheus.Registerer) *Actor {
	f := promauto.With(reg)
	a := &Actor{
		Store: st, Prom: prom, Health: h, Log: log, Config: cfg,
		global:  window.New(cfg.Rate.N, cfg.Rate.Window),
		suspend: window.New(cfg.SuspendRate.N, cfg.SuspendRate.Window),
		drain:   window.New(cfg.DrainRate.N, cfg.DrainRate.Window),
		actions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_actions_total",
			Help: "Actions requested by alerts, by action and result (applied, noop, dry_run, refused, error).",
		}, []string{"action", "result"}),
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_webhook_alerts_total",
			Help: "Alerts received from Alertmanager, by status and how they were handled.",
		}, []string{"status", "result"}),
		reconciled: f.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_actions_reconciled_total",
			Help: "Alert episodes resolved by the reconcile loop because Prometheus no longer fired them and their resolved notification never arrived, by action.",
		}, []string{"action"}),
	}
	for _, act := range []string{SuspendUser, "resume_user", DrainNode, "undrain_node"} {
		for _, r := range []string{resultOK, resultNoop, resultDryRun, resultRefuse, resultError} {
			a.actions.WithLabelValues(act, r)
		}
	}
	a.reconciled.WithLabelValues(SuspendUser)
	a.reconciled.WithLabelValues(DrainNode)
	return a
}

// Alert is the part of an Alertmanager alert the actor needs.
type Alert struct {
	Status      string // firing or resolved
	Labels      map[string]string
	Fingerprint string
	StartsAt    time.Time
}

// Outcome of handling one alert.
type Outcome struct {
	Result string
	// Retry is true when the failure is temporary (database or Prometheus
	// unreachable, rate limited): the webhook then answers 5xx so that
	// Alertmanager delivers again.
	Retry bool
	Err   error
}

// Handle applies or undoes one alert's action. It is idempotent: the
// (fingerprint, start, action, target) record in the store makes repeats
// and duplicates no-ops, and a firing that arrives after its own
// resolution is ignored. A resolution that arrives while its firing is
// still being applied wins: whichever of the two finishes last sees the
// other and leaves the target as the resolution wants it.
func (a *Actor) Handle(ctx context.Context, al Alert) Outcome {
	action := al.Labels[ActionLabel]
	var target string
	switch action {
	case SuspendUser:
		target = al.Labels[userLabel]
	case DrainNode:
		target = al.Labels[nodeLabel]
	default:
		return a.count(al.Status, "ignored", Outcome{Result: "ignored"})
	}
	if target == "" {
		a.Log.WithFields(logrus.Fields{"alertname": al.Labels["alertname"], "action": action}).Warn("acting alert without a target label; ignored")
		return a.count(al.Status, "ignored", Outcome{Result: "ignored"})
	}
	key := store.AlertKey{Fingerprint: al.Fingerprint, StartsAt: al.StartsAt.Unix(), Action: action, Target: target}
	prev, claimed, err := a.Store.ClaimAlert(ctx, key, al.Labels["alertname"], al.Status)
	if err != nil {
		return a.count(al.Status, resultError, Outcome{Result: resultError, Retry: true, Err: err})
	}
	var out Outcome
	switch {
	case al.Status == "firing" && !claimed:
		out = Outcome{Result: resultNoop} // repeat, duplicate, or already resolved
	case al.Status == "firing":
		out = a.fire(ctx, key, al)
	case claimed: // resolved before we ever saw it fire
		out = Outcome{Result: resultNoop}
		err = a.Store.FinishAlert(ctx, key, "resolved", false, resultNoop)
	case prev.State == "resolved" && prev.Result != "pending":
		out = Outcome{Result: resultNoop}
	default:
		out = a.resolve(ctx, key, al, prev.Applied)
	}
	if err != nil && out.Err == nil {
		out = Outcome{Result: resultError, Retry: true, Err: err}
	}
	return a.count(al.Status, out.Result, out)
}

func (a *Actor) count(status, result string, out Outcome) Outcome {
	a.received.WithLabelValues(status, result).Inc()
	return out
}

// actor is the audit-log identity of an alert episode; a drain records it
// in drained_by, and a suspension in its reason, so resolution undoes only
// what this episode did.
func actorFor(al Alert) string {
	return "alert:" + al.Labels["alertname"] + "/" + al.Fingerprint + "@" + strconv.FormatInt(al.StartsAt.Unix(), 10)
}

// alertDetail is what the audit log keeps of an alert: its name and every
// label, so an operator can tell later exactly which rule and series acted.
func alertDetail(al Alert) string {
	b, _ := json.Marshal(al.Labels) // map keys are sorted: stable text
	d := al.Labels["alertname"] + " " + string(b)
	if len(d) > 255 {
		d = d[:255]
	}
	return d
}

func (a *Actor) fire(ctx context.Context, key store.AlertKey, al Alert) Outcome {
	action := key.Action
	refuse := func(retry bool, why string, args ...any) Outcome {
		msg := fmt.Sprintf(why, args...)
		a.actions.WithLabelValues(action, resultRefuse).Inc()
		_ = a.Store.ReleaseAlert(ctx, key) // let the next delivery try again
		_ = a.Store.RecordEvent(ctx, actorFor(al), action+".refused", objectType(action), key.Target, msg)
		a.Log.WithFields(logrus.Fields{"action": action, "target": key.Target, "alertname": al.Labels["alertname"]}).WithField("reason", msg).Warn("action refused")
		return Outcome{Result: resultRefuse, Retry: retry}
	}
	// The drain guards come before the rate limit: otherwise every retry
	// while Prometheus is unreachable would use up a drain slot, and drains
	// would stay blocked after it came back.
	if action == DrainNode {
		if why, retry, ok := a.mayDrain(ctx, key.Target, al); !ok {
			return refuse(retry, "%s", why)
		}
	}
	if !window.TakeAll(time.Now(), a.global, a.limiterFor(action)) {
		return refuse(true, "rate limit reached")
	}
	if a.Config.DryRun {
		_ = a.Store.RecordEvent(ctx, actorFor(al), action+".dry_run", objectType(action), key.Target, "dry run: would "+action)
		a.actions.WithLabelValues(action, resultDryRun).Inc()
		return a.finish(ctx, key, "firing", false, resultDryRun)
	}
	if a.step != nil {
		a.step("apply")
	}
	var changed bool
	var err error
	switch action {
	case SuspendUser:
		_, changed, err = a.Store.SuspendIfActive(ctx, actorFor(al), key.Target, actorFor(al), alertDetail(al))
	case DrainNode:
		_, changed, err = a.Store.SetDrained(ctx, actorFor(al), key.Target, true, alertDetail(al))
	}
	if errors.Is(err, store.ErrNotFound) {
		a.actions.WithLabelValues(action, resultNoop).Inc()
		return a.finish(ctx, key, "firing", false, "unknown_target")
	}
	if err != nil {
		_ = a.Store.ReleaseAlert(ctx, key)
		a.actions.WithLabelValues(action, resultError).Inc()
		return Outcome{Result: resultError, Retry: true, Err: err}
	}
	result := resultNoop
	if changed {
		result = resultOK
	}
	a.actions.WithLabelValues(action, result).Inc()
	if a.step != nil {
		a.step("finish")
	}
	firing, err := a.Store.FinishFiring(ctx, key, changed, result)
	if err != nil {
		return Outcome{Result: resultError, Retry: true, Err: err}
	}
	if !firing {
		// The episode resolved meanwhile, and its handler may have found
		// nothing to undo yet: undo it here.
		a.Log.WithFields(logrus.Fields{"action": action, "target": key.Target, "alertname": al.Labels["alertname"]}).Info("alert resolved while its action was applied; undoing it")
		return a.resolve(ctx, key, al, changed)
	}
	return Outcome{Result: result}
}

// resolve undoes what the episode applied. It records the resolution first
// and then undoes unconditionally (the undo touches only a target that this
// very episode suspended or drained): a firing handled at the same time
// either finishes before, and is undone here, or after, and then sees the
// resolution and undoes itself.
//
// applied says whether the episode is known to have applied its action; an
// undo is counted in boxfleet_actions_total only then, or when it undid
// something.
func (a *Actor) resolve(ctx context.Context, key store.AlertKey, al Alert, applied bool) Outcome {
	if err := a.Store.FinishAlert(ctx, key, "resolved", false, "pending"); err != nil {
		return Outcome{Result: resultError, Retry: true, Err: err}
	}
	var done bool
	var err error
	undo := "resume_user"
	switch key.Action {
	case SuspendUser:
		_, done, err = a.Store.ResumeIfSuspendedFor(ctx, actorFor(al), key.Target, actorFor(al))
	case DrainNode:
		undo = "undrain_node"
		done, err = a.Store.UndrainIfDrainedBy(ctx, actorFor(al), key.Target)
	}
	if errors.Is(err, store.ErrNotFound) {
		err, done = nil, false
	}
	if err != nil {
		a.actions.WithLabelValues(undo, resultError).Inc()
		return Outcome{Result: resultError, Retry: true, Err: err}
	}
	result := resultNoop
	if done {
		result = resultOK
	}
	if applied || done {
		a.actions.WithLabelValues(undo, result).Inc()
	}
	return a.finish(ctx, key, "resolved", done, result)
}

func (a *Actor) finish(ctx context.Context, key store.AlertKey, state string, applied bool, result string) Outcome {
	if err := a.Store.FinishAlert(ctx, key, state, applied, result); err != nil {
		return Outcome{Result: resultError, Retry: true, Err: err}
	}
	return Outcome{Result: result}
}

func (a *Actor) limiterFor(action string) *window.Counter {
	if action == DrainNode {
		return a.drain
	}
	return a.suspend
}

func objectType(action string) string {
	if action == DrainNode {
		return "node"
	}
	return "user"
}

// mayDrain applies the drain guards: the alert must still be firing in
// Prometheus (a failed check means no action), the group keeps at least one
// healthy undrained node, and no more than MaxDrainedRatio of the group is
// drained.
func (a *Actor) mayDrain(ctx context.Context, name string, al Alert) (why string, retry, ok bool) {
	firing, err := a.stillFiring(ctx, al)
	if err != nil {
		return "cannot confirm the alert with Prometheus: " + err.Error(), true, false
	}
	if !firing {
		return "Prometheus no longer reports the alert firing", false, false
	}
	nodes, err := a.Store.ListNodes(ctx)
	if err != nil {
		return "cannot read nodes: " + err.Error(), true, false
	}
	var target *store.Node
	for _, n := range nodes {
		if n.Name == name {
			target = n
		}
	}
	if target == nil {
		return "", false, true // unknown node: the store reports it
	}
	if target.Drained {
		return "", false, true
	}
	total, drained, healthyLeft := 0, 0, 0
	for _, n := range nodes {
		if n.Group() != target.Group() {
			continue
		}
		total++
		if n.Drained {
			drained++
			continue
		}
		if n.Name != name && a.healthy(n.Name) {
			healthyLeft++
		}
	}
	if healthyLeft == 0 {
		return "it is the last healthy node of its group", false, false
	}
	if a.Config.MaxDrainedRatio > 0 && float64(drained+1) > a.Config.MaxDrainedRatio*float64(total) {
		return fmt.Sprintf("%d of %d nodes of its group are drained already (cap %.0f%%)", drained, total, a.Config.MaxDrainedRatio*100), false, false
	}
	return "", false, true
}

func (a *Actor) healthy(node string) bool {
	if a.Health == nil {
		return true
	}
	s, ok := a.Health.Score(node)
	return !ok || s > 0
}

// stillFiring asks the rule evaluator whether the alert fires now (see
// readAlertStates). An alert pending again, as a restarted Prometheus
// restores it before its next evaluations, and a rule not evaluated yet
// are not a "no": the check fails, and Alertmanager delivers again.
func (a *Actor) stillFiring(ctx context.Context, al Alert) (bool, error) {
	name, node := al.Labels["alertname"], al.Labels[nodeLabel]
	states, err := a.readAlertStates(ctx, map[string]bool{name: true})
	if err != nil {
		return false, err
	}
	switch states[activeKey(name, DrainNode, node)] {
	case promv1.AlertStateFiring:
		return true, nil
	case promv1.AlertStatePending:
		return false, errors.New("the alert is pending again (Prometheus restarted?)")
	}
	return false, nil
}
