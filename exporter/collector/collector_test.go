package collector

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/meter"
	"github.com/boxfleet/boxfleet/exporter/state"
)

type fixed meter.View

func (f fixed) View() meter.View { return meter.View(f) }

const hostile = "bob \"the\" \\builder\\\n☃"

func sampleView() meter.View {
	return meter.View{
		Mode: "clash_api", Up: true, Version: "1.14.1", Memory: 52428800,
		Connections: map[string]int{"tcp": 3, "udp": 1},
		Counters: state.Counters{
			Node:         attribution.Traffic{Up: 1500, Down: 90000},
			Users:        map[string]attribution.Traffic{"alice": {Up: 1000, Down: 60000}, hostile: {Up: 400, Down: 29000}},
			Inbounds:     map[string]attribution.Traffic{"vless-in": {Up: 1100, Down: 61000}, "ss-in": {Up: 400, Down: 29000}},
			Unattributed: attribution.Traffic{Up: 100, Down: 1000},
			Estimated:    attribution.Traffic{Up: 10, Down: 20},
		},
		Active: map[string]attribution.Activity{"alice": {Connections: 3, SourceIPs: 2}, hostile: {Connections: 1, SourceIPs: 1}},
		Polls:  10, PollErrors: 1, PollDuration: 2 * time.Millisecond, PollInterval: time.Second,
		StateWrites: 4, LogStreamUp: true, LogLines: 42,
		LastSuccess: time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC),
	}
}

// The exposition is a contract: alerts, dashboards and the controller read
// these names and labels.
func TestExposition(t *testing.T) {
	want := `
# HELP singbox_up Whether the last poll of sing-box's API succeeded.
# TYPE singbox_up gauge
singbox_up 1
# HELP singbox_info sing-box's version, as a label.
# TYPE singbox_info gauge
singbox_info{version="1.14.1"} 1
# HELP singbox_traffic_bytes_total Bytes sing-box moved, exact node totals.
# TYPE singbox_traffic_bytes_total counter
singbox_traffic_bytes_total{direction="download"} 90000
singbox_traffic_bytes_total{direction="upload"} 1500
# HELP singbox_user_traffic_bytes_total Bytes moved per user.
# TYPE singbox_user_traffic_bytes_total counter
singbox_user_traffic_bytes_total{direction="download",user="alice"} 60000
singbox_user_traffic_bytes_total{direction="upload",user="alice"} 1000
singbox_user_traffic_bytes_total{direction="download",user="bob \"the\" \\builder\\\n☃"} 29000
singbox_user_traffic_bytes_total{direction="upload",user="bob \"the\" \\builder\\\n☃"} 400
# HELP singbox_user_connections Open connections per user.
# TYPE singbox_user_connections gauge
singbox_user_connections{user="alice"} 3
singbox_user_connections{user="bob \"the\" \\builder\\\n☃"} 1
# HELP singbox_user_source_ips Distinct client IPs per user with a connection open now.
# TYPE singbox_user_source_ips gauge
singbox_user_source_ips{user="alice"} 2
singbox_user_source_ips{user="bob \"the\" \\builder\\\n☃"} 1
# HELP singbox_unattributed_traffic_bytes_total Node total minus the per-user sum: bytes no user could be found for.
# TYPE singbox_unattributed_traffic_bytes_total counter
singbox_unattributed_traffic_bytes_total{direction="download"} 1000
singbox_unattributed_traffic_bytes_total{direction="upload"} 100
# HELP singbox_connections Open connections by network.
# TYPE singbox_connections gauge
singbox_connections{network="tcp"} 3
singbox_connections{network="udp"} 1
# HELP singbox_memory_bytes Memory in use by sing-box, as its API reports it.
# TYPE singbox_memory_bytes gauge
singbox_memory_bytes 5.24288e+07
# HELP singbox_inbound_traffic_bytes_total Bytes moved per inbound.
# TYPE singbox_inbound_traffic_bytes_total counter
singbox_inbound_traffic_bytes_total{direction="download",inbound="ss-in"} 29000
singbox_inbound_traffic_bytes_total{direction="download",inbound="vless-in"} 61000
singbox_inbound_traffic_bytes_total{direction="upload",inbound="ss-in"} 400
singbox_inbound_traffic_bytes_total{direction="upload",inbound="vless-in"} 1100
`
	c := New(fixed(sampleView()))
	names := []string{"singbox_up", "singbox_info", "singbox_traffic_bytes_total", "singbox_user_traffic_bytes_total",
		"singbox_user_connections", "singbox_user_source_ips", "singbox_unattributed_traffic_bytes_total",
		"singbox_connections", "singbox_memory_bytes", "singbox_inbound_traffic_bytes_total"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// sing-box down: only what is still true is exposed; counters stay.
func TestDownKeepsCounters(t *testing.T) {
	v := sampleView()
	v.Up = false
	c := New(fixed(v))
	if got := testutil.ToFloat64(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		for m := range collectNamed(c, "singbox_up") {
			ch <- m
		}
	})); got != 0 {
		t.Fatalf("singbox_up = %v, want 0", got)
	}
	n := testutil.CollectAndCount(c, "singbox_user_connections", "singbox_memory_bytes", "singbox_connections")
	if n != 0 {
		t.Fatalf("%d live gauges exposed while sing-box is down, want 0", n)
	}
	if n := testutil.CollectAndCount(c, "singbox_user_traffic_bytes_total"); n != 4 {
		t.Fatalf("%d user counters while down, want 4 (counters must not vanish)", n)
	}
}

