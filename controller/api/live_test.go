package api_test

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/live"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// countingProxy stands between the controller and a real Prometheus and
// counts the requests per API path, so a test sees what the UI's polling
// costs Prometheus.
type countingProxy struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingProxy) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

func startCountingProxy(t *testing.T, target string) (*countingProxy, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingProxy{n: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // Prometheus is stopped on purpose at the end
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// TestLiveNumbersFromPrometheus runs a real Prometheus scraping a node's
// exporter series and checks the live fields of the users list, a user's
// live view, top users, nodes and series; that two requests within the
// refresh interval cost Prometheus one query; and that with Prometheus
// gone the pages still answer, marked not live.
func TestLiveNumbersFromPrometheus(t *testing.T) {
	tg := promtest.NewTarget(t)
	// One rule that acts and fires for a user nobody has, one that never
	// fires: the UI shows the first as firing, and the second's PromQL
	// when an alert of its name suspended a user.
	// The project's recording rules come first: devices are their
	// user:singbox_user_devices:count.
	recording, err := os.ReadFile("../../alerts/recording.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	rules := string(recording) + `
  - name: test
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: warning, boxfleet_action: suspend_user, user: nobody}
      - alert: UserOverQuota
        expr: vector(1) > 2
`
	prom := promtest.StartWithRules(t, 500*time.Millisecond, rules, promtest.StaticTarget{Addr: tg.Addr(), Labels: map[string]string{"node": "n1", "job": "singbox"}})
	tg.Set(`singbox_user_connections{user="alice"}`, 2)
	// alice's four addresses fall in three device buckets (say, one
	// device's IPv4 and IPv6 addresses): three devices, not four.
	tg.Set(`singbox_user_source_ips{user="alice"}`, 4)
	for _, b := range []string{"7", "99", "1024"} {
		tg.Set(`singbox_user_source_ip_bucket{user="alice",bucket="`+b+`"}`, 1)
	}
	tg.Set(`singbox_user_connections{user="bob"}`, 0)
	tg.Set(`singbox_user_source_ips{user="bob"}`, 0)
	tg.Set(`singbox_connections{network="tcp"}`, 2)
	tg.Set(`singbox_up`, 1)
	tg.Set(`singbox_config_revision`, 5)
	ctx := t.Context()
	go func() {
		// alice moves 1,000 B/s up and 4,000 B/s down, the node as much.
		for ctx.Err() == nil {
			tg.Add(`singbox_user_traffic_bytes_total{user="alice",direction="upload"}`, 100)
			tg.Add(`singbox_user_traffic_bytes_total{user="alice",direction="download"}`, 400)
			tg.Add(`singbox_traffic_bytes_total{direction="upload"}`, 100)
			tg.Add(`singbox_traffic_bytes_total{direction="download"}`, 400)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	prom.WaitFor(t, `sum(rate(singbox_user_traffic_bytes_total[1m]))`, time.Minute, func(v model.Vector) bool { return len(v) == 1 && v[0].Value > 0 })
	prom.WaitFor(t, `user:singbox_user_devices:count{user="alice"}`, time.Minute, func(v model.Vector) bool { return len(v) == 1 })

	counter, proxyURL := startCountingProxy(t, prom.URL)
	c, err := promapi.NewClient(promapi.Config{Address: proxyURL})
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 3 * time.Second
	cache := live.New(promv1.NewAPI(c), ttl)
	st := storetest.SQLite(t)
	e := newEnvWith(t, st, func(o *api.Options) {
		o.Live = cache
		quiet := logrus.New()
		quiet.SetOutput(io.Discard)
		o.Alerts = actions.New(st, nil, nil, quiet, actions.Config{Rate: actions.Rate{N: 10, Window: time.Minute},
			SuspendRate: actions.Rate{N: 10, Window: time.Minute}, DrainRate: actions.Rate{N: 10, Window: time.Minute}}, prometheus.NewRegistry())
	})
	e.createUser("alice", map[string]any{"device_limit": 2})
	e.createUser("bob", map[string]any{"device_limit": 2})
	e.createNode("n1", nil)

	var l listed
	e.admin("GET", "/api/v1/users", nil, http.StatusOK, &l)
	e.admin("GET", "/api/v1/users?sort=-name", nil, http.StatusOK, nil)
	if n := counter.count("/api/v1/query"); n != 1 {
		t.Errorf("two users pages within the refresh interval cost Prometheus %d queries, want 1", n)
	}
	alice, bob := l.Users[0], l.Users[1]
	// The rates are young (a rate over 1m of a few seconds' samples), so
	// only their sign and ratio are sure.
	if !l.Live || !alice.Online || alice.Devices == nil || *alice.Devices != 3 || alice.RateUp <= 0 ||
		alice.RateDown < 3*alice.RateUp || bob.Online || bob.Devices == nil || *bob.Devices != 0 || bob.RateUp != 0 {
		t.Errorf("live fields: alice %+v devices %v, bob %+v", alice, alice.Devices, bob)
	}
	l = listed{}
	e.admin("GET", "/api/v1/users?filter=overdevices", nil, http.StatusOK, &l)
	if names := l.names(); len(names) != 1 || names[0] != "alice" || l.Total != 1 {
		t.Errorf("overdevices: %v", names)
	}

	var top struct {
		Users []struct {
			Name   string  `json:"name"`
			RateUp float64 `json:"rate_up"`
		} `json:"users"`
	}
	e.admin("GET", "/api/v1/stats/top-users", nil, http.StatusOK, &top)
	if len(top.Users) != 1 || top.Users[0].Name != "alice" {
		t.Errorf("top users: %+v", top.Users)
	}
	if n := counter.count("/api/v1/query"); n != 1 {
		t.Errorf("the users list, the overdevices filter and top users cost %d queries, want the one they share", n)
	}

	var ul struct {
		Live      bool     `json:"live"`
		Online    *bool    `json:"online"`
		SourceIPs *float64 `json:"source_ips"`
		Nodes     []struct {
			Node      string  `json:"node"`
			RateDown  float64 `json:"rate_down"`
			SourceIPs float64 `json:"source_ips"`
		} `json:"nodes"`
	}
	e.admin("GET", "/api/v1/users/alice/live", nil, http.StatusOK, &ul)
	if !ul.Live || ul.Online == nil || !*ul.Online || ul.SourceIPs == nil || *ul.SourceIPs != 4 || len(ul.Nodes) != 1 || ul.Nodes[0].Node != "n1" || ul.Nodes[0].RateDown <= 0 {
		t.Errorf("alice live: %+v", ul)
	}

	var nodes struct {
		Nodes []struct {
			Name            string   `json:"name"`
			Live            bool     `json:"live"`
			RateDown        *float64 `json:"rate_down"`
			Connections     *float64 `json:"connections"`
			OnlineUsers     *float64 `json:"online_users"`
			RevisionApplied *float64 `json:"revision_applied"`
			Health          struct {
				Parts map[string]*float64 `json:"parts"`
			} `json:"health"`
		} `json:"nodes"`
	}
	e.admin("GET", "/api/v1/nodes", nil, http.StatusOK, &nodes)
	n := nodes.Nodes[0]
	if !n.Live || n.RateDown == nil || *n.RateDown <= 0 || n.Connections == nil || *n.Connections != 2 || n.OnlineUsers == nil || *n.OnlineUsers != 1 ||
		n.RevisionApplied == nil || *n.RevisionApplied != 5 || n.Health.Parts["singbox_up"] == nil || *n.Health.Parts["singbox_up"] != 1 {
		t.Errorf("node view: %+v", n)
	}

	var series struct {
		Live   bool `json:"live"`
		Series []struct {
			Labels map[string]string `json:"labels"`
			Points [][3]float64      `json:"points"`
		} `json:"series"`
	}
	for range 2 {
		e.admin("GET", "/api/v1/stats/series?metric=user_rate&user=alice&range=1h", nil, http.StatusOK, &series)
	}
	if n := counter.count("/api/v1/query_range"); n != 1 {
		t.Errorf("two series requests cost %d range queries, want 1", n)
	}
	if !series.Live || len(series.Series) != 1 || series.Series[0].Labels["user"] != "alice" || len(series.Series[0].Points) == 0 {
		t.Fatalf("series: %+v", series)
	}
	last := series.Series[0].Points[len(series.Series[0].Points)-1]
	if last[1] <= 0 || last[2] <= last[1] {
		t.Errorf("last point %v: want up > 0 and down > up", last)
	}

	// The firing rule, as the overview and the alerts page show it.
	prom.WaitFor(t, `ALERTS{alertname="AlwaysFiring",alertstate="firing"}`, time.Minute, func(v model.Vector) bool { return len(v) == 1 })
	time.Sleep(ttl) // past the cached answer from before it fired
	var acting struct {
		Live   bool `json:"live"`
		Alerts []struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
			Acts   bool              `json:"acts"`
		} `json:"alerts"`
	}
	e.admin("GET", "/api/v1/alerts", nil, http.StatusOK, &acting)
	if !acting.Live || len(acting.Alerts) != 1 || acting.Alerts[0].Name != "AlwaysFiring" || acting.Alerts[0].Labels["user"] != "nobody" || !acting.Alerts[0].Acts {
		t.Errorf("acting alerts: %+v", acting)
	}
	var ov struct {
		FiringAlerts []struct {
			Name     string `json:"name"`
			Severity string `json:"severity"`
		} `json:"firing_alerts"`
		Online *int `json:"online"`
	}
	e.admin("GET", "/api/v1/stats/overview", nil, http.StatusOK, &ov)
	if len(ov.FiringAlerts) != 1 || ov.FiringAlerts[0].Severity != "warning" || ov.Online == nil || *ov.Online != 1 {
		t.Errorf("overview: %+v", ov)
	}
	// A reseller sees its own users' numbers only: its user is offline,
	// alice's traffic and the fleet's alert are not its.
	cs := newCast(t, e)
	rtok := cs.tokens["reseller"]
	if r := e.call("POST", "/api/v1/users", rtok, map[string]any{"name": "rs-user"}); r.code != http.StatusCreated {
		t.Fatal(r.code)
	}
	var rov struct {
		Live         bool     `json:"live"`
		Online       *int     `json:"online"`
		RateDown     *float64 `json:"rate_down"`
		FiringAlerts []any    `json:"firing_alerts"`
		Unattributed []any    `json:"nodes_unattributed"`
	}
	r := e.call("GET", "/api/v1/stats/overview", rtok, nil)
	if err := json.Unmarshal(r.body, &rov); err != nil || r.code != http.StatusOK {
		t.Fatalf("reseller overview: %d %s", r.code, r.body)
	}
	if !rov.Live || rov.Online == nil || *rov.Online != 0 || rov.RateDown == nil || *rov.RateDown != 0 || len(rov.FiringAlerts) != 0 || len(rov.Unattributed) != 0 {
		t.Errorf("reseller overview: %s", r.body)
	}
	var rtop struct {
		Users []any `json:"users"`
	}
	r = e.call("GET", "/api/v1/stats/top-users", rtok, nil)
	if json.Unmarshal(r.body, &rtop); len(rtop.Users) != 0 {
		t.Errorf("reseller top users: %s", r.body)
	}

	// An alert of a loaded rule suspends bob: why quotes the rule.
	e.admin("POST", "/api/v1/alerts", `{"receiver":"boxfleet","status":"firing","alerts":[{"status":"firing",
	  "labels":{"alertname":"UserOverQuota","boxfleet_action":"suspend_user","user":"bob"},"annotations":{},
	  "startsAt":"2026-01-02T03:04:05Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"f00d"}],
	  "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"","version":"4","groupKey":"k","truncatedAlerts":0}`, http.StatusOK, nil)
	var w whyAnswer
	e.admin("GET", "/api/v1/users/bob", nil, http.StatusOK, &w)
	if w.Why == nil || w.Why.Kind != "alert" || w.Why.Rule != "vector(1) > 2" {
		t.Errorf("why with Prometheus: %s", r.body)
	}

	// After the refresh interval the next page asks again.
	before := counter.count("/api/v1/query")
	time.Sleep(ttl + 100*time.Millisecond)
	e.admin("GET", "/api/v1/users", nil, http.StatusOK, nil)
	if n := counter.count("/api/v1/query"); n != before+1 {
		t.Errorf("after the refresh interval: %d queries, want %d", n, before+1)
	}

	// Prometheus gone: the pages answer from the store, marked not live.
	prom.Stop()
	time.Sleep(ttl + 100*time.Millisecond)
	l = listed{}
	e.admin("GET", "/api/v1/users", nil, http.StatusOK, &l)
	if l.Live || l.Users[0].Devices != nil || l.Users[0].Online || len(l.Users) != 3 {
		t.Errorf("without Prometheus: live %v, %+v", l.Live, l.Users[0])
	}
	var o struct {
		Live          bool           `json:"live"`
		RateUp        *float64       `json:"rate_up"`
		UsersByStatus map[string]int `json:"users_by_status"`
	}
	e.admin("GET", "/api/v1/stats/overview", nil, http.StatusOK, &o)
	if o.Live || o.RateUp != nil || o.UsersByStatus["active"] != 2 || o.UsersByStatus["disabled"] != 1 {
		t.Errorf("overview without Prometheus: %+v", o)
	}
}
