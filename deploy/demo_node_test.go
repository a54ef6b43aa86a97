package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// initDemoNode runs docker/demo-node/init.sh with the real sing-box, as the
// demo-node-init service does, into a fresh directory.
func initDemoNode(t *testing.T) (dir string, env []string) {
	t.Helper()
	root := testbin.RepoRoot(t)
	bin := t.TempDir()
	if err := os.Symlink(testbin.Path(t, "sing-box"), filepath.Join(bin, "sing-box")); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "NODE_DIR="+dir,
		"TEMPLATE="+filepath.Join(root, "docker/demo-node/sing-box.json"),
		fmt.Sprintf("NODE_USER=%d:%d", os.Getuid(), os.Getgid()))
	cmd := exec.Command("sh", filepath.Join(root, "docker/demo-node/init.sh"))
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init.sh: %v\n%s", err, out)
	}
	return dir, env
}

// The demo node's config comes out valid for sing-box (init.sh runs
// `sing-box check`), manageable by the agent, and consistent with the
// ports and API address compose wires up.
func TestDemoNodeConfig(t *testing.T) {
	dir, env := initDemoNode(t)
	cfgPath := filepath.Join(dir, "config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "@") {
		t.Fatalf("placeholders left in the config:\n%s", cfg)
	}
	inbounds, err := sbconfig.ParseInbounds(cfg, nil)
	if err != nil {
		t.Fatalf("the agent could not manage the demo config: %v", err)
	}
	var reality bool
	for _, in := range inbounds {
		reality = reality || (in.TLS != nil && in.TLS.Reality != nil && in.TLS.Reality.PublicKey != "")
	}
	if len(inbounds) != 2 || !reality {
		t.Errorf("inbounds = %+v, want a REALITY VLESS and a Shadowsocks inbound", inbounds)
	}

	_, composeDir := stage(t)
	p := load(t, composeDir, "demo-node")
	published := map[uint16]bool{}
	for _, pt := range p.Services["sing-box"].Ports {
		published[uint16(pt.Target)] = true
	}
	for _, in := range inbounds {
		if !published[in.Port] {
			t.Errorf("inbound %s listens on %d, which the sing-box service does not publish", in.Tag, in.Port)
		}
	}
	var raw struct {
		Experimental struct {
			ClashAPI struct {
				ExternalController string `json:"external_controller"`
			} `json:"clash_api"`
		} `json:"experimental"`
	}
	json.Unmarshal(cfg, &raw)
	want := "--singbox.clash-api=http://" + raw.Experimental.ClashAPI.ExternalController
	if !slices.Contains(p.Services["singbox-exporter"].Command, want) {
		t.Errorf("exporter flags %q lack %s", p.Services["singbox-exporter"].Command, want)
	}

	// A second run (a container restart) keeps the keys clients already have.
	cmd := exec.Command("sh", filepath.Join(testbin.RepoRoot(t), "docker/demo-node/init.sh"))
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init.sh again: %v\n%s", err, out)
	}
	if again, _ := os.ReadFile(cfgPath); string(again) != string(cfg) {
		t.Error("a second init.sh run rewrote the config (new keys would lock out every client)")
	}
}

// run-sing-box.sh leaves the pid of sing-box itself in the pid file, and
// SIGHUP to that pid reloads sing-box rather than killing it: the exporter's
// --singbox.pid-file reload depends on both.
func TestDemoNodePidFileReload(t *testing.T) {
	dir, env := initDemoNode(t)
	cfgPath := filepath.Join(dir, "config.json")
	// Free ports instead of the published ones, so the test can run
	// anywhere; everything else is the generated config.
	var cfg map[string]any
	b, _ := os.ReadFile(cfgPath)
	json.Unmarshal(b, &cfg)
	api := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg["experimental"].(map[string]any)["clash_api"].(map[string]any)["external_controller"] = api
	for _, in := range cfg["inbounds"].([]any) {
		in.(map[string]any)["listen"] = "127.0.0.1"
		in.(map[string]any)["listen_port"] = freePort(t)
	}
	b, _ = json.Marshal(cfg)
	os.WriteFile(cfgPath, b, 0o600)

	cmd := exec.Command("sh", filepath.Join(testbin.RepoRoot(t), "docker/demo-node/run-sing-box.sh"))
	cmd.Env = env
	log := &testsupport.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitAPI(t, api)
	pid, err := os.ReadFile(filepath.Join(dir, "sing-box.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(pid)); got != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("pid file holds %s, sing-box is %d (the script must exec it)", got, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// sing-box logs "sing-box started" again once the reload is done.
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(log.String(), "sing-box started") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("sing-box gone after SIGHUP: %v", err)
	}
	waitAPI(t, api)
}

func waitAPI(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/version")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sing-box's API at %s never answered: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int { return testsupport.FreePort(t) }
