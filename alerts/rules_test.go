package alerts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(testbin.Path(t, "promtool"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	return files
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, glob(t, "*.rules.yml")...)...)
}

func TestPromtoolTestRules(t *testing.T) {
	promtool(t, append([]string{"test", "rules"}, glob(t, "tests/*.yml")...)...)
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				Labels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLTests []struct {
			Expr string `yaml:"expr"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var rules []rule
	for _, f := range glob(t, "*.rules.yml") {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			rules = append(rules, g.Rules...)
		}
	}
	return rules
}

// runbookAnchors returns the GitHub anchors of the runbook's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	anchors := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(title, ""), " ", "-")] = true
	}
	return anchors
}

const runbookPrefix = "https://github.com/boxfleet/boxfleet/blob/main/docs/runbook.md#"

// actionTarget is the label each action needs to know what to act on; the
// controller ignores an action whose target label is missing.
var actionTarget = map[string]string{
	"suspend_user": "user",
	"drain_node":   "node",
}

// TestAlertsCarryWhatPeopleAndTheControllerNeed checks what promtool does
// not: the labels and annotations Alertmanager routes on and Telegram shows,
// and that every runbook link lands on a section that exists.
func TestAlertsCarryWhatPeopleAndTheControllerNeed(t *testing.T) {
	anchors := runbookAnchors(t)
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookPrefix)
		if !ok || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q does not point at a section of docs/runbook.md", r.Alert, r.Annotations["runbook_url"])
		}
		if action, ok := r.Labels["boxfleet_action"]; ok {
			if _, known := actionTarget[action]; !known {
				t.Errorf("%s: unknown boxfleet_action %q", r.Alert, action)
			}
		}
	}
}

// TestEveryRuleIsTested makes a new rule without a test fail the build:
// every alert needs a case where it fires and one where it stays silent,
// acting alerts must fire with their target label, and every recording rule
// needs a promql_expr_test.
func TestEveryRuleIsTested(t *testing.T) {
	fires := map[string]bool{}
	silent := map[string]bool{}
	recorded := map[string]bool{}
	withTarget := map[string]bool{}
	actions := map[string]string{}
	for _, r := range loadRules(t) {
		if a := r.Labels["boxfleet_action"]; a != "" {
			actions[r.Alert] = a
		}
	}
	for _, f := range glob(t, "tests/*.yml") {
		var tf testFile
		readYAML(t, f, &tf)
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertRuleTests {
				if len(at.ExpAlerts) == 0 {
					silent[at.Alertname] = true
				}
				for _, e := range at.ExpAlerts {
					fires[at.Alertname] = true
					if target := actionTarget[actions[at.Alertname]]; target != "" && e.Labels[target] != "" {
						withTarget[at.Alertname] = true
					}
				}
			}
			for _, pt := range tc.PromQLTests {
				recorded[pt.Expr] = true
			}
		}
	}
	for _, r := range loadRules(t) {
		switch {
		case r.Record != "" && !recorded[r.Record]:
			t.Errorf("recording rule %s has no promql_expr_test", r.Record)
		case r.Alert == "":
		case !fires[r.Alert]:
			t.Errorf("alert %s: no test where it fires", r.Alert)
		case !silent[r.Alert]:
			t.Errorf("alert %s: no test where it stays silent", r.Alert)
		case actions[r.Alert] != "" && !withTarget[r.Alert]:
			t.Errorf("alert %s acts (%s) but no test shows it firing with its target label", r.Alert, actions[r.Alert])
		}
	}
}
