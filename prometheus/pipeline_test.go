package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/promtest"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

const adminToken = "admin-token"

// fakeController stands in for `boxfleet serve` with what Prometheus and
// Alertmanager need from it: its metrics, the two service-discovery
// endpoints and the webhook, all behind the admin bearer token.
type fakeController struct {
	aliceUsed atomic.Int64
	exporter  string // host:port of the fake node exporter
	probes    []string

	mu       sync.Mutex
	webhooks []webhookMessage
	badAuth  int
}

type webhookMessage struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	Alerts  []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func (c *fakeController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+adminToken {
		c.mu.Lock()
		c.badAuth++
		c.mu.Unlock()
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/metrics":
		fmt.Fprintf(w, "boxfleet_user_traffic_used_bytes{user=\"alice\"} %d\n", c.aliceUsed.Load())
		fmt.Fprintf(w, "boxfleet_user_traffic_limit_bytes{user=\"alice\"} 1000\n")
		fmt.Fprintf(w, "boxfleet_user_traffic_used_bytes{user=\"bob\"} 10\n")
		fmt.Fprintf(w, "boxfleet_user_traffic_limit_bytes{user=\"bob\"} 1000\n")
		fmt.Fprintf(w, "boxfleet_accounting_last_success_timestamp_seconds %d\n", time.Now().Unix())
		fmt.Fprintf(w, "boxfleet_leader 1\n")
	case "/api/v1/sd":
		// Prometheus refuses an SD answer of any other content type.
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode([]map[string]any{
			{"targets": []string{c.exporter}, "labels": map[string]string{"node": "alive", "region": "eu"}},
		})
	case "/api/v1/sd/probes":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode([]map[string]any{
			{"targets": []string{c.probes[0]}, "labels": map[string]string{"node": "alive", "inbound": "vless-in", "protocol": "vless"}},
			{"targets": []string{c.probes[1]}, "labels": map[string]string{"node": "dead", "inbound": "vless-in", "protocol": "vless"}},
		})
	case "/api/v1/alerts":
		var m webhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.webhooks = append(c.webhooks, m)
		c.mu.Unlock()
	default:
		http.NotFound(w, r)
	}
}

// received reports whether the webhook got an alert in the given status
// whose labels include want.
func (c *fakeController) received(status string, want map[string]string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.webhooks {
		for _, a := range m.Alerts {
			if a.Status == status && hasLabels(a.Labels, want) {
				return true
			}
		}
	}
	return false
}

func hasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// fakeTelegram records what Alertmanager's telegram notifier posts to the
// Bot API's sendMessage.
type fakeTelegram struct {
	mu       sync.Mutex
	messages []telegramMessage
	paths    []string
}

type telegramMessage struct {
	ChatID    string `json:"chat_id"`
	Text      string `json:"text"`
	ParseMode string `json:"parse_mode"`
}

func (f *fakeTelegram) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m telegramMessage
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.messages = append(f.messages, m)
	f.paths = append(f.paths, r.URL.Path)
	f.mu.Unlock()
	io.WriteString(w, `{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1001234567890,"type":"supergroup"}}}`)
}

func (f *fakeTelegram) find(substr string) (telegramMessage, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range f.messages {
		if strings.Contains(m.Text, substr) {
			return m, f.paths[i], true
		}
	}
	return telegramMessage{}, "", false
}

// start runs a real program until the test ends and waits for its
// readiness URL; its output is shown only when the test fails.
func start(t *testing.T, tool, ready string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, testbin.Path(t, tool), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", tool, out.String())
		}
	})
	eventually(t, 30*time.Second, tool+" ready", func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func eventually(t *testing.T, limit time.Duration, what string, ok func() bool, state ...func() string) {
	t.Helper()
	testsupport.Until(t, what, limit, ok, state...)
}

// fetch is a GET's body, or what went wrong, for a failed wait's report.
func fetch(t *testing.T, u string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4000))
	return string(b)
}

// summary is what the controller stand-in has received, for a failed wait.
func (c *fakeController) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "webhook received %d notifications:", len(c.webhooks))
	for _, m := range c.webhooks {
		for _, a := range m.Alerts {
			fmt.Fprintf(&b, " %s %s%v;", a.Status, a.Labels["alertname"], a.Labels)
		}
	}
	return b.String()
}

// shorten applies the test-only interval changes: everything the shipped
// files wait for in seconds or minutes is brought down to about a second,
// except the rules' own `for` durations, which stay as shipped.

