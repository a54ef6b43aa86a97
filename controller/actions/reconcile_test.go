package actions_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

const reconciledTotal = "boxfleet_actions_reconciled_total"

// Short paces, so that a lost resolution is caught within seconds.
const (
	reconcileInterval = 200 * time.Millisecond
	reconcileGrace    = 2 * time.Second
)

// The acting rules, as alerts/ writes them, on series the test sets.
const reconcileRules = `groups:
  - name: test
    rules:
      - alert: NodeDown
        expr: max by (node) (probe_success) == 0
        labels:
          boxfleet_action: drain_node
      - alert: UserOverQuota
        expr: max by (user) (user_over_quota) > 0
        labels:
          boxfleet_action: suspend_user
`

// reconcileEnv is a Prometheus firing NodeDown for r1, r2 and r4 (r3 is
// up, so the group keeps a healthy node) and UserOverQuota for ava.
type reconcileEnv struct {
	tg   *promtest.Target
	prom *promtest.Server
}

func startReconcileProm(t *testing.T, rules string) *reconcileEnv {
	t.Helper()
	tg := promtest.NewTarget(t)
	for _, n := range []string{"r1", "r2", "r3", "r4"} {
		up := 0.0
		if n == "r3" {
			up = 1
		}
		tg.Set(fmt.Sprintf(`probe_success{node=%q}`, n), up)
	}
	tg.Set(`user_over_quota{user="ava"}`, 1)
	prom := promtest.Prometheus.Start(t, promtest.Options{Interval: 500 * time.Millisecond, Rules: rules,
		Targets: []promtest.StaticTarget{{Addr: tg.Addr(), Labels: map[string]string{"job": "blackbox"}}}})
	prom.WaitFor(t, `count(ALERTS{alertstate="firing"})`, 60*time.Second, func(v model.Vector) bool {
		return len(v) == 1 && int(v[0].Value) == 4
	})
	return &reconcileEnv{tg: tg, prom: prom}
}

// end makes Prometheus stop firing NodeDown for node (or UserOverQuota for
// user) and waits until it no longer reports it.
func (e *reconcileEnv) endNodeDown(t *testing.T, node string) {
	t.Helper()
	e.tg.Set(fmt.Sprintf(`probe_success{node=%q}`, node), 1)
	e.prom.WaitFor(t, fmt.Sprintf(`ALERTS{alertname="NodeDown",node=%q}`, node), 30*time.Second, func(v model.Vector) bool { return len(v) == 0 })
}

func (e *reconcileEnv) endOverQuota(t *testing.T, user string) {
	t.Helper()
	e.tg.Set(fmt.Sprintf(`user_over_quota{user=%q}`, user), 0)
	e.prom.WaitFor(t, fmt.Sprintf(`ALERTS{alertname="UserOverQuota",user=%q}`, user), 30*time.Second, func(v model.Vector) bool { return len(v) == 0 })
}

func (f *fixture) addReconcileFleet() {
	for _, n := range []string{"r1", "r2", "r3", "r4"} {
		f.addNode(n, "rc")
	}
	f.addUser("ava")
}

// reconcile runs the actor's reconcile loop, as the lease holder, until
// the test ends.
func (f *fixture) reconcile() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.actor.Reconcile(ctx, func() bool { return true }); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
}

// eventually polls cond until it holds or within has passed.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reconcileConfig() actions.Config {
	return actions.Config{MaxDrainedRatio: 1, ReconcileInterval: reconcileInterval, ReconcileGrace: reconcileGrace}
}

// The soak's bug: the resolved notification never comes (Prometheus and
// Alertmanager restarted in between), so the node stays drained and the
// user suspended for good. The reconcile loop must bring both back once
// Prometheus has stopped firing their alerts for the grace period, and
// leave alone what still fires.
func TestReconcileResolvesLostResolution(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Prometheus (skipped under -short)")
	}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		env := startReconcileProm(t, reconcileRules)
		f := newFixture(t, st, env.prom.API, nil, reconcileConfig())
		f.addReconcileFleet()
		f.mustPost(http.StatusOK, drainAlert("firing", "r1", start), drainAlert("firing", "r2", start),
			suspendAlert("firing", "ava", start))
		f.wantDrained("r1", true)
		f.wantDrained("r2", true)
		f.wantStatus("ava", store.StatusDisabled)
		f.reconcile()

		// Still firing: several passes change nothing.
		time.Sleep(reconcileGrace + 3*reconcileInterval)
		f.wantDrained("r1", true)
		f.wantStatus("ava", store.StatusDisabled)

		env.endNodeDown(t, "r1")
		env.endOverQuota(t, "ava")
		// Not at once: a normal resolved notification gets the grace
		// period to arrive first.
		f.wantDrained("r1", true)
		f.wantStatus("ava", store.StatusDisabled)

		within := reconcileGrace + 2*reconcileInterval + 5*time.Second
		eventually(t, within, "r1 undrained", func() bool { return !f.node("r1").Drained })
		eventually(t, within, "ava resumed", func() bool { return f.user("ava").Status == store.StatusActive })
		f.wantDrained("r2", true) // NodeDown still fires for r2
		if rec, err := st.GetAlertAction(ctx, keyOf(drainAlert("firing", "r1", start))); err != nil || rec.State != "resolved" {
			t.Errorf("r1's episode: %+v, %v; want resolved", rec, err)
		}
		// The loop counts an episode after the change it made is visible:
		// the counters may trail the status by a moment.
		counted := func() bool {
			return f.metric(reconciledTotal, "action", actions.DrainNode) == 1 && f.metric(reconciledTotal, "action", actions.SuspendUser) == 1 &&
				f.metric(actionsTotal, "action", "undrain_node", "result", "applied") == 1 && f.metric(actionsTotal, "action", "resume_user", "result", "applied") == 1
		}
		for deadline := time.Now().Add(5 * time.Second); !counted() && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		f.wantMetric(reconciledTotal, 1, "action", actions.DrainNode)
		f.wantMetric(reconciledTotal, 1, "action", actions.SuspendUser)
		f.wantMetric(actionsTotal, 1, "action", "undrain_node", "result", "applied")
		f.wantMetric(actionsTotal, 1, "action", "resume_user", "result", "applied")

		// The resolved notification arriving late after all is a no-op.
		f.mustPost(http.StatusOK, drainAlert("resolved", "r1", start))
		f.wantMetric(actionsTotal, 1, "action", "undrain_node", "result", "applied")
	})
}

