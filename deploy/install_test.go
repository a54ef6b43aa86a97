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
	for line := range strings.SplitSeq(readFile(t, flagsFile), "\n") {
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
	for line := range strings.SplitSeq(dropIn, "\n") {
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

// exactModeBlock is what the operator must add to sing-box's config for
// exact mode, as install-node.sh prints it with the default address.
const exactModeBlock = `"experimental": {"v2ray_api": {"listen": "127.0.0.1:10085", "stats": {"enabled": true, "users": []}}}`

// writeStub writes an executable shell script.
func writeStub(t *testing.T, path, script string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// activeLines returns the flags file's lines that set flag.
func activeLines(flags, flag string) []string {
	var out []string
	for line := range strings.SplitSeq(flags, "\n") {
		if strings.HasPrefix(line, flag+"=") {
			out = append(out, line)
		}
	}
	return out
}

// --singbox-v2ray-binary installs the real sing-box with the V2Ray API over
// the node's sing-box, keeps the previous one, sets the exporter to exact
// mode, and prints the block for sing-box's config, which that sing-box
// accepts. A re-run with the same build keeps the previous one.
func TestInstallNodeExactMode(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	v2ray := testbin.Path(t, "sing-box-v2ray")
	prefix := t.TempDir()
	token := filepath.Join(t.TempDir(), "node.token")
	os.WriteFile(token, []byte("node-secret-token"), 0o600)
	sb := filepath.Join(prefix, "usr/local/bin/sing-box")
	const previous = "echo the previous sing-box\n"
	writeStub(t, sb, previous)
	args := []string{"--binary", exe, "--prefix", prefix, "--controller-url", "https://ctl.example.com",
		"--token-file", token, "--singbox-v2ray-binary", v2ray}

	// --dry-run says what it would do and changes nothing.
	out, err := installNode(t, append(args, "--dry-run")...)
	if err != nil {
		t.Fatalf("install-node.sh --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"+ ln -f " + sb + " " + sb + ".prev", "+ mv -f " + sb + ".tmp " + sb, "--singbox.v2ray-api=127.0.0.1:10085", exactModeBlock} {
		if !strings.Contains(out, want) {
			t.Errorf("--dry-run does not say %q:\n%s", want, out)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(prefix, "usr/local/bin")); len(entries) != 1 || readFile(t, sb) != "#!/bin/sh\n"+previous {
		t.Errorf("--dry-run changed usr/local/bin: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(prefix, "etc")); err == nil {
		t.Error("--dry-run wrote etc/")
	}

	out, err = installNode(t, args...)
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(v2ray)
	if got, err := os.ReadFile(sb); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed sing-box differs from the given one (%v)", err)
	}
	if fi, err := os.Stat(sb); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("sing-box mode %v (%v), want 0755", fi.Mode().Perm(), err)
	}
	if got := readFile(t, sb+".prev"); got != "#!/bin/sh\n"+previous {
		t.Errorf("sing-box.prev is not the previous sing-box: %q", got)
	}
	if _, err := os.Stat(sb + ".tmp"); err == nil {
		t.Error("temporary sing-box.tmp left behind")
	}

	flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
	flags := readFile(t, flagsFile)
	if got := activeLines(flags, "--singbox.v2ray-api"); !slices.Equal(got, []string{"--singbox.v2ray-api=127.0.0.1:10085"}) {
		t.Errorf("flags file sets %q, want --singbox.v2ray-api=127.0.0.1:10085 once:\n%s", got, flags)
	}
	// The agent checks configs with the sing-box that knows v2ray_api.
	if got := activeLines(flags, "--singbox.binary"); !slices.Equal(got, []string{"--singbox.binary=/usr/local/bin/sing-box"}) {
		t.Errorf("flags file sets %q, want the installed sing-box", got)
	}
	if out, err := exec.Command(exe, "@"+flagsFile, "--help").CombinedOutput(); err != nil {
		t.Errorf("singbox_exporter rejects the flags: %v\n%s", err, lastLines(out, 3))
	}

	// The printed block, as it is, passes the installed sing-box's check;
	// the script says the agent keeps its users.
	if !strings.Contains(out, "\n"+exactModeBlock+"\n") || !strings.Contains(out, `The agent fills "users"`) {
		t.Errorf("install-node.sh did not print the config block and who fills users:\n%s", out)
	}
	config := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(config, []byte("{"+exactModeBlock+"}\n"), 0o600)
	if b, err := exec.Command(sb, "check", "-c", config).CombinedOutput(); err != nil {
		t.Errorf("installed sing-box rejects the printed block: %v\n%s", err, b)
	}

	// Again with the same build: nothing to replace, the previous one stays.
	out, err = installNode(t, args...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if got := readFile(t, sb+".prev"); got != "#!/bin/sh\n"+previous {
		t.Errorf("a re-run with the same build replaced sing-box.prev")
	}
	if readFile(t, flagsFile) != flags {
		t.Errorf("a re-run changed the flags file:\n%s", readFile(t, flagsFile))
	}
}

// A kept flags file gets the exact-mode flag and nothing else changes in
// it; a kept address stays unless --v2ray-api-listen asks for another.
func TestInstallNodeExactModeKeepsFlags(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	v2ray := testbin.Path(t, "sing-box-v2ray")
	prefix := t.TempDir()
	if out, err := installNode(t, "--binary", exe, "--prefix", prefix); err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
	edited := readFile(t, flagsFile) + "--log.level=debug" // no final newline
	os.WriteFile(flagsFile, []byte(edited), 0o640)

	args := []string{"--binary", exe, "--prefix", prefix, "--singbox-v2ray-binary", v2ray}
	out, err := installNode(t, args...)
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	if got := readFile(t, flagsFile); got != edited+"\n--singbox.v2ray-api=127.0.0.1:10085\n" {
		t.Errorf("kept flags file not extended by the flag alone:\n%s", got)
	}
	if fi, err := os.Stat(flagsFile); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("flags mode %v (%v), want 0640", fi.Mode().Perm(), err)
	}
	if _, err := os.Stat(filepath.Join(prefix, "usr/local/bin/sing-box.prev")); err == nil {
		t.Error("sing-box.prev made up where there was no sing-box")
	}
	// Without the agent, the operator lists the users.
	if !strings.Contains(out, exactModeBlock) || !strings.Contains(out, "list every user's name there yourself") {
		t.Errorf("output:\n%s", out)
	}
	if out, err := exec.Command(filepath.Join(prefix, "usr/local/bin/singbox_exporter"), "@"+flagsFile, "--help").CombinedOutput(); err != nil {
		t.Errorf("singbox_exporter rejects the flags: %v\n%s", err, lastLines(out, 3))
	}

	// Another address: kept by default and printed as it is ...
	os.WriteFile(flagsFile, []byte(strings.Replace(readFile(t, flagsFile), ":10085", ":10086", 1)), 0o640)
	out, err = installNode(t, args...)
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	if got := activeLines(readFile(t, flagsFile), "--singbox.v2ray-api"); !slices.Equal(got, []string{"--singbox.v2ray-api=127.0.0.1:10086"}) || !strings.Contains(out, `"listen": "127.0.0.1:10086"`) {
		t.Errorf("kept address not kept: %q\n%s", got, out)
	}
	// ... and replaced when asked.
	out, err = installNode(t, append(args, "--v2ray-api-listen", "127.0.0.1:10087")...)
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	if got := activeLines(readFile(t, flagsFile), "--singbox.v2ray-api"); !slices.Equal(got, []string{"--singbox.v2ray-api=127.0.0.1:10087"}) || !strings.Contains(out, `"listen": "127.0.0.1:10087"`) {
		t.Errorf("address not replaced: %q\n%s", got, out)
	}
}

// A sing-box without the V2Ray API (or one that does not run) is refused
// with an error that says why, before anything is installed.
func TestInstallNodeRefusesSingBoxWithoutV2RayAPI(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	release, v2ray := testbin.Path(t, "sing-box"), testbin.Path(t, "sing-box-v2ray")
	version := func(tags string) string {
		return "cat <<EOF\nsing-box version 1.14.1\n\nEnvironment: go1.26.8 linux/amd64 (with_v2ray_api elsewhere)\nTags: " + tags + "\nCGO: enabled\nEOF\n"
	}
	for name, c := range map[string]struct{ script, binary, want string }{
		"release build": {binary: release, want: "lack with_v2ray_api"},
		"tags without":  {script: version("with_gvisor,with_quic,with_clash_api"), want: "lack with_v2ray_api"},
		"lookalike tag": {script: version("with_clash_api,with_v2ray_api_extra"), want: "lack with_v2ray_api"},
		"no Tags line":  {script: "echo sing-box version 1.14.1\n", want: "lack with_v2ray_api"},
		"does not run":  {script: "echo exec format error >&2; exit 126\n", want: "does not run"},
	} {
		t.Run(name, func(t *testing.T) {
			bin := c.binary
			if bin == "" {
				bin = filepath.Join(t.TempDir(), "sing-box")
				writeStub(t, bin, c.script)
			}
			prefix := t.TempDir()
			out, err := installNode(t, "--binary", exe, "--prefix", prefix, "--singbox-v2ray-binary", bin)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(out, "install-node: ") || !strings.Contains(out, c.want) || !strings.Contains(out, bin) {
				t.Errorf("error does not say %q about %s:\n%s", c.want, bin, out)
			}
			if c.want != "does not run" && !strings.Contains(out, "tools/build.sh sing-box-v2ray") {
				t.Errorf("error does not say how to get a build with the API:\n%s", out)
			}
			if entries, _ := os.ReadDir(prefix); len(entries) != 0 {
				t.Errorf("installed %v before refusing", entries)
			}
		})
	}
	for name, args := range map[string][]string{
		"listen without the binary": {"--v2ray-api-listen", "127.0.0.1:10085"},
		"listen without a port":     {"--singbox-v2ray-binary", v2ray, "--v2ray-api-listen", "127.0.0.1"},
		"listen with a quote":       {"--singbox-v2ray-binary", v2ray, "--v2ray-api-listen", `127.0.0."1:10085`},
		"listen with a sed special": {"--singbox-v2ray-binary", v2ray, "--v2ray-api-listen", "a&b|c:10085"},
		"listen with a bad port":    {"--singbox-v2ray-binary", v2ray, "--v2ray-api-listen", "127.0.0.1:x"},
		"missing binary":            {"--singbox-v2ray-binary", "/nonexistent/sing-box"},
	} {
		if out, err := installNode(t, append([]string{"--binary", exe, "--prefix", t.TempDir()}, args...)...); err == nil {
			t.Errorf("%s: accepted\n%s", name, out)
		}
	}
}

// API mode on a stock sing-box: the flags, a secret written once and kept,
// and a printed service block that the stock release build accepts.
func TestInstallNodeAPIMode(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	prefix := t.TempDir()
	args := []string{"--binary", exe, "--prefix", prefix, "--singbox-api", "127.0.0.1:9091"}
	out, err := installNode(t, args...)
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
	flags := readFile(t, flagsFile)
	if got := activeLines(flags, "--singbox.api"); !slices.Equal(got, []string{"--singbox.api=127.0.0.1:9091"}) {
		t.Errorf("flags file sets %q, want --singbox.api=127.0.0.1:9091 once:\n%s", got, flags)
	}
	if got := activeLines(flags, "--singbox.api-secret-file"); !slices.Equal(got, []string{"--singbox.api-secret-file=/etc/singbox_exporter/api-secret"}) {
		t.Errorf("flags file sets %q for the secret file", got)
	}
	if b, err := exec.Command(exe, "@"+flagsFile, "--help").CombinedOutput(); err != nil {
		t.Errorf("singbox_exporter rejects the flags: %v\n%s", err, lastLines(b, 3))
	}
	secretFile := filepath.Join(prefix, "etc/singbox_exporter/api-secret")
	secret := readFile(t, secretFile)
	if len(secret) != 32 || strings.Trim(secret, "0123456789abcdef") != "" {
		t.Errorf("api-secret is %q, want 32 hex digits", secret)
	}
	if fi, err := os.Stat(secretFile); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("api-secret mode %v (%v), want 0640", fi.Mode().Perm(), err)
	}
	if strings.Contains(out, secret) {
		t.Error("install-node.sh printed the secret")
	}
	// The printed block, with the secret filled in, passes a stock
	// sing-box's check.
	const block = `"services": [{"type": "api", "tag": "boxfleet-api", "listen": "127.0.0.1", "listen_port": 9091, "secret": "SECRET"}]`
	if !strings.Contains(out, "\n"+block+"\n") {
		t.Fatalf("install-node.sh did not print the service block:\n%s", out)
	}
	config := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(config, []byte("{"+strings.Replace(block, "SECRET", secret, 1)+"}\n"), 0o600)
	if b, err := exec.Command(testbin.Path(t, "sing-box"), "check", "-c", config).CombinedOutput(); err != nil {
		t.Errorf("stock sing-box rejects the printed block: %v\n%s", err, b)
	}

	// A re-run keeps the secret and the flags; a kept flags file without
	// the API flags gets them.
	if out, err := installNode(t, args...); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if readFile(t, secretFile) != secret || readFile(t, flagsFile) != flags {
		t.Error("a re-run changed the secret or the flags")
	}
	os.WriteFile(flagsFile, []byte("--web.listen-address=:9550\n"), 0o640)
	if out, err := installNode(t, args...); err != nil {
		t.Fatalf("third run: %v\n%s", err, out)
	}
	if got := readFile(t, flagsFile); got != "--web.listen-address=:9550\n--singbox.api=127.0.0.1:9091\n--singbox.api-secret-file=/etc/singbox_exporter/api-secret\n" {
		t.Errorf("kept flags file became:\n%s", got)
	}
	if out, err := installNode(t, "--binary", exe, "--prefix", t.TempDir(), "--singbox-api", "9091"); err == nil || !strings.Contains(out, "wants HOST:PORT") {
		t.Errorf("a bad address was accepted: %v\n%s", err, out)
	}
}

// The fleet's device key: installed readable by the exporter only, named in
// the flags file, added to a kept flags file, never printed; a short or
// missing key is refused before anything is written.
func TestInstallNodeDeviceKey(t *testing.T) {
	exe := staticBuild(t, "./cmd/singbox_exporter")
	prefix := t.TempDir()
	const key = "bXktZmxlZXQta2V5LW9mLWVub3VnaC1ieXRlcy0xMjM0NTY3OA=="
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--binary", exe, "--prefix", prefix, "--singbox-api", "127.0.0.1:9091", "--device-key-file", keyFile}
	out, err := installNode(t, args...)
	if err != nil {
		t.Fatalf("install-node.sh: %v\n%s", err, out)
	}
	if strings.Contains(out, key) {
		t.Errorf("install-node.sh printed the device key:\n%s", out)
	}
	flagsFile := filepath.Join(prefix, "etc/singbox_exporter/flags")
	flags := readFile(t, flagsFile)
	if got := activeLines(flags, "--collector.device-key-file"); !slices.Equal(got, []string{"--collector.device-key-file=/etc/singbox_exporter/device-key"}) {
		t.Errorf("flags file sets %q, want --collector.device-key-file=/etc/singbox_exporter/device-key once:\n%s", got, flags)
	}
	if got := activeLines(flags, "--singbox.api"); !slices.Equal(got, []string{"--singbox.api=127.0.0.1:9091"}) {
		t.Errorf("the API flags went missing beside the key: %q", got)
	}
	if b, err := exec.Command(exe, "@"+flagsFile, "--help").CombinedOutput(); err != nil {
		t.Errorf("singbox_exporter rejects the flags: %v\n%s", err, lastLines(b, 3))
	}
	installed := filepath.Join(prefix, "etc/singbox_exporter/device-key")
	if got := readFile(t, installed); got != key+"\n" {
		t.Errorf("installed key differs from the given one")
	}
	if fi, err := os.Stat(installed); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("device-key mode %v (%v), want 0640 like the API secret", fi.Mode().Perm(), err)
	}

	// A re-run with the same key changes nothing; a kept flags file
	// without the flag gets it; a new key replaces the installed one.
	if out, err := installNode(t, args...); err != nil || readFile(t, flagsFile) != flags {
		t.Fatalf("second run changed the flags (%v):\n%s", err, out)
	}
	os.WriteFile(flagsFile, []byte("--web.listen-address=:9550\n--singbox.api=127.0.0.1:9091\n"), 0o640)
	if out, err := installNode(t, args...); err != nil {
		t.Fatalf("third run: %v\n%s", err, out)
	}
	if got := readFile(t, flagsFile); got != "--web.listen-address=:9550\n--singbox.api=127.0.0.1:9091\n--collector.device-key-file=/etc/singbox_exporter/device-key\n" {
		t.Errorf("kept flags file became:\n%s", got)
	}
	const newKey = "another-fleet-key-0123456789abcdef"
	os.WriteFile(keyFile, []byte(newKey), 0o600)
	if out, err := installNode(t, args...); err != nil || strings.Contains(out, newKey) {
		t.Fatalf("run with a new key: %v\n%s", err, out)
	}
	if readFile(t, installed) != newKey {
		t.Error("a new key did not replace the installed one")
	}

	// Dry run: says what it would do, writes nothing, prints no key.
	dry := t.TempDir()
	out, err = installNode(t, "--binary", exe, "--prefix", dry, "--device-key-file", keyFile, "--dry-run")
	if err != nil || strings.Contains(out, newKey) || !strings.Contains(out, "device-key") {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dry, "etc/singbox_exporter/device-key")); err == nil {
		t.Error("the dry run installed the key")
	}

	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("  too-short \n"), 0o600)
	for name, file := range map[string]string{"short key": short, "missing key": filepath.Join(t.TempDir(), "none")} {
		p := t.TempDir()
		out, err := installNode(t, "--binary", exe, "--prefix", p, "--device-key-file", file)
		if err == nil {
			t.Errorf("%s: accepted\n%s", name, out)
		}
		if strings.Contains(out, "too-short") {
			t.Errorf("%s: the key's bytes were printed:\n%s", name, out)
		}
		if _, err := os.Stat(filepath.Join(p, "etc/singbox_exporter/flags")); err == nil {
			t.Errorf("%s: refused, but the flags file was written", name)
		}
	}
}