// The last successful poll is a Unix time, so that alerts can use
// time() - it; before the first success there is no such time to expose.
func TestLastPollSuccess(t *testing.T) {
	want := `
# HELP singbox_exporter_last_poll_success_timestamp_seconds Unix time of the last successful poll of sing-box; bytes moved since are not counted yet.
# TYPE singbox_exporter_last_poll_success_timestamp_seconds gauge
singbox_exporter_last_poll_success_timestamp_seconds 1.79534160025e+09
`
	const name = "singbox_exporter_last_poll_success_timestamp_seconds"
	if err := testutil.CollectAndCompare(New(fixed(sampleView())), strings.NewReader(want), name); err != nil {
		t.Fatal(err)
	}
	v := sampleView()
	v.LastSuccess = time.Time{}
	if n := testutil.CollectAndCount(New(fixed(v)), name); n != 0 {
		t.Fatalf("%d samples before the first successful poll, want none", n)
	}
}

func collectNamed(c prometheus.Collector, name string) <-chan prometheus.Metric {
	all := make(chan prometheus.Metric)
	out := make(chan prometheus.Metric, 128)
	go func() { c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"`+name+`"`) {
			out <- m
		}
	}
	close(out)
	return out
}

func TestLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(New(fixed(sampleView())))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// Hostile user names must come out as a parseable exposition, in both text
// formats, with the names intact.
func TestHostileNamesParse(t *testing.T) {
	v := sampleView()
	names := []string{"a\"b", "c\\d", "e\nf", "g}h", "i=\"j\"", "😀", "\x00nul", "k l", strings.Repeat("x", 1000)}
	for _, n := range names {
		v.Counters.Users[n] = attribution.Traffic{Up: 1, Down: 2}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(fixed(v)))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	seen := map[string]bool{}
	for _, m := range mf["singbox_user_traffic_bytes_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "user" {
				seen[l.GetValue()] = true
			}
		}
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("user %q lost in the exposition", n)
		}
	}
}

// BenchmarkScrape5kUsers is one full /metrics answer for a node with 5,000
// users, each with open connections.
func BenchmarkScrape5kUsers(b *testing.B) {
	v := sampleView()
	for i := range 5000 {
		u := fmt.Sprintf("user%04d", i)
		v.Counters.Users[u] = attribution.Traffic{Up: uint64(i) << 20, Down: uint64(i) << 24}
		v.Active[u] = attribution.Activity{Connections: 2, SourceIPs: 1}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(fixed(v)))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