func rewrite(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func query(t *testing.T, prom, q string) int {
	t.Helper()
	resp, err := http.Get("http://" + prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	return len(r.Data.Result)
}

// TestPipeline runs the shipped prometheus.yml, rules, alertmanager.yml and
// blackbox.yml in the real Prometheus, Alertmanager and blackbox exporter,
// with only host names and intervals changed, and checks that a user over
// quota and a dead node reach the controller's webhook (and Telegram) with
// the labels the controller acts on, and that the resolution does too.
func TestPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus, Alertmanager and blackbox_exporter and waits out NodeDown's 30s")
	}
	tr := newTree(t)

	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "singbox_up 1\n")
	}))
	defer exporter.Close()
	alive, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	go func() {
		for {
			c, err := alive.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctrl := &fakeController{exporter: exporter.Listener.Addr().String(),
		probes: []string{alive.Addr().String(), testsupport.FreeAddr(t)}}
	ctrl.aliceUsed.Store(2000)
	ctrlSrv := httptest.NewServer(ctrl)
	defer ctrlSrv.Close()
	tg := &fakeTelegram{}
	tgSrv := httptest.NewServer(tg)
	defer tgSrv.Close()

	prom, am, bb := testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	hosts := map[string]string{
		"boxfleet:8080":     ctrlSrv.Listener.Addr().String(),
		"alertmanager:9093": am,
		"blackbox:9115":     bb,
		"localhost:9090":    prom,
	}
	promCfg := tr.localize(t, "prometheus.yml", hosts)
	rewrite(t, promCfg, promtest.Shorten)
	amCfg := tr.localize(t, "alertmanager.yml", hosts)
	rewrite(t, amCfg, func(s string) string {
		return "global:\n  telegram_api_url: " + tgSrv.URL + "\n" + promtest.Shorten(s)
	})

	start(t, "blackbox_exporter", "http://"+bb+"/-/healthy",
		"--config.file=blackbox.yml", "--web.listen-address="+bb)
	start(t, "alertmanager", "http://"+am+"/-/ready",
		"--config.file="+amCfg, "--storage.path="+filepath.Join(tr.dir, "am"),
		"--web.listen-address="+am, "--cluster.listen-address=")
	start(t, "prometheus", "http://"+prom+"/-/ready",
		"--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(tr.dir, "prom"),
		"--web.listen-address="+prom)
	began := time.Now()
	// What a failed wait prints: the alerts as Prometheus and Alertmanager
	// see them, and what reached the controller.
	state := func() string {
		return "Prometheus ALERTS: " + fetch(t, "http://"+prom+"/api/v1/query?query=ALERTS") +
			"\nAlertmanager alerts: " + fetch(t, "http://"+am+"/api/v2/alerts") + "\n" + ctrl.summary()
	}

	// Service discovery with the token, and the node's labels on its series.
	eventually(t, 30*time.Second, "the exporter found through HTTP SD", func() bool {
		return query(t, prom, `singbox_up{job="singbox",node="alive",region="eu"} == 1`) == 1
	}, state)

	over := map[string]string{"alertname": "UserOverQuota", "boxfleet_action": "suspend_user", "user": "alice", "severity": "warning"}
	eventually(t, 30*time.Second, "UserOverQuota at the webhook", func() bool { return ctrl.received("firing", over) }, state)
	t.Logf("UserOverQuota reached the webhook %v after Prometheus started", time.Since(began).Round(100*time.Millisecond))
	if ctrl.received("firing", map[string]string{"user": "bob"}) {
		t.Error("bob, at 1% of his quota, reached the controller")
	}
	eventually(t, 30*time.Second, "UserOverQuota in Telegram", func() bool {
		_, _, ok := tg.find("User alice is over their traffic limit")
		return ok
	}, state)
	m, path, _ := tg.find("User alice is over their traffic limit")
	t.Logf("telegram message:\n%s", m.Text)
	if path != "/bot123456:test-bot-token/sendMessage" || m.ChatID != "-1001234567890" || m.ParseMode != "HTML" {
		t.Errorf("telegram got path %q chat %q parse mode %q; want the token and chat id from the secret files", path, m.ChatID, m.ParseMode)
	}
	for _, want := range []string{"<b>FIRING: UserOverQuota</b> (warning)", "Controller action: <code>suspend_user</code>", `<a href="https://github.com/boxfleet/boxfleet/blob/main/docs/runbook.md#useroverquota">`} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("telegram message lacks %q:\n%s", want, m.Text)
		}
	}

	// A period reset resolves the alert, which tells the controller to resume.
	ctrl.aliceUsed.Store(0)
	reset := time.Now()
	eventually(t, 30*time.Second, "resolved UserOverQuota at the webhook", func() bool { return ctrl.received("resolved", over) }, state)
	t.Logf("the resolution reached the webhook %v after the reset", time.Since(reset).Round(100*time.Millisecond))

	drain := map[string]string{"alertname": "NodeDown", "boxfleet_action": "drain_node", "node": "dead"}
	eventually(t, 60*time.Second, "NodeDown at the webhook", func() bool { return ctrl.received("firing", drain) }, state)
	t.Logf("NodeDown reached the webhook %v after Prometheus started (for: 30s as shipped)", time.Since(began).Round(100*time.Millisecond))
	if ctrl.received("firing", map[string]string{"alertname": "NodeDown", "node": "alive"}) {
		t.Error("the node that accepts connections was reported down")
	}
	ctrl.mu.Lock()
	defer ctrl.mu.Unlock()
	if ctrl.badAuth > 0 {
		t.Errorf("%d requests reached the controller without the admin token", ctrl.badAuth)
	}
	for _, m := range ctrl.webhooks {
		if m.Version != "4" {
			t.Errorf("webhook payload version %q, want 4", m.Version)
		}
	}
}
