package soak

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestReloadKeepsExactCount isolates what the soak found on its exact
// node: a user's bytes go missing around the agent's reloads. A reload
// restarts sing-box's V2Ray counters; the agent flushes the meter before
// it, but then writes two files (fsynced), asks the Clash API for the
// version and opens its log stream before it signals sing-box. Bytes
// counted in that window are lost with the old counters. One user moves
// transfers back to back while other users come and go (each a reload);
// at the end, idle and polled, the exporter's count must equal what
// crossed.
func TestReloadKeepsExactCount(t *testing.T) {
	if testing.Short() {
		t.Skip("runs sing-box, its exporter and a controller")
	}
	if os.Getenv("BOXFLEET_SOAK_RELOAD_BUG") == "" {
		t.Skip("known bug, fails today: what sing-box counts between the agent's flush before a reload and the reload itself is lost with its counters; " +
			"the flush comes before two fsynced file writes, a Clash API call and opening the log stream (exporter/agent/apply.go): 471-676 KB lost over 10 reloads; " +
			"flushing right before the signal leaves about one transfer (66 KB) over 10; BOXFLEET_SOAK_RELOAD_BUG=1 runs it")
	}
	sbV2Ray := testbin.Path(t, "sing-box-v2ray")
	sb := testbin.Path(t, "sing-box")
	dir, bin := t.TempDir(), t.TempDir()
	boxfleet := testbin.GoBuild(t, "./cmd/boxfleet", bin)
	exporterBin := testbin.GoBuild(t, "./cmd/singbox_exporter", bin)

	cAddr := testsupport.FreeAddr(t)
	ctl := &svc{t: t, name: "controller", dir: dir, bin: boxfleet, args: []string{"serve", "--data.dir", filepath.Join(dir, "c"),
		"--web.listen-address", cAddr, "--prometheus.url", "http://" + testsupport.FreeAddr(t), "--accounting.interval", "1s"},
		ready: func() bool { return httpOK("http://" + cAddr + "/-/ready") }}
	ctl.start()
	ctl.waitReady(60 * time.Second)
	token, err := apiclient.ReadTokenFile(filepath.Join(dir, "c", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	api := &apiclient.Client{URL: "http://" + cAddr, Token: func() (string, error) { return token, nil }}
	ctx := context.Background()
	must := func(method, path string, body, out any) {
		t.Helper()
		if _, err := api.Call(ctx, method, path, nil, body, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	var created struct{ Token string }
	must("POST", "/api/v1/nodes", map[string]any{"name": "n"}, &created)
	var su store.User
	must("POST", "/api/v1/users", map[string]any{"name": "a"}, &su)

	n := &node{name: "n", dir: filepath.Join(dir, "n"), ssAddr: testsupport.FreeAddr(t), exporterAddr: testsupport.FreeAddr(t), exact: true,
		psk: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))}
	os.MkdirAll(n.dir, 0o700)
	write(t, filepath.Join(n.dir, "token"), created.Token)
	write(t, filepath.Join(n.dir, "clash.secret"), "s3cret")
	clash, v2ray := testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	host, port, _ := strings.Cut(n.ssAddr, ":")
	write(t, filepath.Join(n.dir, "config.json"), fmt.Sprintf(`{
  "log": {"level": "warn"},
  "inbounds": [{"type": "shadowsocks", "tag": "ss", "listen": %q, "listen_port": %s,
    "method": "2022-blake3-aes-128-gcm", "password": %q, "users": []}],
  "outbounds": [{"type": "direct"}],
  "experimental": {"clash_api": {"external_controller": %q, "secret": "s3cret"},
    "v2ray_api": {"listen": %q, "stats": {"enabled": true, "users": []}}}
}`, host, port, n.psk, clash, v2ray))
	n.singbox = &svc{t: t, name: "sing-box", dir: n.dir, bin: sbV2Ray, args: []string{"run", "-c", filepath.Join(n.dir, "config.json")},
		ready: func() bool { return dialOK(n.ssAddr) }}
	n.singbox.after = func() { write(t, filepath.Join(n.dir, "sing-box.pid"), strconv.Itoa(n.singbox.pid())) }
	n.singbox.start()
	n.exporter = &svc{t: t, name: "exporter", dir: n.dir, bin: exporterBin, args: []string{"--web.listen-address", n.exporterAddr,
		"--state.path", filepath.Join(n.dir, "state.json"), "--singbox.v2ray-api", v2ray,
		"--singbox.clash-api", "http://" + clash, "--singbox.clash-secret-file", filepath.Join(n.dir, "clash.secret"),
		"--controller.url", "http://" + cAddr, "--controller.token-file", filepath.Join(n.dir, "token"),
		"--node.name", "n", "--node.address", "127.0.0.1", "--singbox.config", filepath.Join(n.dir, "config.json"),
		"--singbox.binary", sbV2Ray, "--singbox.pid-file", filepath.Join(n.dir, "sing-box.pid"), "--singbox.reload-min-interval", "1s"},
		ready: func() bool { return httpOK("http://" + n.exporterAddr + "/metrics") }}
	n.exporter.start()

	u := &user{name: "a", node: n, client: testsupport.FreeAddr(t), origin: startOrigin(t, "127.0.0.1:0")}
	u.target = u.origin.addr
	cdir := filepath.Join(dir, "client")
	os.MkdirAll(cdir, 0o700)
	chost, cport, _ := strings.Cut(u.client, ":")
	write(t, filepath.Join(cdir, "config.json"), fmt.Sprintf(`{
  "log": {"level": "warn"},
  "inbounds": [{"type": "mixed", "listen": %q, "listen_port": %s}],
  "outbounds": [{"type": "shadowsocks", "server": %q, "server_port": %s, "method": "2022-blake3-aes-128-gcm", "password": %q}]
}`, chost, cport, host, port, n.psk+":"+su.Credentials.SSKey16))
	testsupport.Start(t, cdir, "client", sb, "run", "-c", filepath.Join(cdir, "config.json"))
	testsupport.Until(t, "a served", 60*time.Second, func() bool { return u.transfer(100, 1000) == nil })

	// Transfers back to back (10 ms apart) while ten users come and go.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			n.gate.RLock()
			if err := u.transfer(2048, 64<<10); err != nil {
				u.bad.Add(1)
			} else {
				u.ok.Add(1)
			}
			n.gate.RUnlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	for i := range 10 {
		must("POST", "/api/v1/users", map[string]any{"name": fmt.Sprintf("x%d", i)}, nil)
		time.Sleep(2500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	n.gate.Lock()
	n.waitPolled(t, time.Now())
	n.gate.Unlock()
	v, _ := readExporter(n.exporterAddr)
	counters := v.users
	upLo, upHi, downLo, downHi := u.truth()
	a, b := outside(counters["a"][0], upLo, upHi)
	c, d := outside(counters["a"][1], downLo, downHi)
	t.Logf("exporter up %d down %d; crossed up %d..%d down %d..%d; %d transfers, %d failed",
		counters["a"][0], counters["a"][1], upLo, upHi, downLo, downHi, u.ok.Load(), u.bad.Load())
	if a+b+c+d != 0 {
		t.Errorf("after 10 reloads the exporter is %d bytes short and %d over what crossed", a+c, b+d)
	}
}
