package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/internal/testbin"
)

const nodeToken = "node-token-e2e"

// fakeController serves the two node endpoints the way the contract says:
// bearer token, ETag over the users, If-None-Match, ?wait long poll. The
// real controller has its own tests; this one lets the agent be tested
// against real sing-box on its own.
type fakeController struct {
	t       *testing.T
	addr    string
	mu      sync.Mutex
	set     sbconfig.NodeUsers
	changed chan struct{} // closed and replaced on every change
	regs    []sbconfig.Registration
	asked   []string // If-None-Match of every users request
	srv     *http.Server
	down    chan struct{}
}

func newFakeController(t *testing.T) *fakeController {
	c := &fakeController{t: t, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), changed: make(chan struct{})}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func (c *fakeController) start() {
	c.t.Helper()
	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.down = make(chan struct{})
	c.srv = &http.Server{Handler: c}
	go c.srv.Serve(l)
}

func (c *fakeController) stop() {
	if c.srv == nil {
		return
	}
	close(c.down)
	c.srv.Close()
	c.srv = nil
}

func (c *fakeController) setUsers(rev int64, users ...sbconfig.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set = sbconfig.NodeUsers{Revision: rev, Users: users}
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *fakeController) current() (sbconfig.NodeUsers, string, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(c.set.Users)
	h := sha256.Sum256(b)
	return c.set, `"` + hex.EncodeToString(h[:8]) + `"`, c.changed
}

// askedSince returns the If-None-Match values of users requests after the
// first n.
func (c *fakeController) askedSince(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.asked[min(n, len(c.asked)):])
}

func (c *fakeController) registrations() []sbconfig.Registration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.regs)
}

