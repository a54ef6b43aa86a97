package collector

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/internal/promtest"
)

// TestDevicesCountedAcrossNodes scrapes three exporters' collectors with a
// real Prometheus evaluating the shipped recording rules: alice's one
// address on nodes a and b is one device, bob's two addresses (one per
// node) are two, and carol, with one address on keyed node a and two on
// node c whose exporter has no key, is three. The per-node sum, which the
// alert used before, says two for alice.
func TestDevicesCountedAcrossNodes(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "..", "alerts", "recording.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// promtest names its scrape job "test".
	text := strings.ReplaceAll(string(rules), `job="singbox"`, `job="test"`)

	keyed := Options{DeviceKey: fleetKey}
	bobA, bobB := "203.0.113.1", "203.0.113.2"
	h := newDeviceHasher(fleetKey)
	if b := h.buckets(map[string][]string{"bob": {bobA, bobB}}); len(b["bob"]) != 2 {
		t.Fatalf("bob's two test addresses collide under the test key; pick others")
	}
	nodes := map[string]prometheus.Collector{
		"a": NewWithOptions(activeView(map[string][]string{"alice": {"198.51.100.7"}, "bob": {bobA}, "carol": {"192.0.2.10"}}), keyed),
		"b": NewWithOptions(activeView(map[string][]string{"alice": {"198.51.100.7"}, "bob": {bobB}}), keyed),
		"c": New(activeView(map[string][]string{"carol": {"192.0.2.20", "192.0.2.21"}})),
	}
	var targets []promtest.StaticTarget
	for name, c := range nodes {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		targets = append(targets, promtest.StaticTarget{Addr: strings.TrimPrefix(srv.URL, "http://"), Labels: map[string]string{"node": name}})
	}
	prom := promtest.StartWithRules(t, 200*time.Millisecond, text, targets...)

	want := map[string]float64{"alice": 1, "bob": 2, "carol": 3}
	var last model.Vector
	prom.WaitFor(t, `user:singbox_user_devices:count{user=~"alice|bob|carol"}`, 30*time.Second, func(v model.Vector) bool {
		last = v
		if len(v) != len(want) {
			return false
		}
		for _, s := range v {
			if float64(s.Value) != want[string(s.Metric["user"])] {
				return false
			}
		}
		return true
	})
	t.Logf("devices: %v", last)
	v, err := prom.Query(`user:singbox_user_source_ips:sum{user="alice"}`)
	if err != nil || len(v) != 1 || v[0].Value != 2 {
		t.Errorf("per-node sum for alice: %v %v, want 2 (the over-count the device count fixes)", v, err)
	}
}
