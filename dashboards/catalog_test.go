package dashboards

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v2"

	"github.com/boxfleet/boxfleet/controller/server"
	"github.com/boxfleet/boxfleet/exporter/agent"
	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/collector"
	"github.com/boxfleet/boxfleet/exporter/meter"
	"github.com/boxfleet/boxfleet/exporter/state"
)

// metric is what the lint knows about one series name.
type metric struct {
	source string
	// kind is "counter" (only meaningful inside rate() and friends),
	// "gauge" (meaningless inside them), or empty when not known.
	kind string
	// labels the series can carry, target labels included; nil when not
	// known (recording rules, ALERTS), which skips the label checks.
	labels map[string]bool
}

type catalog map[string]metric

const (
	counter = "counter"
	gauge   = "gauge"
)

func (c catalog) add(source, name, kind string, labels ...string) {
	var set map[string]bool
	if labels != nil {
		set = map[string]bool{}
		for _, l := range labels {
			set[l] = true
		}
	}
	c[name] = metric{source: source, kind: kind, labels: set}
}

// Labels Prometheus attaches at scrape time. Node exporters and probes get
// node from the controller's service discovery.
var (
	nodeTargetLabels       = []string{"instance", "job", "node"}
	probeTargetLabels      = []string{"instance", "job", "node", "inbound", "protocol"}
	controllerTargetLabels = []string{"instance", "job"}
)

func knownMetrics(t *testing.T) catalog {
	t.Helper()
	c := catalog{}
	addExporter(t, c)
	addAgent(t, c)
	addController(c)
	addRecordingRules(t, c)
	// Blackbox exporter, tcp_connect module.
	c.add("blackbox", "probe_success", gauge, probeTargetLabels...)
	c.add("blackbox", "probe_duration_seconds", gauge, probeTargetLabels...)
	c.add("prometheus", "up", gauge, probeTargetLabels...)
	c.add("prometheus", "ALERTS", "")
	return c
}

// addExporter takes the names, types and labels from the exporter's real
// collector, fed with a view where every optional series is present.
func addExporter(t *testing.T, c catalog) {
	t.Helper()
	view := meter.View{
		Mode: "clash_api", Up: true, Version: "1.14.1", Memory: 1 << 20,
		Connections: map[string]int{"tcp": 1, "udp": 1},
		Counters: state.Counters{
			Node:     attribution.Traffic{Up: 1, Down: 2},
			Users:    map[string]attribution.Traffic{"alice": {Up: 1, Down: 2}},
			Inbounds: map[string]attribution.Traffic{"vless-in": {Up: 1, Down: 2}},
		},
		Active:       map[string]attribution.Activity{"alice": {Connections: 1, SourceIPs: 1}},
		PollInterval: time.Second,
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.New(fixedView(view)))
	addGathered(t, c, "exporter", reg)
}

// addGathered adds what a node-side registry exposes, with the labels its
// series carry plus the target labels Prometheus adds.
func addGathered(t *testing.T, c catalog, source string, reg prometheus.Gatherer) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering the %s's metrics: %v", source, err)
	}
	for _, f := range families {
		labels := append([]string{}, nodeTargetLabels...)
		for _, m := range f.Metric {
			for _, l := range m.Label {
				labels = append(labels, l.GetName())
			}
		}
		addFamily(c, source, f.GetName(), f.GetType(), labels)
	}
}

type fixedView meter.View

func (v fixedView) View() meter.View { return meter.View(v) }

// addAgent takes the node agent's metrics from a real agent, which
// registers them when it is built.
func addAgent(t *testing.T, c catalog) {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	err := os.WriteFile(config, []byte(`{"inbounds": [{"type": "shadowsocks", "tag": "ss", "listen_port": 8388,
		"method": "2022-blake3-aes-128-gcm", "password": "AAAAAAAAAAAAAAAAAAAAAA==", "users": []}]}`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	_, err = agent.New(agent.Config{
		ControllerURL: "http://127.0.0.1:1", NodeName: "n", NodeAddress: "n.example",
		ConfigPath: config, PIDFile: filepath.Join(dir, "pid"), Registerer: reg,
	})
	if err != nil {
		t.Fatalf("building an agent to read its metrics: %v", err)
	}
	addGathered(t, c, "agent", reg)
}

// addController takes the controller's metrics from server.Metrics, which
// the controller's own test keeps equal to what it really exposes.
func addController(c catalog) {
	types := map[string]dto.MetricType{"gauge": dto.MetricType_GAUGE, "counter": dto.MetricType_COUNTER, "histogram": dto.MetricType_HISTOGRAM}
	for _, m := range server.Metrics {
		addFamily(c, "controller", m.Name, types[m.Type], append(append([]string{}, m.Labels...), controllerTargetLabels...))
	}
}

// addFamily adds the series names a family exposes: a histogram's buckets,
// sum and count are all counters.
func addFamily(c catalog, source, name string, typ dto.MetricType, labels []string) {
	switch typ {
	case dto.MetricType_HISTOGRAM:
		c.add(source, name+"_bucket", counter, append([]string{"le"}, labels...)...)
		c.add(source, name+"_sum", counter, labels...)
		c.add(source, name+"_count", counter, labels...)
	case dto.MetricType_SUMMARY:
		c.add(source, name, gauge, append([]string{"quantile"}, labels...)...)
		c.add(source, name+"_sum", counter, labels...)
		c.add(source, name+"_count", counter, labels...)
	case dto.MetricType_COUNTER:
		c.add(source, name, counter, labels...)
	default:
		c.add(source, name, gauge, labels...)
	}
}

// addRecordingRules reads the record names of alerts/*.yml at test time, so
// a dashboard may use a rule only once the rule exists.
func addRecordingRules(t *testing.T, c catalog) {
	t.Helper()
	var files []string
	for _, pattern := range []string{"../alerts/*.yml", "../alerts/*.yaml"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					c.add("rule "+filepath.Base(f), r.Record, "")
				}
			}
		}
	}
}
