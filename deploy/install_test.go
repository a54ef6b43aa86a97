package deploy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

func installNode(t *testing.T, args ...string) (string, error) {
	t.Helper()
	script := filepath.Join(testbin.RepoRoot(t), "deploy", "install-node.sh")
	out, err := exec.Command("sh", append([]string{script}, args...)...).CombinedOutput()
	return string(out), err
}

// The script installs into a prefix exactly what a node needs, with flags
// the real exporter accepts and a unit systemd accepts.
func TestInstallNode(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	prefix := t.TempDir()
	token := filepath.Join(t.TempDir(), "node.token")
	if err := os.WriteFile(token, []byte("node-secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := installNode(t, "--binary", exe, "--prefix", prefix,
		"--controller-url", "https://ctl.example.com", "--token-file", token,
		"--node-name", "fra-1", "--node-address", "fra-1.example.com",
		"--label", "region=eu", "--label", "group=premium", "--singbox-config", "/opt/sing-box/config.json")
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}

	bin := filepath.Join(prefix, "usr/local/bin/singbox_exporter")
	want, _ := os.ReadFile(exe)
	got, err := os.ReadFile(bin)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed binary differs from the given one (%v)", err)
	}
	flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
	flags := readFile(t, flagsFile)
	for _, line := range []string{
		"--controller.url=https://ctl.example.com", "--controller.token-file=/etc/singbox_exporter/token",
		"--node.name=fra-1", "--node.address=fra-1.example.com",
		"--node.label=region=eu", "--node.label=group=premium", "--singbox.config=/opt/sing-box/config.json",
	} {
		if !strings.Contains("\n"+flags+"\n", "\n"+line+"\n") {
			t.Errorf("flags file lacks %q:\n%s", line, flags)
		}
	}
	if readFile(t, filepath.Join(prefix, "etc/singbox_exporter/token")) != "node-secret-token" {
		t.Error("token not copied")
	}
	for path, mode := range map[string]os.FileMode{
		bin: 0o755, flagsFile: 0o640, filepath.Join(prefix, "etc/singbox_exporter/token"): 0o640,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), mode, err)
		}
	}

	// The exporter parses the whole flags file; --help stops it before it
	// would start serving.
	if out, err := exec.Command(bin, "@"+flagsFile, "--help").CombinedOutput(); err != nil {
		t.Errorf("singbox_exporter rejects the installed flags: %v\n%s", err, lastLines(out, 3))
	}

	unit := readFile(t, filepath.Join(prefix, "etc/systemd/system/singbox_exporter.service"))
	if !strings.Contains(unit, "\nReadWritePaths=/opt/sing-box\n") {
		t.Error("unit does not let the agent write the directory of --singbox-config")
	}
	verifyUnit(t, prefix, unit, bin)

	// The exporter listens on every address (:9550): the flush goes to
	// loopback.
	dropIn := readFile(t, filepath.Join(prefix, dropInPath))
	if cmd := execStop(t, dropIn); !strings.HasSuffix(cmd, " http://127.0.0.1:9550/-/flush") {
		t.Errorf("drop-in does not flush the exporter at 127.0.0.1:9550:\n%s", dropIn)
	}
	verifyDropIn(t, dropIn)

	// Re-running keeps the operator's edits to the flags file.
	edited := flags + "--log.level=debug\n"
	os.WriteFile(flagsFile, []byte(edited), 0o640)
	if out, err := installNode(t, "--binary", exe, "--prefix", prefix); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if readFile(t, flagsFile) != edited {
		t.Error("a second run overwrote the edited flags file")
	}
}

// Without a controller the exporter only serves metrics: the agent's flags
// are left commented out, and the rest still parses.
func TestInstallNodeMetricsOnly(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	prefix := t.TempDir()
	if out, err := installNode(t, "--binary", exe, "--prefix", prefix); err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
	for _, line := range strings.Split(readFile(t, flagsFile), "\n") {
		if strings.HasPrefix(line, "--controller.") || strings.HasPrefix(line, "--node.") {
			t.Errorf("agent flag active without --controller-url: %s", line)
		}
	}
	if out, err := exec.Command(filepath.Join(prefix, "usr/local/bin/singbox_exporter"), "@"+flagsFile, "--help").CombinedOutput(); err != nil {
		t.Errorf("flags rejected: %v\n%s", err, lastLines(out, 3))
	}
}