func (c *fakeController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+nodeToken {
		http.Error(w, `{"error":{"code":"unauthorized","message":"bad token"}}`, http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/api/v1/nodes/n1":
		var reg sbconfig.Registration
		if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
			http.Error(w, `{"error":{"code":"bad_request","message":"bad json"}}`, http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.regs = append(c.regs, reg)
		c.mu.Unlock()
		fmt.Fprint(w, `{"name":"n1"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes/n1/users":
		c.mu.Lock()
		c.asked = append(c.asked, r.Header.Get("If-None-Match"))
		c.mu.Unlock()
		set, etag, changed := c.current()
		if r.Header.Get("If-None-Match") == etag {
			wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
			select {
			case <-changed:
			case <-c.down:
				return
			case <-r.Context().Done():
				return
			case <-time.After(time.Duration(wait) * time.Second):
			}
			if set, etag, _ = c.current(); r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("ETag", etag)
		json.NewEncoder(w).Encode(set)
	default:
		http.NotFound(w, r)
	}
}

// agentNode is a sing-box server whose users the exporter's agent manages,
// and a sing-box client with a SOCKS port per user and protocol.
type agentNode struct {
	t          *testing.T
	sbBin      string
	exporter   *process
	server     *process
	config     string
	metricsURL string
	origin     *origin
	proxies    map[string]string // "alice/vless" -> SOCKS address
	args       []string
}

const agentSSServerKey = "MTIzNDU2Nzg5MDEyMzQ1Ng=="

var (
	agentAlice = sbconfig.User{Name: "alice", Credentials: sbconfig.Credentials{
		UUID: "11111111-2222-4333-8444-555555555555", Password: "alice-pw", SSKey16: "YWJjZGVmZ2hpamtsbW5vcA=="}}
	agentBob = sbconfig.User{Name: "bob", Credentials: sbconfig.Credentials{
		UUID: "66666666-7777-4888-9999-000000000000", Password: "bob-pw", SSKey16: "cXJzdHV2d3h5ejAxMjM0NQ=="}}
)

// startAgentNode starts the node; extra flags go to the exporter, given a
// function of the config and pid file paths.
func startAgentNode(t *testing.T, ctl *fakeController, extra ...func(config, pidFile string) string) *agentNode {
	sbBin := testbin.Path(t, "sing-box")
	exporterBin := testbin.GoBuild(t, "./cmd/singbox_exporter", t.TempDir())
	dir := t.TempDir()
	n := &agentNode{t: t, sbBin: sbBin, origin: startOrigin(t), proxies: map[string]string{}, config: filepath.Join(dir, "config.json")}
	clash := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	vlessPort, ssPort := freePort(t), freePort(t)
	// The operator's file, comments and trailing commas included; the ss
	// inbound starts single-user (no users key) as people write it.
	conf := fmt.Sprintf(`{
  // written by the operator; boxfleet manages the users
  "log": {"level": "info"},
  "inbounds": [
    {"type": "vless", "tag": "vless-in", "listen": "127.0.0.1", "listen_port": %d, "users": []},
    {
      "type": "shadowsocks", "tag": "ss-in", "listen": "127.0.0.1", "listen_port": %d,
      "method": "2022-blake3-aes-128-gcm", "password": "%s", # server PSK
    },
  ],
  "outbounds": [{"type": "direct", "tag": "direct"}],
  "experimental": {"clash_api": {"external_controller": "%s", "secret": "%s"}},
}
`, vlessPort, ssPort, agentSSServerKey, clash, clashSecret)
	if err := os.WriteFile(n.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n.server = startProcess(t, sbBin, "run", "-c", n.config)
	pidFile := filepath.Join(dir, "sing-box.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(n.server.cmd.Process.Pid)), 0o600)

	var inbounds, outbounds, rules []any
	for _, u := range []sbconfig.User{agentAlice, agentBob} {
		for _, proto := range []string{"vless", "ss"} {
			tag := u.Name + "/" + proto
			n.proxies[tag] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			inbounds = append(inbounds, map[string]any{"type": "socks", "tag": tag, "listen": "127.0.0.1", "listen_port": port(n.proxies[tag])})
			out := map[string]any{"type": "vless", "tag": tag + "-out", "server": "127.0.0.1", "server_port": vlessPort, "uuid": u.UUID}
			if proto == "ss" {
				out = map[string]any{"type": "shadowsocks", "tag": tag + "-out", "server": "127.0.0.1", "server_port": ssPort,
					"method": "2022-blake3-aes-128-gcm", "password": agentSSServerKey + ":" + u.SSKey16}
			}
			outbounds = append(outbounds, out)
			rules = append(rules, map[string]any{"inbound": []string{tag}, "outbound": tag + "-out"})
		}
	}
	outbounds = append(outbounds, map[string]any{"type": "direct", "tag": "direct"})
	clientConf := writeJSON(t, map[string]any{
		"log": map[string]any{"level": "warn"}, "inbounds": inbounds, "outbounds": outbounds,
		"route": map[string]any{"rules": rules, "final": "direct"},
	})
	startProcess(t, sbBin, "run", "-c", clientConf)
	waitTCP(t, clash, 20*time.Second)
	for _, p := range n.proxies {
		waitTCP(t, p, 20*time.Second)
	}

	secretFile, tokenFile := filepath.Join(dir, "secret"), filepath.Join(dir, "token")
	os.WriteFile(secretFile, []byte(clashSecret), 0o600)
	os.WriteFile(tokenFile, []byte(nodeToken+"\n"), 0o600)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.args = []string{
		"--web.listen-address=" + listen,
		"--singbox.clash-api=http://" + clash,
		"--singbox.clash-secret-file=" + secretFile,
		"--state.path=" + filepath.Join(dir, "state.json"),
		"--controller.url=http://" + ctl.addr,
		"--controller.token-file=" + tokenFile,
		"--node.name=n1",
		"--node.address=127.0.0.1",
		"--node.label=region=test",
		"--singbox.config=" + n.config,
		"--singbox.binary=" + sbBin,
		"--singbox.pid-file=" + pidFile,
		"--singbox.reload-min-interval=1s",
		"--log.level=debug",
	}
	for _, e := range extra {
		n.args = append(n.args, e(n.config, pidFile))
	}
	n.exporter = startProcess(t, exporterBin, n.args...)
	n.metricsURL = "http://" + listen + "/metrics"
	waitHTTP(t, n.metricsURL, 20*time.Second)
	return n
}

// fetch makes one request through a user's proxy on a fresh connection.
func (n *agentNode) fetch(proxy string) error {
	c := socksClient(n.proxies[proxy], true)
	c.Timeout = 5 * time.Second
	resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=10000", n.origin.addr))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err == nil && got != 10000 {
		err = fmt.Errorf("got %d bytes", got)
	}
	return err
}

func (n *agentNode) mustServe(users ...string) {
	n.t.Helper()
	for _, u := range users {
		for _, proto := range []string{"vless", "ss"} {
			if err := n.fetch(u + "/" + proto); err != nil {
				n.t.Errorf("%s over %s: %v", u, proto, err)
			}
		}
	}
}

func (n *agentNode) mustRefuse(users ...string) {
	n.t.Helper()
	for _, u := range users {
		for _, proto := range []string{"vless", "ss"} {
			if err := n.fetch(u + "/" + proto); err == nil {
				n.t.Errorf("%s over %s: served, want refused", u, proto)
			}
		}
	}
}

func (n *agentNode) metric(family string, labels map[string]string) float64 {
	v, _ := value(scrape(n.t, n.metricsURL), family, labels)
	return v
}

// waitMetric waits until family{labels} satisfies ok.
func (n *agentNode) waitMetric(family string, labels map[string]string, ok func(float64) bool, what string) {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if ok(n.metric(family, labels)) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("%s: %s%v is %v", what, family, labels, n.metric(family, labels))
}

func equals(want float64) func(float64) bool  { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

func TestAgentAppliesUserSets(t *testing.T) {
	ctl := newFakeController(t)
	ctl.setUsers(1, agentAlice)
	n := startAgentNode(t, ctl)
	pid := n.server.cmd.Process.Pid

	n.waitMetric("singbox_config_revision", nil, equals(1), "set A applied")
	if got := n.metric("singbox_config_apply_total", map[string]string{"result": "success"}); got != 1 {
		t.Errorf("apply_total{success} = %v, want 1", got)
	}
	n.mustServe("alice")
	n.mustRefuse("bob")
	t.Logf("reload took %.3fs from SIGHUP until sing-box served again", n.metric("singbox_exporter_agent_reload_duration_seconds", nil))
	src, _ := os.ReadFile(n.config)
	if !bytes.Contains(src, []byte("// written by the operator; boxfleet manages the users")) || !bytes.Contains(src, []byte("# server PSK")) {
		t.Errorf("operator's comments lost:\n%s", src)
	}

	regs := ctl.registrations()
	if len(regs) == 0 {
		t.Fatal("node never registered")
	}
	reg := regs[len(regs)-1]
	if reg.Address != "127.0.0.1" || reg.Labels["region"] != "test" || !strings.HasPrefix(reg.Exporter, "127.0.0.1:") || reg.Version != "1.14.1" {
		t.Errorf("registration %+v", reg)
	}
	if len(reg.Inbounds) != 2 || reg.Inbounds[1].ServerPSK != agentSSServerKey || reg.Inbounds[0].Type != "vless" {
		t.Errorf("registered inbounds %+v", reg.Inbounds)
	}

	// Set B: bob in, alice out.
	ctl.setUsers(2, agentBob)
	n.waitMetric("singbox_config_revision", nil, equals(2), "set B applied")
	n.mustServe("bob")
	n.mustRefuse("alice")

	// A set sing-box rejects (a Shadowsocks key of the wrong length):
	// the file stays as it was and sing-box keeps serving bob.
	good, _ := os.ReadFile(n.config)
	bad := sbconfig.User{Name: "mallory", Credentials: sbconfig.Credentials{UUID: "12345678-1234-4234-8234-123456789012", Password: "pw", SSKey16: "c2hvcnRzZWNyZXRrZXk="}}
	ctl.setUsers(3, agentBob, bad)
	n.waitMetric("singbox_config_apply_total", map[string]string{"result": "check_failed"}, atLeast(1), "bad set rejected")
	if now, _ := os.ReadFile(n.config); !bytes.Equal(now, good) {
		t.Errorf("config changed by a rejected set:\n%s", now)
	}
	if got := n.metric("singbox_config_revision", nil); got != 2 {
		t.Errorf("revision %v after a rejected set, want 2", got)
	}
	n.mustServe("bob")
	if n.server.cmd.Process.Pid != pid || n.server.cmd.Process.Signal(syscall.Signal(0)) != nil {
		t.Error("sing-box is not the process it was")
	}
	// The controller fixes the set: it applies without waiting out the
	// failed set's retry delay.
	ctl.setUsers(4, agentBob)
	n.waitMetric("singbox_config_revision", nil, equals(4), "fixed set applied")
	if got := n.metric("singbox_config_apply_total", map[string]string{"result": "success"}); got != 2 {
		t.Errorf("apply_total{success} = %v, want 2 (set 4 renders like set 2: no reload)", got)
	}

	// The controller goes away: the node keeps serving its last set.
	ctl.stop()
	n.waitMetric("singbox_exporter_agent_controller_errors_total", map[string]string{"request": "users"}, atLeast(1), "controller loss noticed")
	n.mustServe("bob")
	n.mustRefuse("alice")

	// An exporter restart with the controller still away keeps the
	// revision; when the controller returns with the same set, the ETag
	// from before the restart means no reload: a long download through
	// bob survives it.
	n.exporter.restart()
	waitHTTP(t, n.metricsURL, 20*time.Second)
	n.waitMetric("singbox_config_revision", nil, equals(4), "revision kept across a restart")
	long := make(chan error, 1)
	go func() {
		c := socksClient(n.proxies["bob/vless"], true)
		resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=%d&pause=100ms", n.origin.addr, 40*65536))
		if err == nil {
			var got int64
			got, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && got != 40*65536 {
				err = fmt.Errorf("download cut at %d bytes", got)
			}
		}
		long <- err
	}()
	before := len(ctl.askedSince(0))
	ctl.start()
	_, etag, _ := ctl.current()
	deadline := time.Now().Add(60 * time.Second)
	for len(ctl.askedSince(before)) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if asked := ctl.askedSince(before); len(asked) == 0 || asked[0] != etag {
		t.Errorf("restarted agent asked with If-None-Match %q, want the applied ETag %s", asked, etag)
	}
	if err := <-long; err != nil {
		t.Errorf("a connection was dropped with no change to apply: %v", err)
	}
	if got := n.metric("singbox_config_apply_total", map[string]string{"result": "success"}); got != 0 {
		t.Errorf("restarted exporter reloaded sing-box %v times for an unchanged set", got)
	}
}

// TestAgentRestoresAfterFailedReload uses a reload command that refuses any
// config naming bob, standing in for a sing-box that does not come back:
// the agent puts the previous file back, reloads that, and sing-box goes on
// serving the previous set.
func TestAgentRestoresAfterFailedReload(t *testing.T) {
	ctl := newFakeController(t)
	ctl.setUsers(1, agentAlice)
	n := startAgentNode(t, ctl, func(config, pidFile string) string {
		return fmt.Sprintf(`--singbox.reload-command=if grep -q '"name":"bob"' %s; then echo refused; exit 1; fi; kill -HUP "$(cat %s)"`, config, pidFile)
	})
	n.waitMetric("singbox_config_revision", nil, equals(1), "set A applied")
	good, _ := os.ReadFile(n.config)

	ctl.setUsers(2, agentAlice, agentBob)
	// The failure is counted once the previous file is back and sing-box
	// has reloaded it.
	n.waitMetric("singbox_config_apply_total", map[string]string{"result": "reload_failed"}, atLeast(1), "failed reload reported")
	if now, _ := os.ReadFile(n.config); !bytes.Equal(now, good) {
		t.Errorf("previous config not restored:\n%s", now)
	}
	if bak, _ := os.ReadFile(n.config + ".bak"); !bytes.Equal(bak, good) {
		t.Errorf("backup holds something else than the previous good file:\n%s", bak)
	}
	if got := n.metric("singbox_config_revision", nil); got != 1 {
		t.Errorf("revision %v after a failed reload, want 1", got)
	}
	n.mustServe("alice")
	n.mustRefuse("bob")
}

// TestReloadInterruption measures how long a sing-box reload keeps a node
// from serving new connections: requests go through the proxy back to back
// while sing-box reloads, and the gap between the last success before the
// reload and the first after it is the interruption. It is a measurement,
// not a check, so it runs only when asked (BOXFLEET_MEASURE_RELOAD=1).
func TestReloadInterruption(t *testing.T) {
	if os.Getenv("BOXFLEET_MEASURE_RELOAD") == "" {
		t.Skip("set BOXFLEET_MEASURE_RELOAD=1 to measure reload interruption")
	}
	ctl := newFakeController(t)
	ctl.setUsers(1, agentAlice, agentBob)
	n := startAgentNode(t, ctl)
	n.waitMetric("singbox_config_revision", nil, equals(1), "set applied")
	var gaps []time.Duration
	for range 10 {
		stop := make(chan struct{})
		results := make(chan time.Duration, 1)
		go func() {
			var last time.Time
			var worst time.Duration
			c := socksClient(n.proxies["alice/vless"], true)
			c.Timeout = 2 * time.Second
			for {
				select {
				case <-stop:
					results <- worst
					return
				default:
				}
				resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=100", n.origin.addr))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				now := time.Now()
				if !last.IsZero() {
					worst = max(worst, now.Sub(last))
				}
				last = now
			}
		}()
		time.Sleep(300 * time.Millisecond)
		n.server.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(1500 * time.Millisecond)
		close(stop)
		gaps = append(gaps, <-results)
	}
	slices.Sort(gaps)
	t.Logf("longest gap between successful new connections across a SIGHUP reload, 10 runs: median %s, max %s, all %v",
		gaps[len(gaps)/2], gaps[len(gaps)-1], gaps)
}
