package health_test

import (
	"context"
	"io"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/health"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// node is what Prometheus sees of one node: its exporter and the blackbox
// exporter's probes of it, each a target with the node label service
// discovery gives it.
type node struct {
	exporter, probe *promtest.Target
}

func (n node) set(up, conns, success, duration float64) {
	n.exporter.Set("singbox_up", up)
	n.exporter.Set(`singbox_connections{network="tcp"}`, conns*3/4)
	n.exporter.Set(`singbox_connections{network="udp"}`, conns/4)
	n.probe.Set("probe_success", success)
	n.probe.Set("probe_duration_seconds", duration)
}

// startFleet runs the backend b scraping every node.
func startFleet(t *testing.T, b promtest.Backend, names ...string) (*promtest.Server, map[string]node) {
	fleet := map[string]node{}
	var targets []promtest.StaticTarget
	for _, name := range names {
		n := node{exporter: promtest.NewTarget(t), probe: promtest.NewTarget(t)}
		fleet[name] = n
		targets = append(targets,
			promtest.StaticTarget{Addr: n.exporter.Addr(), Labels: map[string]string{"job": "singbox", "node": name}},
			promtest.StaticTarget{Addr: n.probe.Addr(), Labels: map[string]string{"job": "blackbox", "node": name}})
	}
	return b.Start(t, promtest.Options{Interval: 500 * time.Millisecond, Targets: targets}), fleet
}

func newRanker(t *testing.T, prom *promtest.Server) (*health.Ranker, *prometheus.Registry) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := prometheus.NewRegistry()
	return health.New(prom.API, "", log, reg), reg
}

// waitOrder refreshes until Sort gives want, since Prometheus takes a few
// scrapes (and, for probes, part of the averaging window) to see a change.
func waitOrder(t *testing.T, r *health.Ranker, want ...string) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if err := r.Refresh(context.Background()); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		got = slices.Sorted(slices.Values(want))
		r.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("order %v, want %v", got, want)
}

// waitScores refreshes until every node has its expected score.
func waitScores(t *testing.T, r *health.Ranker, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := r.Refresh(context.Background()); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		ok := true
		for n, w := range want {
			if got, has := r.Score(n); !has || math.Abs(got-w) > 1e-6 {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for n, w := range want {
				wantScore(t, r, n, w)
			}
			t.FailNow()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func wantScore(t *testing.T, r *health.Ranker, node string, want float64) {
	t.Helper()
	got, ok := r.Score(node)
	if !ok || math.Abs(got-want) > 1e-6 {
		t.Errorf("score of %s = %v (%v), want %.6f", node, got, ok, want)
	}
}

// The default query must mean the same on every backend the controller may
// be pointed at: staleness when an exporter stops answering, averages over
// a window, the "or" fallbacks.
func TestDefaultQueryRanksAndDegrades(t *testing.T) {
	promtest.Each(t, testDefaultQueryRanksAndDegrades)
}

func testDefaultQueryRanksAndDegrades(t *testing.T, b promtest.Backend) {
	prom, fleet := startFleet(t, b, "n1", "n2", "n3")
	// Score: probe success / (1 + latency/0.5s) x sing-box up x
	// 1/(1 + connections/10,000).
	fleet["n1"].set(1, 100, 1, 0.05) // 1/1.1 x 1/1.01
	fleet["n2"].set(1, 1000, 1, 0.2) // 1/1.4 x 1/1.1
	fleet["n3"].set(1, 0, 1, 0.1)    // 1/1.2
	r, reg := newRanker(t, prom)
	// Until Prometheus has scraped every target, a node can be missing or
	// scored from part of its inputs, and the order can look right by
	// chance: wait for the exact scores first.
	waitScores(t, r, map[string]float64{"n1": 1 / 1.1 / 1.01, "n2": 1 / 1.4 / 1.1, "n3": 1 / 1.2})
	waitOrder(t, r, "n1", "n3", "n2")
	wantScore(t, r, "n1", 1/1.1/1.01)
	wantScore(t, r, "n2", 1/1.4/1.1)
	wantScore(t, r, "n3", 1/1.2)

	// Exported for alert rules and dashboards, one series per node.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "boxfleet_node_health_score" {
			for _, m := range mf.GetMetric() {
				exported[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if s, _ := r.Score(n); exported[n] != s || len(exported) != 3 {
			t.Errorf("boxfleet_node_health_score: %v, want the ranker's scores", exported)
			break
		}
	}

	// sing-box down on n1 while its exporter answers: score 0, ranked
	// after nodes with no score at all (n0 is not in Prometheus).
	fleet["n1"].exporter.Set("singbox_up", 0)
	waitOrder(t, r, "n3", "n2", "n1")
	wantScore(t, r, "n1", 0)
	names := []string{"n1", "n0", "n2", "n3"}
	r.Sort(names)
	if !slices.Equal(names, []string{"n3", "n2", "n0", "n1"}) {
		t.Errorf("with an unscored node: %v, want n3 n2 n0 n1", names)
	}
	fleet["n1"].exporter.Set("singbox_up", 1)
	waitOrder(t, r, "n1", "n3", "n2")

	// n3's exporter unreachable while its probes still pass: half marks.
	fleet["n3"].exporter.SetDown(true)
	waitOrder(t, r, "n1", "n2", "n3")
	wantScore(t, r, "n3", 0.5/1.2)
	fleet["n3"].exporter.SetDown(false)
	waitOrder(t, r, "n1", "n3", "n2")

	// n1 stops accepting connections: its averaged probe success falls
	// until it ranks last.
	fleet["n1"].probe.Set("probe_success", 0)
	waitOrder(t, r, "n3", "n2", "n1")
}

func TestPrometheusDownKeepsLastScores(t *testing.T) {
	promtest.Each(t, testPrometheusDownKeepsLastScores)
}

func testPrometheusDownKeepsLastScores(t *testing.T, b promtest.Backend) {
	prom, fleet := startFleet(t, b, "a", "b")
	fleet["a"].set(1, 0, 1, 0.4)
	fleet["b"].set(1, 0, 1, 0.1)
	r, _ := newRanker(t, prom)
	waitOrder(t, r, "b", "a")
	before, _ := r.Score("b")

	prom.Stop()
	if err := r.Refresh(context.Background()); err == nil {
		t.Fatal("refresh with Prometheus stopped succeeded")
	}
	names := []string{"a", "b"}
	r.Sort(names)
	if !slices.Equal(names, []string{"b", "a"}) {
		t.Errorf("order after a failed refresh: %v, want b a", names)
	}
	if s, ok := r.Score("b"); !ok || s != before {
		t.Errorf("score of b after a failed refresh: %v %v, want %v", s, ok, before)
	}

	// Run keeps going through failures and picks Prometheus up again.
	fleet["b"].exporter.Set("singbox_up", 0)
	prom.Restart(t)
	ctx := t.Context()
	go r.Run(ctx, 200*time.Millisecond)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		names = []string{"b", "a"}
		r.Sort(names)
		if names[0] == "a" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("ranking never followed Prometheus after its restart: %v", names)
}
