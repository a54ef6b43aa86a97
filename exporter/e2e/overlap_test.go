package e2e

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// overlapUser is one user of the overlap scenario, with its own sing-box
// client, as a real user's device would be.
type overlapUser struct {
	user
	proto  string // vless or shadowsocks
	uuid   string
	ssKey  string
	client *process
}

// overlapNode is one sing-box server with three users on two inbounds, a
// client per user and the exporter.
type overlapNode struct {
	node
	pause    time.Duration // between 64 KiB chunks: pace (about 10 MB/s) or 0 (loopback speed)
	users    []*overlapUser
	listen   string
	flushURL string
}

// The modes an overlap node measures users in: the Clash API's estimate,
// the V2Ray stats API of a special build, or the API service's connection
// events of a stock build.
const (
	modeClash = "clash"
	modeV2Ray = "v2ray"
	modeAPI   = "api"
)

func startOverlapNode(t *testing.T, mode string, exporterArgs ...string) *overlapNode {
	t.Helper()
	singbox := "sing-box"
	if mode == modeV2Ray {
		singbox = "sing-box-v2ray"
	}
	sbBin, exporterBin := binaries(t, singbox)
	n := &overlapNode{node: node{t: t, clashAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}, pause: pace}
	mk := func(name, proto, id, key string) *overlapUser {
		u := &overlapUser{user: user{name: name, origin: startOrigin(t), proxy: fmt.Sprintf("127.0.0.1:%d", freePort(t))}, proto: proto, uuid: id, ssKey: key}
		n.users = append(n.users, u)
		n.node.users = append(n.node.users, &u.user)
		return u
	}
	mk("ana", "vless", "0b6d3c1e-8f2a-4c5b-9d7e-1a2b3c4d5e6f", "")
	mk("bo", "vless", "7c9e2f4a-1b3d-4e5f-8a6b-9c0d1e2f3a4b", "")
	mk("cy", "shadowsocks", "", "Y3lzLXNlY3JldC1rZXkxIQ==")
	vlessPort, ssPort, v2rayPort, apiPort := freePort(t), freePort(t), freePort(t), freePort(t)

	var vlessUsers, ssUsers []any
	var names []string
	for _, u := range n.users {
		names = append(names, u.name)
		if u.proto == "vless" {
			vlessUsers = append(vlessUsers, map[string]any{"name": u.name, "uuid": u.uuid})
		} else {
			ssUsers = append(ssUsers, map[string]any{"name": u.name, "password": u.ssKey})
		}
	}
	experimental := map[string]any{"clash_api": map[string]any{"external_controller": n.clashAddr, "secret": clashSecret}}
	if mode == modeV2Ray {
		experimental["v2ray_api"] = map[string]any{
			"listen": fmt.Sprintf("127.0.0.1:%d", v2rayPort),
			"stats":  map[string]any{"enabled": true, "users": names},
		}
	}
	var services []any
	if mode == modeAPI {
		services = []any{map[string]any{"type": "api", "tag": "api", "listen": "127.0.0.1", "listen_port": apiPort, "secret": clashSecret}}
		secretFile := filepath.Join(t.TempDir(), "api-secret")
		if err := os.WriteFile(secretFile, []byte(clashSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		exporterArgs = append(exporterArgs, fmt.Sprintf("--singbox.api=127.0.0.1:%d", apiPort), "--singbox.api-secret-file="+secretFile)
	}
	serverConf := writeJSON(t, map[string]any{
		"services": services,
		"log":      map[string]any{"level": "info"},
		"inbounds": []any{
			map[string]any{"type": "vless", "tag": "vless-in", "listen": "127.0.0.1", "listen_port": vlessPort, "users": vlessUsers},
			map[string]any{"type": "shadowsocks", "tag": "ss-in", "listen": "127.0.0.1", "listen_port": ssPort,
				"method": "2022-blake3-aes-128-gcm", "password": ssServerKey, "users": ssUsers},
		},
		"outbounds":    []any{map[string]any{"type": "direct", "tag": "direct"}},
		"experimental": experimental,
	})
	singBoxCheck(t, sbBin, serverConf)
	n.server = startProcess(t, sbBin, "run", "-c", serverConf)
	for _, u := range n.users {
		out := map[string]any{"type": "vless", "tag": "proxy", "server": "127.0.0.1", "server_port": vlessPort, "uuid": u.uuid}
		if u.proto == "shadowsocks" {
			out = map[string]any{"type": "shadowsocks", "tag": "proxy", "server": "127.0.0.1", "server_port": ssPort,
				"method": "2022-blake3-aes-128-gcm", "password": ssServerKey + ":" + u.ssKey}
		}
		conf := writeJSON(t, map[string]any{
			"log":       map[string]any{"level": "warn"},
			"inbounds":  []any{map[string]any{"type": "socks", "tag": "in", "listen": "127.0.0.1", "listen_port": port(u.proxy)}},
			"outbounds": []any{out},
		})
		singBoxCheck(t, sbBin, conf)
		u.client = startProcess(t, sbBin, "run", "-c", conf)
	}
	waitTCP(t, n.clashAddr, 20*time.Second)
	for _, u := range n.users {
		waitTCP(t, u.proxy, 20*time.Second)
	}

	v2ray := ""
	if mode == modeV2Ray {
		v2ray = fmt.Sprintf("127.0.0.1:%d", v2rayPort)
	}
	n.exporter, n.listen = startExporter(t, exporterBin, n.clashAddr, v2ray, exporterArgs...)
	n.metricsURL = "http://" + n.listen + "/metrics"
	n.flushURL = "http://" + n.listen + "/-/flush"
	n.waitUp()
	return n
}

// files downloads count files of size bytes, parallel at a time, each on
// its own connection, pausing between 64 KiB chunks.
func (u *overlapUser) files(t *testing.T, count, size, parallel int, pause time.Duration) {
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range parallel {
		wg.Go(func() {
			for range next {
				u.download(t, size, pause)
			}
		})
	}
	for range count {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
}

// flush asks the exporter to poll and write its state now, as the
// sing-box unit's ExecStop does before a planned stop.
func (n *overlapNode) flush() {
	n.t.Helper()
	resp, err := http.Post(n.flushURL, "", nil)
	if err != nil {
		n.t.Fatalf("flush: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("flush answered %s", resp.Status)
	}
}

// round is one round of the scenario: the three users at once, every
// connection paced (about 10 MB/s) or at loopback speed.
func (n *overlapNode) round(t *testing.T) {
	ana, bo, cy, p := n.users[0], n.users[1], n.users[2], n.pause
	parallel(
		func() {
			ana.files(t, 150, 100_000, 6, p)
			ana.download(t, 20_000_000, p)
		},
		func() {
			bo.files(t, 20, 1_000_000, 4, p)
			bo.download(t, 20_000_000, p)
		},
		func() { cy.files(t, 80, 100_000, 4, p) },
	)
}

// scenario: three rounds, a flushed sing-box restart after the first and an
// exporter restart after the second.
func (n *overlapNode) scenario(t *testing.T) {
	n.round(t)
	t.Log("flush, then restart sing-box")
	n.flush()
	n.server.restart()
	waitTCP(t, n.clashAddr, 20*time.Second)
	n.waitUp()
	n.round(t)
	t.Log("restart the exporter")
	n.exporter.restart()
	waitHTTP(t, n.metricsURL, 20*time.Second)
	n.waitUp()
	n.round(t)
}

// userErrors reports each user's error, upload plus download as quotas
// count them, and returns the largest, as a fraction.
func (n *overlapNode) userErrors(mf map[string]*dto.MetricFamily) (worst float64, report string) {
	var b strings.Builder
	for _, u := range n.users {
		up, down := u.origin.truth()
		gotUp, _ := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": u.name, "direction": "upload"})
		gotDown, _ := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": u.name, "direction": "download"})
		total := float64(up + down)
		e := math.Abs(gotUp+gotDown-total) / total
		worst = max(worst, e)
		fmt.Fprintf(&b, "%s: %.2f%% (metered %.0f of %.0f; up %+.0f, down %+.0f); ", u.name, 100*e,
			gotUp+gotDown, total, gotUp-float64(up), gotDown-float64(down))
	}
	est := sumDirections(mf, "singbox_exporter_attribution_estimated_bytes_total", nil)
	un := sumDirections(mf, "singbox_unattributed_traffic_bytes_total", nil)
	fmt.Fprintf(&b, "estimated %.0f, unattributed %.0f", est, un)
	return worst, b.String()
}

// runs is how many times each overlap test runs its whole scenario, each on
// a fresh node: a bound that held once could have held by luck.
const runs = 3

// TestOverlapClashAPI: three users at once with rate-limited real clients,
// a flushed sing-box restart and an exporter restart, run several times on
// fresh nodes. The target is every user within 1 % of the bytes
// that crossed; what is asserted is what holds in every run: the node total
// is exact, users plus unattributed add up to it, and no byte is misplaced
// that was not declared estimated. Each run's per-user error and the worst
// are logged (README, Performance).
func TestOverlapClashAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	worst := 0.0
	for i := range runs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			n := startOverlapNode(t, modeClash)
			n.scenario(t)
			mf := n.quiesce()
			e, report := n.userErrors(mf)
			t.Logf("run %d: %s", i, report)
			worst = max(worst, e)
			n.checkDeclared(mf)
		})
	}
	t.Logf("worst user error over %d runs: %.2f%% (target 1%%)", runs, 100*worst)
}