// Prometheus unreachable says nothing about the alerts: nothing may be
// undone, however long it lasts; once it answers again the lost
// resolution is caught up.
func TestReconcilePrometheusDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Prometheus (skipped under -short)")
	}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		env := startReconcileProm(t, reconcileRules)
		sw := &switchProm{cur: env.prom.API}
		f := newFixture(t, st, sw, nil, reconcileConfig())
		f.addReconcileFleet()
		f.mustPost(http.StatusOK, drainAlert("firing", "r1", start), suspendAlert("firing", "ava", start))
		f.wantDrained("r1", true)
		f.wantStatus("ava", store.StatusDisabled)

		sw.set(deadProm(t))
		f.reconcile()
		env.endNodeDown(t, "r1")
		env.endOverQuota(t, "ava")
		time.Sleep(2*reconcileGrace + 5*reconcileInterval)
		f.wantDrained("r1", true)
		f.wantStatus("ava", store.StatusDisabled)
		f.wantMetric(reconciledTotal, 0, "action", actions.DrainNode)
		f.wantMetric(reconciledTotal, 0, "action", actions.SuspendUser)

		sw.set(env.prom.API)
		within := reconcileGrace + 2*reconcileInterval + 5*time.Second
		eventually(t, within, "r1 undrained once Prometheus answers", func() bool { return !f.node("r1").Drained })
		eventually(t, within, "ava resumed once Prometheus answers", func() bool { return f.user("ava").Status == store.StatusActive })
	})
}

// What an admin drained or suspended stays so: the loop resolves the
// episodes but undoes only what they themselves did.
func TestReconcileKeepsManualActions(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Prometheus (skipped under -short)")
	}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		env := startReconcileProm(t, reconcileRules)
		f := newFixture(t, st, env.prom.API, nil, reconcileConfig())
		f.addReconcileFleet()

		// r4: drained by an admin before its alert, which then changes
		// nothing. r1: drained by its alert, then undrained and drained
		// again by an admin. ava: suspended by her alert, then resumed
		// and suspended again by an admin.
		if _, _, err := st.SetDrained(ctx, "admin:root", "r4", true, "maintenance"); err != nil {
			t.Fatal(err)
		}
		f.mustPost(http.StatusOK, drainAlert("firing", "r1", start), drainAlert("firing", "r4", start),
			suspendAlert("firing", "ava", start))
		for _, drained := range []bool{false, true} {
			if _, _, err := st.SetDrained(ctx, "admin:root", "r1", drained, "by hand"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.ResumeUser(ctx, "admin:root", "ava"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SuspendUser(ctx, "admin:root", "ava", "abuse"); err != nil {
			t.Fatal(err)
		}
		f.reconcile()
		env.endNodeDown(t, "r1")
		env.endNodeDown(t, "r4")
		env.endOverQuota(t, "ava")

		within := reconcileGrace + 2*reconcileInterval + 5*time.Second
		eventually(t, within, "r1's episode resolved", func() bool {
			rec, err := st.GetAlertAction(ctx, keyOf(drainAlert("firing", "r1", start)))
			return err == nil && rec.State == "resolved"
		})
		eventually(t, within, "ava's episode resolved", func() bool {
			rec, err := st.GetAlertAction(ctx, keyOf(suspendAlert("firing", "ava", start)))
			return err == nil && rec.State == "resolved"
		})
		time.Sleep(3 * reconcileInterval)
		if n := f.wantDrained("r1", true); n.DrainedBy != "admin:root" {
			t.Errorf("r1 drained_by %q, want the admin", n.DrainedBy)
		}
		if n := f.wantDrained("r4", true); n.DrainedBy != "admin:root" {
			t.Errorf("r4 drained_by %q, want the admin", n.DrainedBy)
		}
		if u := f.wantStatus("ava", store.StatusDisabled); u.StatusReason != "abuse" {
			t.Errorf("ava suspended for %q, want the admin's reason", u.StatusReason)
		}
		f.wantMetric(actionsTotal, 0, "action", "undrain_node", "result", "applied")
		f.wantMetric(actionsTotal, 0, "action", "resume_user", "result", "applied")
	})
}

