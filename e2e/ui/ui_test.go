// Package ui tests the embedded admin UI in a real browser against the
// whole fleet: `make demo`'s script starts the controller (built with the
// UI), two sing-box nodes with their exporters, Prometheus and
// Alertmanager; web/e2e/ui.mjs drives Debian's Chromium through
// playwright-core; this test moves real traffic through a sing-box client
// when the browser has created the user.
package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/demotest"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestUI is skipped unless the UI is built and Chromium and playwright-core
// are there; `make test` sets BOXFLEET_UI_E2E, which turns a missing piece
// into a failure. BOXFLEET_UI_SCREENSHOTS=1 writes the screenshots to
// docs/img (the README links them) instead of a temporary directory.
func TestUI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole fleet and a browser")
	}
	root := testbin.RepoRoot(t)
	required := os.Getenv("BOXFLEET_UI_E2E") != ""
	need := func(ok bool, what string) {
		t.Helper()
		if ok {
			return
		}
		if required {
			t.Fatal(what)
		}
		t.Skip(what)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	need(exists(filepath.Join(root, "controller/webui/dist/index.html")), "the UI is not built (make ui)")
	need(exists(filepath.Join(root, "web/node_modules/playwright-core")), "web/node_modules missing (make ui-deps)")
	chromium := os.Getenv("BOXFLEET_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	need(exists(chromium), "no Chromium at "+chromium+" (tools/chromium.sh)")
	node, err := exec.LookPath("node")
	need(err == nil, "no node on PATH")
	sb := testbin.Path(t, "sing-box")

	// The fleet, as an operator starts it.
	dir := t.TempDir()
	base := demotest.FreeBase(t)
	demo := exec.Command("bash", "scripts/demo.sh")
	demo.Dir = root
	demo.Env = append(os.Environ(), "BOXFLEET_DEMO_DIR="+dir, fmt.Sprintf("BOXFLEET_DEMO_PORT=%d", base))
	demo.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	demo.Stderr = os.Stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	demoExited := make(chan struct{})
	go func() { demo.Wait(); close(demoExited) }()
	t.Cleanup(func() {
		syscall.Kill(-demo.Process.Pid, syscall.SIGINT)
		select {
		case <-demoExited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-demo.Process.Pid, syscall.SIGKILL)
		}
	})
	demotest.ReadUntil(t, out, "demo ready", 10*time.Minute)
	go io.Copy(io.Discard, out)
	ctlURL := fmt.Sprintf("http://127.0.0.1:%d", base)
	pw, err := os.ReadFile(filepath.Join(dir, "controller", "admin.password"))
	if err != nil {
		t.Fatal(err)
	}
	// Both exporters must have applied the user set before the browser
	// starts: the test drains one of them.
	for _, off := range []int{12016, 12026} {
		testsupport.Until(t, "exporter up", 60*time.Second, func() bool {
			return strings.Contains(get(fmt.Sprintf("http://127.0.0.1:%d/metrics", base+off)), "\nsingbox_up 1\n")
		})
	}

	// What the client downloads through the proxy.
	blob := make([]byte, 1<<20)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }))
	t.Cleanup(origin.Close)

	// The receiver of an outgoing hook the browser creates: the alerts page
	// must show its deliveries as delivered.
	var hooked atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			hooked.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	// The controller behind a reverse proxy that strips /panel, as an
	// operator's nginx would: the browser checks the UI works under it.
	target, _ := url.Parse(ctlURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	prefixed := httptest.NewServer(http.StripPrefix("/panel", rp))
	t.Cleanup(prefixed.Close)

	shots := t.TempDir()
	if os.Getenv("BOXFLEET_UI_SCREENSHOTS") != "" {
		shots = filepath.Join(root, "docs", "img")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	browser := exec.CommandContext(ctx, node, "e2e/ui.mjs")
	browser.Dir = filepath.Join(root, "web")
	browser.Env = append(os.Environ(), "BF_URL="+ctlURL, "BF_PASSWORD="+strings.TrimSpace(string(pw)),
		"BF_SHOTS="+shots, "BF_USER=webui-alice", "BF_CHROMIUM="+chromium, "BF_PREFIX_URL="+prefixed.URL+"/panel/",
		"BF_HOOK_URL="+receiver.URL+"/hook")
	browser.Stderr = os.Stderr
	bout, err := browser.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := browser.Start(); err != nil {
		t.Fatal(err)
	}
	// A fleet that stops under the browser (a crash, a signal from outside)
	// ends the browser at once, and the test says so rather than time out.
	var fleetGone atomic.Bool
	go func() {
		select {
		case <-demoExited:
			fleetGone.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	var moved atomic.Int64
	sc := bufio.NewScanner(bout)
	okSeen, prefixOK, totpOK := false, false, false
	times := map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		t.Log("browser: " + line)
		switch {
		case strings.HasPrefix(line, "SUB "):
			proxy := startClient(t, sb, strings.TrimPrefix(line, "SUB "))
			go pump(ctx, proxy, origin.URL, &moved)
		case strings.HasPrefix(line, "TIME "):
			f := strings.Fields(line)
			times[f[1]] = f[2]
		case line == "PREFIX ok":
			prefixOK = true
		case line == "TOTP ok":
			totpOK = true
		case line == "OK":
			okSeen = true
		}
	}
	err = browser.Wait()
	if fleetGone.Load() {
		t.Fatalf("the fleet (scripts/demo.sh) stopped during the browser test; logs:\n%s",
			testsupport.Tail(filepath.Join(dir, "logs", "controller.log"), 30))
	}
	if err != nil || !okSeen {
		t.Fatalf("the browser test failed (%v); screenshots in %s; controller log:\n%s", err, shots,
			testsupport.Tail(filepath.Join(dir, "logs", "controller.log"), 30))
	}
	if !prefixOK {
		t.Error("the browser did not check the UI under a path prefix")
	}
	if !totpOK {
		t.Error("the browser did not enrol TOTP and sign in with a code")
	}
	if hooked.Load() == 0 {
		t.Error("the hook the browser created was never delivered")
	}
	if moved.Load() == 0 {
		t.Error("no traffic went through the sing-box client")
	}
	t.Logf("moved %d MiB through sing-box; times (ms): %v", moved.Load()>>20, times)
}

// startClient runs a real sing-box client with a local mixed (HTTP/SOCKS)
// inbound and the first shadowsocks outbound of the user's subscription.
func startClient(t *testing.T, sb, subURL string) string {
	t.Helper()
	var cfg struct {
		Outbounds []map[string]any `json:"outbounds"`
	}
	if err := json.Unmarshal([]byte(get(subURL+"?format=singbox")), &cfg); err != nil {
		t.Fatalf("subscription as sing-box JSON: %v", err)
	}
	var ss map[string]any
	for _, o := range cfg.Outbounds {
		if o["type"] == "shadowsocks" {
			ss = o
			break
		}
	}
	if ss == nil {
		t.Fatalf("no shadowsocks outbound in the subscription: %v", cfg.Outbounds)
	}
	ss["tag"] = "node"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mixed := l.Addr().(*net.TCPAddr)
	l.Close()
	client := map[string]any{
		"log":       map[string]any{"level": "warn"},
		"inbounds":  []any{map[string]any{"type": "mixed", "listen": "127.0.0.1", "listen_port": mixed.Port}},
		"outbounds": []any{ss},
	}
	b, _ := json.Marshal(client)
	cdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cdir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.Start(t, cdir, "client", sb, "run", "-c", filepath.Join(cdir, "config.json"))
	return mixed.String()
}

// pump downloads through the proxy until ctx ends, a few MiB/s at most so
// that the two cores stay free for the browser. Errors are expected once
// the browser suspends the user.
func pump(ctx context.Context, proxy, origin string, moved *atomic.Int64) {
	pu, _ := url.Parse("http://" + proxy)
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}}
	for ctx.Err() == nil {
		if resp, err := c.Get(origin); err == nil {
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			moved.Add(n)
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func get(u string) string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