// TestOverlapLoopback is the same scenario at loopback speed, where most
// bytes move between polls: the error is reported (README), and what is
// asserted is that every misplaced byte was declared estimated.
func TestOverlapLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	for i := range runs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			n := startOverlapNode(t, modeClash)
			n.pause = 0
			n.scenario(t)
			mf := n.quiesce()
			_, report := n.userErrors(mf)
			t.Logf("run %d: %s", i, report)
			n.checkDeclared(mf)
		})
	}
}

// TestOverlapV2RayAPI is the same scenario in exact mode: exact.
func TestOverlapV2RayAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startOverlapNode(t, modeV2Ray)
	n.slack = restartSlack // the scenario restarts sing-box once
	n.scenario(t)
	mf := n.quiesce()
	n.check(mf, 0)
	_, report := n.userErrors(mf)
	t.Log(report)
}

// TestOverlapAPI is the same scenario on a stock sing-box measured through
// its API service's connection events, three times paced and once at
// loopback speed: every user within 1 % in every run (the target),
// and exact to the byte when paced (but for restartSlack).
func TestOverlapAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	worst := 0.0
	for i := range runs + 1 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			n := startOverlapNode(t, modeAPI)
			n.slack = restartSlack // the scenario restarts sing-box once
			if i == runs {
				n.pause = 0 // and once at loopback speed
			}
			n.scenario(t)
			mf := n.quiesce()
			e, report := n.userErrors(mf)
			t.Logf("run %d (pause %s): %s", i, n.pause, report)
			worst = max(worst, e)
			if e > 0.01 {
				t.Errorf("a user is %.2f%% off, want within 1%%", 100*e)
			}
			// Paced, every byte is a user's. At loopback speed a request
			// of a hundred bytes or so per user can miss the users (sent
			// between the flush and sing-box's exit, or on a connection
			// whose events sing-box dropped when a burst overflowed its
			// buffer): there each user is within the 1 % and the lost
			// bytes must show as unattributed.
			tolerance := 0.0
			if n.pause == 0 {
				tolerance = 1 // per direction: logged, not bounded
			}
			n.check(mf, tolerance)
		})
	}
	t.Logf("worst user error over %d runs: %.3f%% (target 1%%)", runs, 100*worst)
}

