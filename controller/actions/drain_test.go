package actions_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// nodeDownRule makes the backend's rule evaluation (Prometheus itself, or
// vmalert writing back to VictoriaMetrics) produce the ALERTS series the
// drain check reads, from probe results the test sets.
const nodeDownRule = `groups:
  - name: test
    rules:
      - alert: NodeDown
        expr: max by (node) (probe_success) == 0
        labels:
          boxfleet_action: drain_node
`

// Groups of the drain tests; every node but e5 and a2 fails its probes,
// so NodeDown fires for it in Prometheus.
var drainFleet = map[string][]string{
	"eu": {"e1", "e2", "e3", "e4", "e5"},
	"us": {"u1"},
	"ap": {"p1", "p2", "p3", "p4"},
	"sa": {"s1", "s2", "s3"},
	"as": {"a1", "a2"},
}

func startProber(t *testing.T, b promtest.Backend) *promtest.Server {
	tg := promtest.NewTarget(t)
	firing := 0
	for _, nodes := range drainFleet {
		for _, n := range nodes {
			up := 0.0
			if n == "e5" || n == "a2" {
				up = 1
			} else {
				firing++
			}
			tg.Set(fmt.Sprintf(`probe_success{node=%q}`, n), up)
		}
	}
	prom := b.Start(t, promtest.Options{Interval: 500 * time.Millisecond, Rules: nodeDownRule,
		Targets: []promtest.StaticTarget{{Addr: tg.Addr(), Labels: map[string]string{"job": "blackbox"}}}})
	prom.WaitFor(t, `count(ALERTS{alertname="NodeDown",alertstate="firing"})`, 60*time.Second, func(v model.Vector) bool {
		return len(v) == 1 && int(v[0].Value) == firing
	})
	return prom
}

func addFleet(f *fixture) {
	for group, nodes := range drainFleet {
		for _, n := range nodes {
			f.addNode(n, group)
		}
	}
}

// deadProm is a Prometheus API client for an address nothing listens on.
func deadProm(t testing.TB) promv1.API {
	c, err := promapi.NewClient(promapi.Config{Address: "http://" + testsupport.FreeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

// switchProm lets a test bring Prometheus back under a running Actor.
type switchProm struct {
	promv1.API // only Query and Rules are used
	mu         sync.Mutex
	cur        promv1.API
}

func (s *switchProm) set(api promv1.API) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = api
}

func (s *switchProm) Query(ctx context.Context, q string, ts time.Time, opts ...promv1.Option) (model.Value, promv1.Warnings, promv1.Infos, error) {
	s.mu.Lock()
	api := s.cur
	s.mu.Unlock()
	return api.Query(ctx, q, ts, opts...)
}

func (s *switchProm) Rules(ctx context.Context, matches []string) (promv1.RulesResult, error) {
	s.mu.Lock()
	api := s.cur
	s.mu.Unlock()
	return api.Rules(ctx, matches)
}

func TestDrainGuards(t *testing.T) { promtest.Each(t, testDrainGuards) }

func testDrainGuards(t *testing.T, b promtest.Backend) {
	prom := startProber(t, b)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := &scores{}
		for _, nodes := range drainFleet {
			for _, n := range nodes {
				h.set(n, 1)
			}
		}
		f := newFixture(t, st, prom.API, h, actions.Config{MaxDrainedRatio: 0.5})
		addFleet(f)

		// At most half of eu's five nodes: two drains, the third refused
		// without a retry (200), its claim released for a later delivery.
		f.mustPost(http.StatusOK, drainAlert("firing", "e1", start))
		f.mustPost(http.StatusOK, drainAlert("firing", "e2", start))
		n := f.wantDrained("e1", true)
		if !strings.HasPrefix(n.DrainedBy, "alert:NodeDown/") {
			t.Errorf("drained_by %q does not name the alert", n.DrainedBy)
		}
		e3 := drainAlert("firing", "e3", start)
		if sum := f.mustPost(http.StatusOK, e3); sum.Results["refused"] != 1 {
			t.Errorf("third drain of eu: %+v, want refused", sum)
		}
		f.wantDrained("e3", false)
		f.wantReleased(e3)
		// Once e1 is back, the re-sent alert on e3 acts.
		f.mustPost(http.StatusOK, drainAlert("resolved", "e1", start))
		f.wantDrained("e1", false)
		f.mustPost(http.StatusOK, e3)
		f.wantDrained("e3", true)

		// The only node of a group is never drained.
		f.mustPost(http.StatusOK, drainAlert("firing", "u1", start))
		f.wantDrained("u1", false)

		// Prometheus does not confirm the alert (e5's probes succeed): no
		// drain, and no retry either.
		f.mustPost(http.StatusOK, drainAlert("firing", "e5", start))
		f.wantDrained("e5", false)

		// a2 is the other node of its group but scores 0: draining a1
		// would leave the group with no healthy node.
		h.set("a2", 0)
		a1 := drainAlert("firing", "a1", start)
		f.mustPost(http.StatusOK, a1)
		f.wantDrained("a1", false)
		f.wantReleased(a1)
		h.set("a2", 0.8)
		f.mustPost(http.StatusOK, a1)
		f.wantDrained("a1", true)

		f.wantMetric(actionsTotal, 4, "action", "drain_node", "result", "applied")
		f.wantMetric(actionsTotal, 4, "action", "drain_node", "result", "refused")
		f.wantMetric(actionsTotal, 1, "action", "undrain_node", "result", "applied")
		if ev := f.events("node", "u1", "drain_node.refused"); ev != 1 {
			t.Errorf("%d refusal events for u1, want 1", ev)
		}
	})
}