func TestInstallNodeDryRunWritesNothing(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	prefix := t.TempDir()
	out, err := installNode(t, "--binary", exe, "--prefix", prefix, "--dry-run")
	if err != nil {
		t.Fatalf("install-node.sh --dry-run: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(prefix)
	if len(entries) != 0 {
		t.Errorf("--dry-run wrote %v", entries)
	}
	if !strings.Contains(out, "singbox_exporter.service") {
		t.Errorf("--dry-run did not say what it would do:\n%s", out)
	}
	if !strings.Contains(out, "10-boxfleet-flush.conf") || !strings.Contains(out, "ExecStop=-") {
		t.Errorf("--dry-run did not show sing-box's drop-in:\n%s", out)
	}
}

const dropInPath = "etc/systemd/system/sing-box.service.d/10-boxfleet-flush.conf"

// sing-box's drop-in POSTs to the exporter's /-/flush before sing-box
// stops, at the address of the flags file, with whichever of curl, wget
// and bash the node has. Each variant is run against a stand-in exporter,
// the way systemd would run it.
func TestInstallNodeFlushDropIn(t *testing.T) {
	binary := filepath.Join(t.TempDir(), "singbox_exporter")
	os.WriteFile(binary, []byte("#!/bin/sh\n"), 0o755)
	for _, c := range []struct {
		name, tool string
		hide       []string
	}{
		{"curl", "/curl ", nil},
		{"wget", "/wget ", []string{"curl"}},
		{"bash", "/bash -c ", []string{"curl", "wget"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var flushes atomic.Int32
			exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/-/flush" {
					http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
					return
				}
				// A flush takes a moment: the stop must wait for its answer.
				time.Sleep(300 * time.Millisecond)
				flushes.Add(1)
				fmt.Fprintln(w, "Flushed")
			}))
			defer exporter.Close()

			// A kept flags file whose exporter listens on one address.
			prefix := t.TempDir()
			flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
			os.MkdirAll(filepath.Dir(flagsFile), 0o750)
			os.WriteFile(flagsFile, []byte("--web.listen-address="+exporter.Listener.Addr().String()+"\n"), 0o640)
			cmd := exec.Command("sh", filepath.Join(testbin.RepoRoot(t), "deploy", "install-node.sh"), "--binary", binary, "--prefix", prefix)
			cmd.Env = append(os.Environ(), "PATH="+pathWithout(t, c.hide...))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("install-node.sh: %v\n%s", err, out)
			}

			dropIn := readFile(t, filepath.Join(prefix, dropInPath))
			if !strings.Contains(dropIn, "\n[Service]\n") {
				t.Errorf("drop-in has no [Service] section:\n%s", dropIn)
			}
			line := execStop(t, dropIn)
			addr := exporter.Listener.Addr().(*net.TCPAddr)
			target := fmt.Sprintf("http://%s/-/flush", addr)
			if c.name == "bash" {
				target = fmt.Sprintf("/dev/tcp/%s/%d ", addr.IP, addr.Port)
			}
			if !strings.Contains(line, c.tool) || !strings.Contains(line, " 15 ") || !strings.Contains(line, target) {
				t.Errorf("ExecStop=-%s: want %s with a 15 s limit, to %s", line, strings.TrimSpace(c.tool), target)
			}
			verifyDropIn(t, dropIn)

			run := exec.Command("sh", "-c", line)
			if out, err := run.CombinedOutput(); err != nil || flushes.Load() != 1 {
				t.Errorf("running ExecStop: %v, %d flushes, want 1\n%s", err, flushes.Load(), out)
			}
		})
	}
}

// execStop returns the drop-in's ExecStop command, checking that a failure
// of it cannot fail the stop (the "-" prefix).
func execStop(t *testing.T, dropIn string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(dropIn, "\n") {
		if cmd, ok := strings.CutPrefix(line, "ExecStop="); ok {
			found = append(found, cmd)
		}
	}
	if len(found) != 1 || !strings.HasPrefix(found[0], "-/") {
		t.Fatalf("want one ExecStop=-/absolute/command, got %q in:\n%s", found, dropIn)
	}
	return found[0][1:]
}

// pathWithout returns a PATH of links to every program on this one but the
// named ones: a node that lacks them.
func pathWithout(t *testing.T, hide ...string) string {
	t.Helper()
	if len(hide) == 0 {
		return os.Getenv("PATH")
	}
	dir := t.TempDir()
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if slices.Contains(hide, e.Name()) {
				continue
			}
			os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name())) // the first on PATH wins
		}
	}
	return dir
}

// verifyDropIn has systemd parse the drop-in over a stand-in sing-box
// unit: a quoting mistake is a warning there and a silently lost ExecStop
// on a node.
func verifyDropIn(t *testing.T, dropIn string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: drop-in not verified by systemd")
		return
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "sing-box.service")
	os.WriteFile(unit, []byte("[Unit]\nDescription=sing-box stand-in\n\n[Service]\nExecStart=/bin/sleep infinity\n"), 0o644)
	os.Mkdir(unit+".d", 0o755)
	os.WriteFile(filepath.Join(unit+".d", "10-boxfleet-flush.conf"), []byte(dropIn), 0o644)
	cmd := exec.Command(analyze, "verify", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify with the drop-in: %v\n%s", err, out)
	}
}

func TestInstallNodeRejectsBadInput(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	for name, args := range map[string][]string{
		"no binary":            {"--prefix", t.TempDir()},
		"missing binary":       {"--binary", "/nonexistent", "--prefix", t.TempDir()},
		"controller, no token": {"--binary", exe, "--prefix", t.TempDir(), "--controller-url", "http://c"},
		"label without =":      {"--binary", exe, "--prefix", t.TempDir(), "--label", "eu"},
		"unknown option":       {"--binary", exe, "--prefix", t.TempDir(), "--bogus"},
	} {
		if out, err := installNode(t, args...); err == nil {
			t.Errorf("%s: accepted\n%s", name, out)
		}
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`)

// verifyUnit runs systemd's own checks: `systemd-analyze verify` (which
// warns, on stderr, about any key or value it does not understand) and
// `systemd-analyze security` for the hardening score.
func verifyUnit(t *testing.T, prefix, unit, bin string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit not verified by systemd (apt-get install systemd)")
		return
	}
	// verify wants ExecStart's binary on this machine, so the copy points
	// at the installed one.
	dir := t.TempDir()
	path := filepath.Join(dir, "singbox_exporter.service")
	local := strings.Replace(unit, "ExecStart=/usr/local/bin/singbox_exporter", "ExecStart="+bin, 1)
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--root="+prefix,
		filepath.Join(prefix, "etc/systemd/system/singbox_exporter.service")).CombinedOutput()
	m := exposure.FindSubmatch(out)
	if m == nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, lastLines(out, 5))
		return
	}
	// systemd rates 0-2 as OK; an unhardened service scores about 9.6.
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.0 {
		t.Errorf("exposure level %.1f, want at most 2.0 (OK):\n%s", score, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
