// Package scripts holds the tests of the operator-facing scripts.
package scripts

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/demotest"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestDemo runs `make demo`'s script as an operator would, checks that
// every component answers and that the loop is closed (nodes registered
// and applied the user set, Prometheus scrapes everything through the
// controller's service discovery, the subscription lists both nodes), then
// presses Ctrl-C and checks that no process is left behind.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole fleet")
	}
	root := testbin.RepoRoot(t)
	base := demotest.FreeBase(t)
	cmd := exec.Command("bash", "scripts/demo.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BOXFLEET_DEMO_DIR="+t.TempDir(), fmt.Sprintf("BOXFLEET_DEMO_PORT=%d", base))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })

	text := demotest.ReadUntil(t, out, "demo ready", 10*time.Minute)
	sub := regexp.MustCompile(`subscription \(demo user\)\s+(\S+)`).FindStringSubmatch(text)
	if sub == nil {
		t.Fatalf("no subscription URL in the demo's output:\n%s", text)
	}
	go io.Copy(io.Discard, out)

	url := func(off int, path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", base+off, path) }
	for name, u := range map[string]string{
		"controller":   url(0, "/-/ready"),
		"prometheus":   url(1010, "/-/ready"),
		"alertmanager": url(1013, "/-/ready"),
		"blackbox":     url(1035, "/-/healthy"),
	} {
		if code, body := get(t, u); code != 200 {
			t.Errorf("%s at %s answered %d: %s", name, u, code, body)
		}
	}
	for _, off := range []int{12016, 12026} {
		waitFor(t, "exporter applied the user set", 60*time.Second, func() bool {
			_, body := get(t, url(off, "/metrics"))
			return strings.Contains(body, "\nsingbox_up 1\n") && regexp.MustCompile(`\nsingbox_config_revision [1-9]`).MatchString(body)
		}, func() string {
			_, body := get(t, url(off, "/metrics"))
			return "exporter: " + strings.Join(regexp.MustCompile(`(?m)^singbox_(up|config_revision|config_apply_total)\b.*$`).FindAllString(body, -1), "; ")
		})
	}
	// demo-1 reads users from sing-box's API service, demo-2 from the Clash
	// API: each exporter says so, and demo-1's event stream is up.
	for off, mode := range map[int]string{12016: "api", 12026: "clash_api"} {
		waitFor(t, "exporter in "+mode+" mode with its stream up", 30*time.Second, func() bool {
			_, body := get(t, url(off, "/metrics"))
			return strings.Contains(body, `singbox_exporter_mode_info{mode="`+mode+`"} 1`) &&
				strings.Contains(body, "\nsingbox_exporter_log_stream_up 1\n")
		}, func() string {
			_, body := get(t, url(off, "/metrics"))
			return "exporter: " + strings.Join(regexp.MustCompile(`(?m)^singbox_exporter_(mode_info|log_stream_up)\b.*$`).FindAllString(body, -1), "; ")
		})
	}
	waitFor(t, "Prometheus scraping every target", 90*time.Second, func() bool {
		_, body := get(t, url(1010, "/api/v1/targets?state=active"))
		up, down := strings.Count(body, `"health":"up"`), strings.Count(body, `"health":"down"`)+strings.Count(body, `"health":"unknown"`)
		// controller, prometheus, alertmanager, blackbox_exporter, 2 exporters, 6 probes
		return up >= 12 && down == 0
	}, func() string {
		_, body := get(t, url(1010, "/api/v1/targets?state=active"))
		return "targets: " + strings.Join(regexp.MustCompile(`"scrapeUrl":"[^"]*"|"health":"[a-z]*"|"lastError":"[^"]*"`).FindAllString(body, -1), " ")
	})
	code, links := get(t, sub[1]+"?format=links")
	if code != 200 || strings.Count(links, "://") != 6 || !strings.Contains(links, "demo-1") || !strings.Contains(links, "demo-2") {
		t.Errorf("subscription: %d\n%s", code, links)
	}

	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop within 30s of Ctrl-C")
	}
	waitFor(t, "every demo process gone", 10*time.Second, func() bool {
		return syscall.Kill(-pgid, 0) == syscall.ESRCH
	})
}

func get(t *testing.T, u string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool, state ...func() string) {
	t.Helper()
	testsupport.Until(t, what, timeout, ok, state...)
}