func TestUndrainOnlyWhatTheAlertDrained(t *testing.T) {
	prom := startProber(t, promtest.Prometheus)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, prom.API, nil, actions.Config{MaxDrainedRatio: 0.75})
		addFleet(f)

		// Drained by an admin before the alert: the alert changes nothing
		// and its resolution leaves the node drained.
		if _, _, err := st.SetDrained(ctx, "admin:root", "p1", true, "maintenance"); err != nil {
			t.Fatal(err)
		}
		f.mustPost(http.StatusOK, drainAlert("firing", "p1", start))
		f.mustPost(http.StatusOK, drainAlert("resolved", "p1", start))
		if n := f.wantDrained("p1", true); n.DrainedBy != "admin:root" {
			t.Errorf("p1 drained_by %q, want the admin", n.DrainedBy)
		}

		// Drained by the alert, then undrained and drained again by an
		// admin: the drain is the admin's now.
		f.mustPost(http.StatusOK, drainAlert("firing", "p2", start))
		f.wantDrained("p2", true)
		for _, drained := range []bool{false, true} {
			if _, _, err := st.SetDrained(ctx, "admin:root", "p2", drained, "by hand"); err != nil {
				t.Fatal(err)
			}
		}
		f.mustPost(http.StatusOK, drainAlert("resolved", "p2", start))
		f.wantDrained("p2", true)

		// The plain case comes back.
		f.mustPost(http.StatusOK, drainAlert("firing", "s1", start))
		f.wantDrained("s1", true)
		f.mustPost(http.StatusOK, drainAlert("resolved", "s1", start))
		f.wantDrained("s1", false)
		f.wantMetric(actionsTotal, 1, "action", "undrain_node", "result", "applied")
		f.wantMetric(actionsTotal, 1, "action", "undrain_node", "result", "noop")
	})
}

// Prometheus unreachable: 503 and no drain, and the failed checks must not
// use up the drain rate limit, or drains stay blocked after Prometheus is
// back.
func TestDrainPrometheusUnreachable(t *testing.T) {
	promtest.Each(t, testDrainPrometheusUnreachable)
}

func testDrainPrometheusUnreachable(t *testing.T, b promtest.Backend) {
	prom := startProber(t, b)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		sw := &switchProm{cur: deadProm(t)}
		f := newFixture(t, st, sw, nil, actions.Config{
			MaxDrainedRatio: 0.5, DrainRate: actions.Rate{N: 1, Window: time.Hour},
		})
		addFleet(f)
		s1 := drainAlert("firing", "s1", start)
		for range 3 {
			if code, sum := f.post(s1); code != http.StatusServiceUnavailable || sum.Results["refused"] != 1 {
				t.Fatalf("drain with Prometheus unreachable: %d %+v, want 503 refused", code, sum)
			}
		}
		f.wantDrained("s1", false)
		f.wantReleased(s1)

		sw.set(prom.API)
		f.mustPost(http.StatusOK, s1)
		f.wantDrained("s1", true)
	})
}

// A per-action limit that refuses must not eat the global budget: retried
// drains would otherwise block every suspension.
func TestRateLimitsAreIndependent(t *testing.T) {
	prom := startProber(t, promtest.Prometheus)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, prom.API, nil, actions.Config{
			MaxDrainedRatio: 1, Rate: actions.Rate{N: 2, Window: time.Hour}, DrainRate: actions.Rate{N: 1, Window: time.Hour},
		})
		addFleet(f)
		f.addUser("liam")
		f.mustPost(http.StatusOK, drainAlert("firing", "p1", start))
		for range 3 {
			f.mustPost(http.StatusServiceUnavailable, drainAlert("firing", "p2", start))
		}
		f.mustPost(http.StatusOK, suspendAlert("firing", "liam", start))
		f.wantStatus("liam", store.StatusDisabled)
		f.wantDrained("p2", false)
	})
}