// NodeDown with a "for", as the shipped rule has (30 s there).
const reconcilePendingRules = `groups:
  - name: test
    rules:
      - alert: NodeDown
        expr: max by (node) (probe_success) == 0
        for: 6s
        labels:
          boxfleet_action: drain_node
      - alert: UserOverQuota
        expr: max by (user) (user_over_quota) > 0
        labels:
          boxfleet_action: suspend_user
`

// A pending alert is not a resolved one: a node that is back for a moment
// and then down again (or whose alert restarts pending after a restart of
// Prometheus) stays drained while its alert waits out its "for", even when
// that is longer than the grace period.
func TestReconcileKeepsPendingAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Prometheus (skipped under -short)")
	}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		env := startReconcileProm(t, reconcilePendingRules)
		f := newFixture(t, st, env.prom.API, nil, reconcileConfig())
		f.addReconcileFleet()
		f.mustPost(http.StatusOK, drainAlert("firing", "r1", start))
		f.wantDrained("r1", true)
		f.reconcile()

		env.endNodeDown(t, "r1")
		env.tg.Set(`probe_success{node="r1"}`, 0)
		env.prom.WaitFor(t, `ALERTS{alertname="NodeDown",alertstate="pending",node="r1"}`, 10*time.Second, func(v model.Vector) bool { return len(v) == 1 })
		env.prom.WaitFor(t, `ALERTS{alertname="NodeDown",alertstate="firing",node="r1"}`, 20*time.Second, func(v model.Vector) bool { return len(v) == 1 })
		time.Sleep(3 * reconcileInterval)
		f.wantDrained("r1", true)
		f.wantMetric(reconciledTotal, 0, "action", actions.DrainNode)
	})
}

// A Prometheus restarted, with NodeDown edited meanwhile (a label added),
// while NodeDown fired for r1 and r4, both back while it was down. Its
// previous process wrote ALERTS "firing" for them, and the new one never
// marks a series stale that it did not write itself, so ALERTS reads
// "firing" for the 5 min lookback. (The same happens without the edit
// whenever the new process's first evaluation already sees the probe
// succeed, which a test cannot force.) Neither may a late firing
// notification for r4 drain it on that evidence, nor may the lost
// resolution of r1 wait out the lookback: the rule engine's own list is
// the authority. r2 still fails its probes and stays drained.
func TestAlertStatesAfterPrometheusRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Prometheus (skipped under -short)")
	}
	st := storetest.SQLite(t)
	env := startReconcileProm(t, reconcileRules)
	f := newFixture(t, st, env.prom.API, nil, reconcileConfig())
	f.addReconcileFleet()
	f.mustPost(http.StatusOK, drainAlert("firing", "r1", start), drainAlert("firing", "r2", start))
	f.wantDrained("r1", true)
	f.wantDrained("r2", true)

	env.prom.Stop()
	env.tg.Set(`probe_success{node="r1"}`, 1)
	env.tg.Set(`probe_success{node="r4"}`, 1)
	env.prom.SetRules(t, strings.Replace(reconcileRules, "          boxfleet_action: drain_node",
		"          boxfleet_action: drain_node\n          severity: critical", 1))
	env.prom.Restart(t)
	// Once the new process has scraped the probes and evaluated the rule
	// on them, r1 and r4 are not firing, and ALERTS still says they are:
	// the case this test is about.
	eventually(t, 30*time.Second, "NodeDown evaluated on the new probes", func() bool {
		res, err := env.prom.API.Rules(context.Background(), nil)
		if err != nil || len(res.Groups) != 1 {
			return false
		}
		nodes := map[string]bool{}
		for _, r := range res.Groups[0].Rules {
			if ar, ok := r.(promv1.AlertingRule); ok && ar.Name == "NodeDown" {
				for _, al := range ar.Alerts {
					nodes[string(al.Labels["node"])] = true
				}
			}
		}
		return nodes["r2"] && !nodes["r1"] && !nodes["r4"]
	})
	if v, err := env.prom.Query(`ALERTS{alertname="NodeDown",alertstate="firing",node=~"r1|r4"}`); err != nil || len(v) != 2 {
		t.Fatalf("ALERTS after r1's and r4's alerts ended: %v, %v; want the previous process's firing series still read", v, err)
	}
	f.mustPost(http.StatusOK, drainAlert("firing", "r4", start))
	f.wantDrained("r4", false)

	f.reconcile()
	within := reconcileGrace + 2*reconcileInterval + 5*time.Second
	eventually(t, within, "r1 undrained while ALERTS still read firing", func() bool { return !f.node("r1").Drained })
	f.wantDrained("r2", true)
}