// TestAPIModeAcrossReloads: the node agent reloads sing-box (SIGHUP) on
// every change of users, which restarts its API service inside the same
// process. The event stream must come back after each reload and every
// byte still reach its user. (sing-box 1.14.1 leaves the old service's
// HTTP/2 connections open, answering every call with an empty 200: a
// client that kept its connection never heard from sing-box again.)
func TestAPIModeAcrossReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startOverlapNode(t, modeAPI)
	n.slack = 3 * restartSlack // three reloads
	for i := range 3 {
		parallel(
			func() { n.users[0].files(t, 20, 100_000, 4, n.pause) },
			func() { n.users[2].files(t, 20, 100_000, 4, n.pause) },
		)
		n.flush() // as the agent does before a reload
		if err := n.server.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // the old service stops, the new one starts
		n.waitUp()
		t.Logf("reload %d done", i+1)
	}
	n.users[1].files(t, 10, 1_000_000, 2, n.pause)
	mf := n.quiesce()
	_, report := n.userErrors(mf)
	t.Log(report)
	n.check(mf, 0)
}

// TestOverlapBudgets measures what the poll budget buys: one round of the
// overlap scenario per budget, each on a fresh node, with the worst user's
// error, the share declared estimated, the polls and the CPU of the
// exporter and of sing-box (whose difference between budgets is its share of
// the polling: the traffic is the same). Opt-in: BOXFLEET_MEASURE_BUDGET=1.
func TestOverlapBudgets(t *testing.T) {
	if os.Getenv("BOXFLEET_MEASURE_BUDGET") == "" {
		t.Skip("set BOXFLEET_MEASURE_BUDGET=1 to measure")
	}
	for _, budget := range []string{"0.01", "0.03", "0.05", "0.10"} {
		for run := range runs {
			n := startOverlapNode(t, modeClash, "--singbox.poll-budget="+budget)
			p0, _ := value(n.scrape(), "singbox_exporter_polls_total", map[string]string{"result": "success"})
			e0, s0 := cpuSeconds(t, n.exporter), cpuSeconds(t, n.server)
			start := time.Now()
			n.round(t)
			took := time.Since(start)
			e1, s1 := cpuSeconds(t, n.exporter), cpuSeconds(t, n.server)
			p1, _ := value(n.scrape(), "singbox_exporter_polls_total", map[string]string{"result": "success"})
			mf := n.quiesce()
			worst, _ := n.userErrors(mf)
			est := sumDirections(mf, "singbox_exporter_attribution_estimated_bytes_total", nil)
			node := sumDirections(mf, "singbox_traffic_bytes_total", nil)
			t.Logf("budget %s run %d: worst user error %.2f%%, estimated %.0f%% of the node's bytes, %.0f polls in %s, exporter CPU %.2f s, sing-box CPU %.2f s",
				budget, run, 100*worst, 100*est/node, p1-p0, took.Round(10*time.Millisecond), e1-e0, s1-s0)
			n.server.stop()
			n.exporter.stop()
			for _, u := range n.users {
				u.client.stop()
			}
		}
	}
}
