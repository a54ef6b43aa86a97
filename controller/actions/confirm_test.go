package actions_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// notified is one alert as the rule evaluator pushes it to Alertmanager
// (POST /api/v2/alerts, which Prometheus and vmalert both use).
type notified struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
}

// fakeAlertmanager passes on the first firing notification of each node.
func fakeAlertmanager(t *testing.T) (string, <-chan notified) {
	ch := make(chan notified, 16)
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var alerts []notified
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" || json.NewDecoder(r.Body).Decode(&alerts) != nil {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range alerts {
			if n := a.Labels["node"]; a.EndsAt.After(time.Now()) && !seen[n] {
				seen[n] = true
				ch <- a
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

// An Alertmanager that delivers the webhook the moment the evaluator
// notifies (group_wait 0, or a group already notified) must still get its
// drain: the check may not depend on ALERTS having become searchable yet,
// which on VictoriaMetrics takes vmalert's remote-write flush (5s) and
// then up to 2s more.
func TestDrainConfirmedAsSoonAsNotified(t *testing.T) {
	promtest.Each(t, testDrainConfirmedAsSoonAsNotified)
}

func testDrainConfirmedAsSoonAsNotified(t *testing.T, b promtest.Backend) {
	amURL, alerts := fakeAlertmanager(t)
	tg := promtest.NewTarget(t)
	tg.Set(`probe_success{node="e1"}`, 1)
	tg.Set(`probe_success{node="e2"}`, 1)
	prom := b.Start(t, promtest.Options{Interval: 500 * time.Millisecond, Rules: nodeDownRule, Alertmanager: amURL,
		Targets: []promtest.StaticTarget{{Addr: tg.Addr(), Labels: map[string]string{"job": "blackbox"}}}})
	prom.WaitFor(t, `probe_success{node="e1"}`, 30*time.Second, func(v model.Vector) bool { return len(v) == 1 })

	st := storetest.SQLite(t)
	f := newFixture(t, st, prom.API, nil, actions.Config{MaxDrainedRatio: 0.5})
	f.addNode("e1", "eu")
	f.addNode("e2", "eu")
	tg.Set(`probe_success{node="e1"}`, 0)
	var a notified
	select {
	case a = <-alerts:
	case <-time.After(60 * time.Second):
		t.Fatal("NodeDown was never notified")
	}
	if a.Labels["node"] != "e1" || a.Labels["alertname"] != "NodeDown" {
		t.Fatalf("notified %v, want NodeDown on e1", a.Labels)
	}
	f.mustPost(http.StatusOK, drainAlert("firing", "e1", a.StartsAt))
	f.wantDrained("e1", true)
}
