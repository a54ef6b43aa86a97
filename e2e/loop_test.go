// Package e2e closes the whole loop with the real programs on loopback:
// sing-box nodes with their exporters, Prometheus with the shipped rules,
// Alertmanager with the shipped routes, the blackbox exporter and the
// controller. Only host names and intervals differ from the shipped files.
package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/cli"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/promtest"
	"github.com/boxfleet/boxfleet/internal/testbin"
)

type proc struct {
	name string
	cmd  *exec.Cmd
}

func (p *proc) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	}
}

func start(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd}
	t.Cleanup(func() {
		p.stop()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return p
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !ok() {
		if time.Since(begin) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(begin)
}

func httpOK(u string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeTelegram stands in for api.telegram.org.
type fakeTelegram struct {
	mu   sync.Mutex
	msgs []string
}

func (f *fakeTelegram) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.msgs = append(f.msgs, string(b))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"}}}`)
}

func (f *fakeTelegram) saw(substr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

// node is one sing-box with its exporter.
type node struct {
	name, dir, ssAddr, psk string
	singbox                *proc
	sbBin                  string
}

func (n *node) startSingBox(t *testing.T) {
	n.singbox = start(t, n.dir, "sing-box", n.sbBin, "run", "-c", filepath.Join(n.dir, "config.json"))
	write(t, filepath.Join(n.dir, "sing-box.pid"), fmt.Sprint(n.singbox.cmd.Process.Pid))
}

// TestLoop: a user crosses the quota -> the alert fires -> Telegram gets a
// message -> the controller suspends -> both nodes reload -> the user's
// real sing-box client is refused while another user's still works; the
// quota is reset -> the user is back. One node's sing-box dies -> the node
// is drained and left out of subscriptions -> it comes back -> restored.
func TestLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole fleet")
	}
	root := testbin.RepoRoot(t)
	dir := t.TempDir()
	bin := t.TempDir()
	boxfleet := testbin.GoBuild(t, "./cmd/boxfleet", bin)
	exporter := testbin.GoBuild(t, "./cmd/singbox_exporter", bin)
	sb := testbin.Path(t, "sing-box")
	promBin, amBin, bbBin := testbin.Path(t, "prometheus"), testbin.Path(t, "alertmanager"), testbin.Path(t, "blackbox_exporter")

	tg := &fakeTelegram{}
	tgSrv := httptest.NewServer(tg)
	t.Cleanup(tgSrv.Close)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 2<<20))
	}))
	t.Cleanup(origin.Close)

	cpAddr, promAddr, amAddr, bbAddr := promtest.FreeAddr(t), promtest.FreeAddr(t), promtest.FreeAddr(t), promtest.FreeAddr(t)
	ctlDir := filepath.Join(dir, "controller")
	ctl := start(t, dir, "controller", boxfleet, "serve", "--data.dir", ctlDir, "--web.listen-address", cpAddr,
		"--prometheus.url", "http://"+promAddr, "--accounting.interval", "1s", "--health.interval", "1s", "--lease.ttl", "3s")
	_ = ctl
	waitUntil(t, "controller", 30*time.Second, func() bool { return httpOK("http://" + cpAddr + "/-/ready") })
	tokenFile := filepath.Join(ctlDir, "admin.token")
	token, err := cli.ReadToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	api := &cli.Client{URL: "http://" + cpAddr, Token: token}
	ctx := context.Background()
	must := func(method, path string, body, out any) {
		t.Helper()
		if _, err := api.Do(ctx, method, path, nil, body, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	var alice, bob store.User
	must("POST", "/api/v1/users", map[string]any{"name": "alice", "traffic_limit_bytes": 1 << 20}, &alice)
	must("POST", "/api/v1/users", map[string]any{"name": "bob"}, &bob)

	nodes := map[string]*node{}
	for _, name := range []string{"n1", "n2"} {
		var created struct{ Token string }
		must("POST", "/api/v1/nodes", map[string]any{"name": name, "labels": map[string]string{"group": "e2e"}}, &created)
		n := &node{name: name, dir: filepath.Join(dir, name), ssAddr: promtest.FreeAddr(t), sbBin: sb}
		os.MkdirAll(n.dir, 0o700)
		nodes[name] = n
		write(t, filepath.Join(n.dir, "token"), created.Token)
		write(t, filepath.Join(n.dir, "clash.secret"), "s3cret-"+name)
		n.psk = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
		clash, exp := promtest.FreeAddr(t), promtest.FreeAddr(t)
		host, port, _ := strings.Cut(n.ssAddr, ":")
		write(t, filepath.Join(n.dir, "config.json"), fmt.Sprintf(`{
  "log": {"level": "info"},
  "inbounds": [{"type": "shadowsocks", "tag": "ss", "listen": %q, "listen_port": %s,
    "method": "2022-blake3-aes-128-gcm", "password": %q, "users": []}],
  "outbounds": [{"type": "direct"}],
  "experimental": {"clash_api": {"external_controller": %q, "secret": "s3cret-%s"}}
}`, host, port, n.psk, clash, name))
		n.startSingBox(t)
		start(t, n.dir, "exporter", exporter, "--web.listen-address", exp, "--state.path", filepath.Join(n.dir, "state.json"),
			"--singbox.clash-api", "http://"+clash, "--singbox.clash-secret-file", filepath.Join(n.dir, "clash.secret"),
			"--controller.url", "http://"+cpAddr, "--controller.token-file", filepath.Join(n.dir, "token"),
			"--node.name", name, "--node.address", "127.0.0.1", "--singbox.config", filepath.Join(n.dir, "config.json"),
			"--singbox.binary", sb, "--singbox.pid-file", filepath.Join(n.dir, "sing-box.pid"), "--singbox.reload-min-interval", "1s")
	}

	// Prometheus, Alertmanager and blackbox with the shipped files.
	secrets := filepath.Join(dir, "secrets")
	os.MkdirAll(secrets, 0o700)
	write(t, filepath.Join(secrets, "boxfleet_admin_token"), token)
	write(t, filepath.Join(secrets, "telegram_bot_token"), "123456:e2e-bot-token")
	write(t, filepath.Join(secrets, "telegram_chat_id"), "-100123")
	hosts := strings.NewReplacer("boxfleet:8080", cpAddr, "alertmanager:9093", amAddr, "blackbox:9115", bbAddr,
		"localhost:9090", promAddr, "/run/secrets/", secrets+"/", "/etc/prometheus/alerts/", filepath.Join(root, "alerts")+"/",
		"/etc/alertmanager/templates/", filepath.Join(root, "prometheus", "templates")+"/")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, "prometheus", name))
		if err != nil {
			t.Fatal(err)
		}
		return hosts.Replace(string(b))
	}
	write(t, filepath.Join(dir, "prometheus.yml"), promtest.Shorten(read("prometheus.yml")))
	write(t, filepath.Join(dir, "alertmanager.yml"), "global:\n  telegram_api_url: "+tgSrv.URL+"\n"+promtest.Shorten(read("alertmanager.yml")))
	start(t, dir, "blackbox", bbBin, "--config.file", filepath.Join(root, "prometheus", "blackbox.yml"), "--web.listen-address", bbAddr)
	start(t, dir, "alertmanager", amBin, "--config.file", filepath.Join(dir, "alertmanager.yml"),
		"--storage.path", filepath.Join(dir, "am"), "--web.listen-address", amAddr, "--cluster.listen-address=")
	start(t, dir, "prometheus", promBin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "prom"), "--web.listen-address", promAddr)

	// Each node serves both users once its agent has applied the set.
	for _, n := range nodes {
		waitUntil(t, n.name+" serving alice and bob", 60*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(n.dir, "config.json"))
			return strings.Contains(string(b), `"alice"`) && strings.Contains(string(b), `"bob"`)
		})
	}
	clients := map[string]string{}
	for _, u := range []*store.User{&alice, &bob} {
		mixed := promtest.FreeAddr(t)
		host, port, _ := strings.Cut(mixed, ":")
		shost, sport, _ := strings.Cut(nodes["n1"].ssAddr, ":")
		cdir := filepath.Join(dir, "client-"+u.Name)
		os.MkdirAll(cdir, 0o700)
		write(t, filepath.Join(cdir, "config.json"), fmt.Sprintf(`{
  "log": {"level": "warn"},
  "inbounds": [{"type": "mixed", "listen": %q, "listen_port": %s}],
  "outbounds": [{"type": "shadowsocks", "server": %q, "server_port": %s, "method": "2022-blake3-aes-128-gcm", "password": %q}]
}`, host, port, shost, sport, nodes["n1"].psk+":"+u.Credentials.SSKey16))
		start(t, cdir, "client", sb, "run", "-c", filepath.Join(cdir, "config.json"))
		clients[u.Name] = mixed
	}
	fetch := func(user string) (int, error) {
		proxy, _ := url.Parse("http://" + clients[user])
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}}
		resp, err := c.Get(origin.URL)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil && (resp.StatusCode != 200 || n != 2<<20) {
			err = fmt.Errorf("HTTP %d, %d bytes", resp.StatusCode, n)
		}
		return int(n), err
	}
	waitUntil(t, "alice and bob through n1", 30*time.Second, func() bool {
		a, errA := fetch("alice")
		b, errB := fetch("bob")
		return errA == nil && errB == nil && a == 2<<20 && b == 2<<20
	})

	// alice has now moved more than her 1 MiB limit.
	crossed := time.Now()
	cutOff := waitUntil(t, "alice refused", 90*time.Second, func() bool { _, err := fetch("alice"); return err != nil })
	t.Logf("quota crossed -> alice cut off on the node: %s", cutOff.Round(100*time.Millisecond))
	if _, err := fetch("bob"); err != nil {
		t.Fatalf("bob lost service when alice was suspended: %v", err)
	}
	waitUntil(t, "the webhook suspension", 60*time.Second, func() bool {
		var u store.User
		must("GET", "/api/v1/users/alice", nil, &u)
		return u.Status == store.StatusDisabled && strings.HasPrefix(u.StatusReason, "alert:UserOverQuota/")
	})
	waitUntil(t, "Telegram told about alice", 30*time.Second, func() bool { return tg.saw("UserOverQuota") && tg.saw("alice") })
	for _, n := range nodes {
		waitUntil(t, n.name+" dropping alice", 30*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(n.dir, "config.json"))
			return !strings.Contains(string(b), `"alice"`) && strings.Contains(string(b), `"bob"`)
		})
	}
	t.Logf("quota crossed -> suspended by the alert, both nodes reloaded: %s", time.Since(crossed).Round(100*time.Millisecond))

	must("POST", "/api/v1/users/alice/reset", nil, nil)
	back := waitUntil(t, "alice back after the reset", 90*time.Second, func() bool { _, err := fetch("alice"); return err == nil })
	t.Logf("quota reset -> alice served again: %s", back.Round(100*time.Millisecond))

	// n2's sing-box dies: NodeDown (for: 30s as shipped) drains it.
	nodes["n2"].singbox.cmd.Process.Kill()
	nodes["n2"].singbox.cmd.Wait()
	died := time.Now()
	subURL := "http://" + cpAddr + "/sub/" + bob.SubToken + "?format=links"
	drainedIn := waitUntil(t, "n2 drained", 120*time.Second, func() bool {
		var n store.Node
		must("GET", "/api/v1/nodes/n2", nil, &n)
		return n.Drained
	})
	t.Logf("node death -> drained: %s (NodeDown has for: 30s)", drainedIn.Round(100*time.Millisecond))
	if links := get(t, subURL); strings.Contains(links, "n2") || !strings.Contains(links, "n1") {
		t.Fatalf("subscription still lists n2 after the drain:\n%s", links)
	}
	_ = died

	nodes["n2"].startSingBox(t)
	restored := waitUntil(t, "n2 restored", 90*time.Second, func() bool {
		var n store.Node
		must("GET", "/api/v1/nodes/n2", nil, &n)
		return !n.Drained
	})
	t.Logf("node back -> restored: %s", restored.Round(100*time.Millisecond))
	waitUntil(t, "n2 back in the subscription", 10*time.Second, func() bool { return strings.Contains(get(t, subURL), "n2") })
}

func get(t *testing.T, u string) string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
