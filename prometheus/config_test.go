package prometheus

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

// tree is a copy of the shipped configuration with the container paths
// pointed into a temporary directory that holds the secret files, as
// docker-compose would mount them.
type tree struct {
	dir, secrets string
	repo         string
}

func newTree(t *testing.T) *tree {
	t.Helper()
	dir := t.TempDir()
	tr := &tree{dir: dir, secrets: filepath.Join(dir, "secrets"), repo: testbin.RepoRoot(t)}
	if err := os.Mkdir(tr.secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"boxfleet_admin_token": "admin-token\n",
		"telegram_bot_token":   "123456:test-bot-token\n",
		"telegram_chat_id":     "-1001234567890\n",
	} {
		if err := os.WriteFile(filepath.Join(tr.secrets, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// localize rewrites the container paths of a shipped config file (and any
// extra host replacements) and writes the result into the tree.
func (tr *tree) localize(t *testing.T, name string, hosts map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.repo, "prometheus", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(
		"/run/secrets/", tr.secrets+"/",
		"/etc/prometheus/alerts/", filepath.Join(tr.repo, "alerts")+"/",
		"/etc/alertmanager/templates/", filepath.Join(tr.repo, "prometheus", "templates")+"/",
	).Replace(string(b))
	for from, to := range hosts {
		s = strings.ReplaceAll(s, from, to)
	}
	out := filepath.Join(tr.dir, name)
	if err := os.WriteFile(out, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func run(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testbin.Path(t, tool), args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := run(t, tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return out
}

func TestPromtoolCheckConfig(t *testing.T) {
	tr := newTree(t)
	out := mustRun(t, "promtool", "check", "config", tr.localize(t, "prometheus.yml", nil))
	// The rule glob must find the shipped rules, not an empty directory.
	rules, _ := filepath.Glob(filepath.Join(tr.repo, "alerts", "*.yml"))
	for _, f := range rules {
		if !strings.Contains(out, "Checking "+f) {
			t.Errorf("promtool did not load %s:\n%s", f, out)
		}
	}
}

// The token is read by Prometheus at scrape time; a wrong mount must fail
// the check rather than surface as 401s after deployment.
func TestPromtoolCheckConfigNeedsTheTokenFile(t *testing.T) {
	tr := newTree(t)
	if err := os.Remove(filepath.Join(tr.secrets, "boxfleet_admin_token")); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "promtool", "check", "config", tr.localize(t, "prometheus.yml", nil))
	if err == nil || !strings.Contains(out, "boxfleet_admin_token") {
		t.Fatalf("promtool accepted a config whose token file is missing: %v\n%s", err, out)
	}
}

func TestAmtoolCheckConfig(t *testing.T) {
	tr := newTree(t)
	out := mustRun(t, "amtool", "check-config", tr.localize(t, "alertmanager.yml", nil))
	for _, want := range []string{"2 receivers", "1 templates", "SUCCESS"} {
		if !strings.Contains(out, want) {
			t.Errorf("amtool check-config output lacks %q:\n%s", want, out)
		}
	}
}

func routesTo(t *testing.T, config string, labels map[string]string) []string {
	t.Helper()
	args := []string{"config", "routes", "test", "--config.file=" + config}
	for k, v := range labels {
		args = append(args, k+"="+v)
	}
	out := mustRun(t, "amtool", args...)
	receivers := strings.Split(strings.TrimSpace(out), ",")
	slices.Sort(receivers)
	return receivers
}

func TestRoutes(t *testing.T) {
	config := newTree(t).localize(t, "alertmanager.yml", nil)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"suspend goes to the controller and to people",
			map[string]string{"alertname": "UserOverQuota", "boxfleet_action": "suspend_user", "user": "alice", "severity": "warning"},
			[]string{"boxfleet", "telegram"}},
		{"drain goes to the controller and to people",
			map[string]string{"alertname": "NodeDown", "boxfleet_action": "drain_node", "node": "a", "severity": "critical"},
			[]string{"boxfleet", "telegram"}},
		{"an action without severity still reaches both",
			map[string]string{"alertname": "Custom", "boxfleet_action": "drain_node", "node": "a"},
			[]string{"boxfleet", "telegram"}},
		{"notify-only critical goes only to people",
			map[string]string{"alertname": "SingboxDown", "node": "a", "severity": "critical"},
			[]string{"telegram"}},
		{"notify-only info goes only to people",
			map[string]string{"alertname": "UserQuotaNearlyUsed", "user": "bob", "severity": "info", "quota_percent": "80"},
			[]string{"telegram"}},
		{"an alert from outside boxfleet reaches people",
			map[string]string{"alertname": "Watchdog"},
			[]string{"telegram"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := routesTo(t, config, tc.labels); !slices.Equal(got, tc.want) {
				t.Errorf("routed to %v, want %v", got, tc.want)
			}
		})
	}
}

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestEveryShippedAlertIsRouted ties the rules to the routing tree: each
// alert in alerts/ reaches people, and exactly those with boxfleet_action
// reach the controller.
func TestEveryShippedAlertIsRouted(t *testing.T) {
	config := newTree(t).localize(t, "alertmanager.yml", nil)
	files, _ := filepath.Glob(filepath.Join(testbin.RepoRoot(t), "alerts", "*.rules.yml"))
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				seen++
				labels := map[string]string{"alertname": r.Alert, "user": "alice", "node": "a"}
				maps.Copy(labels, r.Labels)
				want := []string{"telegram"}
				if r.Labels["boxfleet_action"] != "" {
					want = []string{"boxfleet", "telegram"}
				}
				if got := routesTo(t, config, labels); !slices.Equal(got, want) {
					t.Errorf("%s %v routed to %v, want %v", r.Alert, r.Labels, got, want)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("no alerts found in alerts/*.rules.yml")
	}
}

type amRoute struct {
	Matchers       []string  `yaml:"matchers"`
	Receiver       string    `yaml:"receiver"`
	GroupBy        []string  `yaml:"group_by"`
	GroupWait      string    `yaml:"group_wait"`
	RepeatInterval string    `yaml:"repeat_interval"`
	Continue       bool      `yaml:"continue"`
	Routes         []amRoute `yaml:"routes"`
}

// The controller route's timing is part of the reaction-time budget
// (docs/runbook.md) and of the lost-webhook guarantee; amtool accepts any
// value, so pin them here.
func TestControllerRouteTiming(t *testing.T) {
	b, err := os.ReadFile("alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Route     amRoute `yaml:"route"`
		Receivers []struct {
			Name     string `yaml:"name"`
			Webhooks []struct {
				SendResolved *bool `yaml:"send_resolved"`
			} `yaml:"webhook_configs"`
		} `yaml:"receivers"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var r *amRoute
	for i := range cfg.Route.Routes {
		if cfg.Route.Routes[i].Receiver == "boxfleet" {
			r = &cfg.Route.Routes[i]
		}
	}
	if r == nil {
		t.Fatal("no route to the boxfleet receiver")
	}
	for _, l := range []string{"user", "node", "boxfleet_action"} {
		if !slices.Contains(r.GroupBy, l) {
			t.Errorf("controller route does not group by %s: a new target would wait behind an old group", l)
		}
	}
	if r.GroupWait != "5s" || r.RepeatInterval != "1h" {
		t.Errorf("controller route group_wait %s, repeat_interval %s; the runbook promises 5s and 1h", r.GroupWait, r.RepeatInterval)
	}
	for _, rc := range cfg.Receivers {
		for _, w := range rc.Webhooks {
			if rc.Name == "boxfleet" && (w.SendResolved == nil || !*w.SendResolved) {
				t.Error("the controller webhook must get resolved alerts, or actions are never undone")
			}
		}
	}
}

func TestBlackboxConfig(t *testing.T) {
	out := mustRun(t, "blackbox_exporter", "--config.check", "--config.file=blackbox.yml")
	if !strings.Contains(out, "Config file is ok") {
		t.Errorf("blackbox_exporter --config.check:\n%s", out)
	}
}
