// Package e2e closes the whole loop with the real programs on loopback:
// sing-box nodes with their exporters, Prometheus with the shipped rules,
// Alertmanager with the shipped routes, the blackbox exporter and the
// controller. Only host names and intervals differ from the shipped files.
package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
	"github.com/boxfleet/boxfleet/internal/promtest"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

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
	name, dir, ssAddr, psk, exporter, token string
	singbox                                 *testsupport.Proc
	sbBin                                   string
}

func (n *node) startSingBox(t *testing.T) {
	n.singbox = testsupport.Start(t, n.dir, "sing-box", n.sbBin, "run", "-c", filepath.Join(n.dir, "config.json"))
	write(t, filepath.Join(n.dir, "sing-box.pid"), fmt.Sprint(n.singbox.Cmd.Process.Pid))
}

// applied is the user set the node's agent last applied (sing-box reloaded
// and serving it), from the agent's state file: its revision and ETag.
func (n *node) applied() (rev int64, etag string) {
	var st struct {
		Revision int64
		ETag     string
	}
	b, err := os.ReadFile(filepath.Join(n.dir, "state.json.agent.json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return -1, ""
	}
	return st.Revision, st.ETag
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

	cpAddr, promAddr, amAddr, bbAddr := testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	ctlDir := filepath.Join(dir, "controller")
	testsupport.Start(t, dir, "controller", boxfleet, "serve", "--data.dir", ctlDir, "--web.listen-address", cpAddr,
		"--prometheus.url", "http://"+promAddr, "--accounting.interval", "1s", "--health.interval", "1s", "--lease.ttl", "3s")
	testsupport.Until(t, "controller", 30*time.Second, func() bool { return httpOK("http://" + cpAddr + "/-/ready") })
	tokenFile := filepath.Join(ctlDir, "admin.token")
	token, err := apiclient.ReadTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	api := &apiclient.Client{URL: "http://" + cpAddr, Token: func() (string, error) { return token, nil }}
	ctx := context.Background()
	must := func(method, path string, body, out any) {
		t.Helper()
		if _, err := api.Call(ctx, method, path, nil, body, out); err != nil {
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
		n := &node{name: name, dir: filepath.Join(dir, name), ssAddr: testsupport.FreeAddr(t), sbBin: sb, token: created.Token}
		os.MkdirAll(n.dir, 0o700)
		nodes[name] = n
		write(t, filepath.Join(n.dir, "token"), created.Token)
		write(t, filepath.Join(n.dir, "clash.secret"), "s3cret-"+name)
		n.psk = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
		clash, exp := testsupport.FreeAddr(t), testsupport.FreeAddr(t)
		n.exporter = exp
		host, port, _ := strings.Cut(n.ssAddr, ":")
		// n2 has sing-box's API service, which its exporter finds in the
		// config and reads users from exactly; n1 has the Clash API alone.
		services := "[]"
		if name == "n2" {
			_, apiPort, _ := strings.Cut(testsupport.FreeAddr(t), ":")
			services = fmt.Sprintf(`[{"type": "api", "listen": "127.0.0.1", "listen_port": %s, "secret": "s3cret-%s"}]`, apiPort, name)
		}
		write(t, filepath.Join(n.dir, "config.json"), fmt.Sprintf(`{
  "log": {"level": "info"},
  "inbounds": [{"type": "shadowsocks", "tag": "ss", "listen": %q, "listen_port": %s,
    "method": "2022-blake3-aes-128-gcm", "password": %q, "users": []}],
  "outbounds": [{"type": "direct"}],
  "services": %s,
  "experimental": {"clash_api": {"external_controller": %q, "secret": "s3cret-%s"}}
}`, host, port, n.psk, services, clash, name))
		n.startSingBox(t)
		testsupport.Start(t, n.dir, "exporter", exporter, "--web.listen-address", exp, "--state.path", filepath.Join(n.dir, "state.json"),
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
	testsupport.Start(t, dir, "blackbox", bbBin, "--config.file", filepath.Join(root, "prometheus", "blackbox.yml"), "--web.listen-address", bbAddr)
	testsupport.Start(t, dir, "alertmanager", amBin, "--config.file", filepath.Join(dir, "alertmanager.yml"),
		"--storage.path", filepath.Join(dir, "am"), "--web.listen-address", amAddr, "--cluster.listen-address=")
	testsupport.Start(t, dir, "prometheus", promBin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "prom"), "--web.listen-address", promAddr)

	// desired is the user set the controller wants n1 and n2 (one group)
	// to serve now.
	desired := func() (rev int64, etag string, users []string) {
		req, _ := http.NewRequest("GET", "http://"+cpAddr+"/api/v1/nodes/n1/users", nil)
		req.Header.Set("Authorization", "Bearer "+nodes["n1"].token)
		var set struct {
			Revision int64
			Users    []struct{ Name string }
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return -1, "", nil
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&set) != nil {
			return -1, "", nil
		}
		for _, u := range set.Users {
			users = append(users, u.Name)
		}
		return set.Revision, resp.Header.Get("ETag"), users
	}
	// state is what a failed wait prints: the controller's view of the
	// users, the set it wants served, what each node applied, and the
	// alerts Prometheus has firing.
	state := func() string {
		var b strings.Builder
		for _, name := range []string{"alice", "bob"} {
			var u store.User
			if _, err := api.Call(ctx, "GET", "/api/v1/users/"+name, nil, nil, &u); err != nil {
				fmt.Fprintf(&b, "user %s: %v\n", name, err)
				continue
			}
			fmt.Fprintf(&b, "user %s: status=%s reason=%q used=%d limit=%d period_start=%v\n", name, u.Status, u.StatusReason, u.Used(), u.TrafficLimit, u.PeriodStart)
		}
		rev, etag, users := desired()
		fmt.Fprintf(&b, "controller: revision %d (ETag %s) serves %v\n", rev, etag, users)
		for _, name := range []string{"n1", "n2"} {
			var n store.Node
			_, err := api.Call(ctx, "GET", "/api/v1/nodes/"+name, nil, nil, &n)
			rev, etag := nodes[name].applied()
			fmt.Fprintf(&b, "node %s: applied revision %d (ETag %s), drained=%v %s (err %v)\n", name, rev, etag, n.Drained, n.DrainedBy, err)
		}
		fmt.Fprintf(&b, "firing: %s", get(t, "http://"+promAddr+`/api/v1/query?query=ALERTS{alertstate="firing"}`))
		return b.String()
	}
	// applied waits until both nodes serve the set the controller wants
	// now, and that set is want: sing-box reloaded and serving, not only
	// the file written. Sets compare by ETag, since a revision that leaves
	// the users as they were is not sent to the nodes again.
	applied := func(what string, want ...string) {
		t.Helper()
		testsupport.Until(t, what, 60*time.Second, func() bool {
			_, etag, users := desired()
			if strings.Join(users, ",") != strings.Join(want, ",") {
				return false
			}
			for _, n := range nodes {
				if _, applied := n.applied(); applied != etag {
					return false
				}
			}
			return true
		}, state)
	}
	applied("both nodes serving alice and bob", "alice", "bob")
	clients := map[string]string{}
	for _, u := range []*store.User{&alice, &bob} {
		mixed := testsupport.FreeAddr(t)
		host, port, _ := strings.Cut(mixed, ":")
		shost, sport, _ := strings.Cut(nodes["n1"].ssAddr, ":")
		cdir := filepath.Join(dir, "client-"+u.Name)
		os.MkdirAll(cdir, 0o700)
		write(t, filepath.Join(cdir, "config.json"), fmt.Sprintf(`{
  "log": {"level": "warn"},
  "inbounds": [{"type": "mixed", "listen": %q, "listen_port": %s}],
  "outbounds": [{"type": "shadowsocks", "server": %q, "server_port": %s, "method": "2022-blake3-aes-128-gcm", "password": %q}]
}`, host, port, shost, sport, nodes["n1"].psk+":"+u.Credentials.SSKey16))
		testsupport.Start(t, cdir, "client", sb, "run", "-c", filepath.Join(cdir, "config.json"))
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
	// bob first: he has no limit, so retries while his client starts cost
	// nothing. alice's first download crosses her 1 MiB limit, so she must
	// not be tried before her own client listens.
	testsupport.Until(t, "bob through n1", 30*time.Second, func() bool { _, err := fetch("bob"); return err == nil }, state)
	testsupport.Until(t, "alice's client listening", 30*time.Second, func() bool { return dialOK(clients["alice"]) }, state)
	testsupport.Until(t, "alice through n1", 30*time.Second, func() bool { _, err := fetch("alice"); return err == nil }, state)

	// alice has now moved more than her 1 MiB limit.
	crossed := time.Now()
	cutOff := testsupport.Until(t, "alice refused", 90*time.Second, func() bool { _, err := fetch("alice"); return err != nil }, state)
	t.Logf("quota crossed -> alice cut off on the node: %s", cutOff.Round(100*time.Millisecond))
	// A reload refuses new connections for some milliseconds (README,
	// Performance), so the first refusal may be that gap: judge alice and
	// bob once both nodes serve the set without her.
	applied("both nodes dropping alice", "bob")
	if _, err := fetch("alice"); err == nil {
		t.Fatal("alice still served by a node that applied a set without her")
	}
	if _, err := fetch("bob"); err != nil {
		t.Fatalf("bob lost service when alice was suspended: %v", err)
	}
	testsupport.Until(t, "the webhook suspension", 60*time.Second, func() bool {
		var u store.User
		must("GET", "/api/v1/users/alice", nil, &u)
		return u.Status == store.StatusDisabled && strings.HasPrefix(u.StatusReason, "alert:UserOverQuota/")
	}, state)
	testsupport.Until(t, "Telegram told about alice", 30*time.Second, func() bool { return tg.saw("UserOverQuota") && tg.saw("alice") }, state)
	applied("both nodes dropping alice", "bob")
	t.Logf("quota crossed -> suspended by the alert, both nodes reloaded: %s", time.Since(crossed).Round(100*time.Millisecond))

	// Bytes reach the ledger a poll, a scrape and an accounting cycle after
	// they cross a node, and a reset counts whatever arrives after it in
	// the new period (as every panel's reset does). alice moved a 2 MiB
	// download just before she was cut off: resetting while it is still on
	// its way would leave her over her 1 MiB in the new period, correctly
	// suspended. So reset once her usage has stopped moving.
	var used int64 = -1
	stable := 0
	testsupport.Until(t, "alice's usage settled in the ledger", 60*time.Second, func() bool {
		var u store.User
		must("GET", "/api/v1/users/alice", nil, &u)
		if u.Used() == used {
			stable++
		} else {
			stable = 0
		}
		used = u.Used()
		return stable >= 30 // 3 s: several polls, scrapes and cycles
	}, state)
	must("POST", "/api/v1/users/alice/reset", nil, nil)
	back := testsupport.Until(t, "alice back after the reset", 90*time.Second, func() bool { _, err := fetch("alice"); return err == nil }, state)
	t.Logf("quota reset -> alice served again: %s", back.Round(100*time.Millisecond))

	// n2's sing-box dies: NodeDown (for: 30s as shipped) drains it.
	nodes["n2"].singbox.Kill()
	subURL := "http://" + cpAddr + "/sub/" + bob.SubToken + "?format=links"
	drainedIn := testsupport.Until(t, "n2 drained", 120*time.Second, func() bool {
		var n store.Node
		must("GET", "/api/v1/nodes/n2", nil, &n)
		return n.Drained
	}, state)
	t.Logf("node death -> drained: %s (NodeDown has for: 30s)", drainedIn.Round(100*time.Millisecond))
	if links := get(t, subURL); strings.Contains(links, "n2") || !strings.Contains(links, "n1") {
		t.Fatalf("subscription still lists n2 after the drain:\n%s", links)
	}

	nodes["n2"].startSingBox(t)
	restored := testsupport.Until(t, "n2 restored", 90*time.Second, func() bool {
		var n store.Node
		must("GET", "/api/v1/nodes/n2", nil, &n)
		return !n.Drained
	}, state)
	t.Logf("node back -> restored: %s", restored.Round(100*time.Millisecond))
	testsupport.Until(t, "n2 back in the subscription", 10*time.Second, func() bool { return strings.Contains(get(t, subURL), "n2") }, state)
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func get(_ testing.TB, u string) string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
