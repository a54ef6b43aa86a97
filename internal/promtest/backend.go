package promtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// Backend is a metrics server the controller can be pointed at with
// --prometheus.url: both answer the Prometheus query API, but each with its
// own semantics (lookback, staleness, when fresh samples become visible,
// who evaluates rules and writes ALERTS), so code that reads one is tested
// against each.
type Backend string

const (
	// Prometheus scrapes the targets and evaluates the rules itself.
	Prometheus Backend = "prometheus"
	// VictoriaMetrics is the single-node server scraping the targets with
	// its built-in scraper (-promscrape.config), with vmalert evaluating
	// the rules against it, writing ALERTS back by remote write and
	// answering /api/v1/alerts and /api/v1/rules through the server's
	// -vmalert.proxyURL: the same roles vmselect, vminsert and vmalert
	// play in a cluster.
	VictoriaMetrics Backend = "victoriametrics"
)

// Backends are the backends Each runs a test against.
func Backends() []Backend { return []Backend{Prometheus, VictoriaMetrics} }

// Each runs fn as one subtest per backend, named after it.
func Each(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(string(b), func(t *testing.T) { fn(t, b) })
	}
}

// Options describe what a backend scrapes and evaluates.
type Options struct {
	// Interval is the scrape and rule evaluation interval.
	Interval time.Duration
	// Rules is a rule file's YAML text ("" for none).
	Rules string
	// Alertmanager is the base URL alerts are sent to ("" for none).
	Alertmanager string
	Targets      []StaticTarget
}

// Start runs the backend; it is stopped when the test ends.
func (b Backend) Start(t testing.TB, o Options) *Server {
	t.Helper()
	dir := t.TempDir()
	addr := testsupport.FreeAddr(t)
	s := &Server{URL: "http://" + addr, Backend: b}
	switch b {
	case Prometheus:
		s.procs = prometheusProcs(t, dir, addr, o)
		if o.Rules != "" {
			s.rules = filepath.Join(dir, "rules.yml")
		}
	case VictoriaMetrics:
		s.procs = victoriaMetricsProcs(t, dir, addr, o)
	default:
		t.Fatalf("promtest: unknown backend %q", b)
	}
	c, err := promapi.NewClient(promapi.Config{Address: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	s.API = promv1.NewAPI(c)
	t.Cleanup(s.Stop)
	s.start(t)
	return s
}

// scrapeConfig is the global section and the scrape_configs both backends
// read; VictoriaMetrics refuses fields it does not know (rule_files,
// evaluation_interval), so those are Prometheus's alone.
func scrapeConfig(o Options, extra string) string {
	var sc strings.Builder
	fmt.Fprintf(&sc, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n%s",
		model.Duration(o.Interval), model.Duration(o.Interval), extra)
	sc.WriteString("scrape_configs:\n  - job_name: test\n    static_configs:\n")
	for _, tg := range o.Targets {
		fmt.Fprintf(&sc, "      - targets: [%q]\n        labels: {", tg.Addr)
		first := true
		for k, v := range tg.Labels {
			if !first {
				sc.WriteString(", ")
			}
			first = false
			fmt.Fprintf(&sc, "%s: %q", k, v)
		}
		sc.WriteString("}\n")
	}
	return sc.String()
}

func writeFile(t testing.TB, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func prometheusProcs(t testing.TB, dir, addr string, o Options) []*proc {
	extra := fmt.Sprintf("  evaluation_interval: %s\n", model.Duration(o.Interval))
	if o.Rules != "" {
		extra += fmt.Sprintf("rule_files: [%q]\n", writeFile(t, filepath.Join(dir, "rules.yml"), o.Rules))
	}
	if o.Alertmanager != "" {
		extra += fmt.Sprintf("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [%q]\n",
			strings.TrimPrefix(o.Alertmanager, "http://"))
	}
	cfg := writeFile(t, filepath.Join(dir, "prometheus.yml"), scrapeConfig(o, extra))
	return []*proc{{
		tool: "prometheus",
		args: []string{
			"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr, "--log.level=warn",
		},
		ready: "http://" + addr + "/-/ready",
	}}
}

// victoriaMetricsProcs runs victoria-metrics and, for rules, vmalert.
//
// Both keep their defaults but for the two delays that let a pipeline's
// late samples arrive before anyone reads "now": the server answers a
// query at now as of -search.latencyOffset ago, and vmalert evaluates
// -rule.evalDelay in the past to match (30s each by default). Here both
// are the time the server takes to make a scraped sample searchable (up to
// 2s) plus one interval, shortened like every interval in these tests.
// With a delay shorter than that, vmalert would evaluate before the
// scrape it needs is visible and see nothing.
//
// vmalert runs with -disableAlertgroupLabel, as deploy/vm-cluster does, so
// that its alerts carry the labels Prometheus gives them, and
// Alertmanager, the controller and the tests see the same alert.
func victoriaMetricsProcs(t testing.TB, dir, addr string, o Options) []*proc {
	cfg := writeFile(t, filepath.Join(dir, "scrape.yml"), scrapeConfig(o, ""))
	delay := (2*time.Second + o.Interval).String()
	vm := &proc{
		tool: "victoria-metrics",
		args: []string{
			"-storageDataPath=" + filepath.Join(dir, "data"), "-httpListenAddr=" + addr,
			"-promscrape.config=" + cfg, "-search.latencyOffset=" + delay,
			"-loggerLevel=ERROR",
		},
		ready: "http://" + addr + "/health",
	}
	if o.Rules == "" {
		return []*proc{vm}
	}
	alertAddr := testsupport.FreeAddr(t)
	vm.args = append(vm.args, "-vmalert.proxyURL=http://"+alertAddr)
	notifier := "-notifier.blackhole"
	if o.Alertmanager != "" {
		notifier = "-notifier.url=" + o.Alertmanager
	}
	vmalert := &proc{
		tool: "vmalert",
		args: []string{
			"-rule=" + writeFile(t, filepath.Join(dir, "rules.yml"), o.Rules),
			"-datasource.url=http://" + addr, "-remoteWrite.url=http://" + addr, "-remoteRead.url=http://" + addr,
			notifier, "-httpListenAddr=" + alertAddr, "-evaluationInterval=" + o.Interval.String(),
			"-rule.evalDelay=" + delay, "-disableAlertgroupLabel", "-loggerLevel=ERROR",
		},
		ready: "http://" + alertAddr + "/health",
	}
	return []*proc{vm, vmalert}
}
