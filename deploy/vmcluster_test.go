package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

const vmselectURL = "http://vmselect:8481/select/0/prometheus"

// flagValue is the value of -name=... (or --name=...) in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), name+"="); ok && strings.HasPrefix(a, "-") {
			return v, true
		}
	}
	return "", false
}

// jobNames are the scrape jobs of a Prometheus-format config.
func jobNames(t *testing.T, file string) []string {
	t.Helper()
	var c struct {
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			RelabelConfigs []struct {
				SourceLabels []string `yaml:"source_labels"`
				Action       string   `yaml:"action"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	unmarshalFile(t, file, &c)
	var out []string
	for _, sc := range c.ScrapeConfigs {
		out = append(out, sc.JobName)
	}
	return out
}

// The vm-cluster profile wires the pieces the controller depends on: its
// --prometheus.url at vmselect, vmselect passing the alerts API on to
// vmalert (the drain guard and the UI read it), vmalert evaluating the
// same rule files as Prometheus and notifying the same Alertmanager, and
// the vmagents scraping, between them, every job prometheus.yml scrapes,
// under the same job names, which the rules and queries select on.
func TestVMClusterWiring(t *testing.T) {
	root, dir := stage(t)
	p := loadEnv(t, dir, types.Mapping{"BOXFLEET_PROMETHEUS_URL": vmselectURL}, "vm-cluster")
	if v, _ := flagValue(p.Services["boxfleet"].Command, "prometheus.url"); v != vmselectURL {
		t.Errorf("with BOXFLEET_PROMETHEUS_URL set, the controller reads %q, want %q", v, vmselectURL)
	}
	if v, _ := flagValue(load(t, dir).Services["boxfleet"].Command, "prometheus.url"); v != "http://prometheus:9090" {
		t.Errorf("by default the controller reads %q, want the single Prometheus", v)
	}
	ports := listenPorts(t, p)
	if !ports["vmselect"]["8481"] {
		t.Errorf("vmselect does not listen on 8481: %v", ports["vmselect"])
	}
	sel := p.Services["vmselect"].Command
	if v, _ := flagValue(sel, "vmalert.proxyURL"); v != "http://vmalert:8880" {
		t.Errorf("vmselect -vmalert.proxyURL=%q: /api/v1/alerts would answer an empty list and the drain guard could only read ALERTS", v)
	}
	alert := p.Services["vmalert"].Command
	for flag, want := range map[string]string{
		"datasource.url": vmselectURL, "notifier.url": "http://alertmanager:9093",
		"remoteWrite.url": "http://vminsert:8480/insert/0/prometheus", "rule": "/etc/vmalert/alerts/*.yml",
	} {
		if v, _ := flagValue(alert, flag); v != want {
			t.Errorf("vmalert -%s=%q, want %q", flag, v, want)
		}
	}
	var prom struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	unmarshalFile(t, filepath.Join(root, "prometheus/prometheus.yml"), &prom)
	if !slices.Equal(prom.RuleFiles, []string{"/etc/prometheus/alerts/*.yml"}) {
		t.Errorf("prometheus.yml rule_files %v: vmalert must load the same files", prom.RuleFiles)
	}
	// Every sample is stored on both vmstorage nodes, and vmselect and
	// vmstorage deduplicate the two vmagents of an HA region pair.
	if v, _ := flagValue(p.Services["vminsert"].Command, "replicationFactor"); v != "2" {
		t.Errorf("vminsert -replicationFactor=%q, want 2 for two vmstorage nodes", v)
	}
	for _, svc := range []string{"vmselect", "vmstorage-1", "vmstorage-2"} {
		if v, _ := flagValue(p.Services[svc].Command, "dedup.minScrapeInterval"); v != "15s" {
			t.Errorf("%s -dedup.minScrapeInterval=%q, want the scrape interval 15s", svc, v)
		}
	}

	region := jobNames(t, filepath.Join(root, "deploy/vm-cluster/vmagent-region.yml"))
	control := jobNames(t, filepath.Join(root, "deploy/vm-cluster/vmagent-control.yml"))
	if !slices.Equal(region, []string{"singbox", "blackbox"}) {
		t.Errorf("regional jobs %v, want the node jobs singbox and blackbox", region)
	}
	got := slices.Sorted(slices.Values(append(slices.Clone(region), control...)))
	want := []string{"alertmanager", "blackbox", "blackbox_exporter", "boxfleet", "singbox", "victoriametrics"}
	if !slices.Equal(got, want) {
		t.Errorf("jobs of the vmagents %v, want %v", got, want)
	}
	single := jobNames(t, filepath.Join(root, "prometheus/prometheus.yml"))
	for _, j := range single {
		if j != "prometheus" && !slices.Contains(got, j) {
			t.Errorf("prometheus.yml scrapes job %s, which no vmagent of the cluster does", j)
		}
	}
	regionCfg, err := os.ReadFile(filepath.Join(root, "deploy/vm-cluster/vmagent-region.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(regionCfg), `regex: "%{BOXFLEET_REGION}"`) != 2 {
		t.Error("each regional job must keep only its region's targets")
	}
	if v := p.Services["vmagent-region"].Environment["BOXFLEET_REGION"]; v == nil || *v == "" {
		t.Error("vmagent-region has no BOXFLEET_REGION")
	}
}

// The real programs accept what the profile gives them: vmalert parses
// every rule in alerts/ as MetricsQL (a rule Prometheus takes but vmalert
// refuses would leave the fleet without that policy), and VictoriaMetrics's
// scraper, the one vmagent runs, accepts both scrape configs.
func TestVMClusterConfigsAccepted(t *testing.T) {
	root := testbin.RepoRoot(t)
	vmalert := testbin.Path(t, "vmalert")
	if out, err := exec.Command(vmalert, "-dryRun", "-rule="+filepath.Join(root, "alerts", "*.yml")).CombinedOutput(); err != nil {
		t.Errorf("vmalert refuses alerts/*.yml: %v\n%s", err, lastLines(out, 10))
	}
	vm := testbin.Path(t, "victoria-metrics")
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmagent-region.yml", "vmagent-control.yml"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy/vm-cluster", f))
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, f)
		if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "/run/secrets/boxfleet_admin_token", token)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(vm, "-promscrape.config="+cfg, "-promscrape.config.dryRun")
		cmd.Env = append(os.Environ(), "BOXFLEET_REGION=eu")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("VictoriaMetrics's scraper refuses %s: %v\n%s", f, err, lastLines(out, 10))
		}
	}
}
