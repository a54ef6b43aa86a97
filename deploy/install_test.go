package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

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
