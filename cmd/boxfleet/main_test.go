package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "boxfleet-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// boxfleet builds the real binary once for the package: the tests run it
// as operators do, as separate processes.
func boxfleet(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { binPath = testbin.GoBuild(t, "./cmd/boxfleet", binDir) })
	if binPath == "" {
		t.Fatal("building boxfleet failed in an earlier test")
	}
	return binPath
}

// controller is one `boxfleet serve` process.
type controller struct {
	t       *testing.T
	bin     string
	dataDir string
	dsn     string
	addr    string
	cmd     *exec.Cmd
	log     *testsupport.SyncBuffer
	exited  chan struct{}
	// extra are more serve flags (listeners, proxies, timeouts).
	extra []string
	// apiURL, when set, is where admin commands go instead of addr.
	apiURL string
}

func newController(t *testing.T, dataDir, dsn string) *controller {
	return &controller{t: t, bin: boxfleet(t), dataDir: dataDir, dsn: dsn}
}

// cleanEnv keeps the caller's environment from pointing the binary at
// another controller or database.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BOXFLEET_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func (c *controller) start() {
	c.t.Helper()
	c.addr = testsupport.FreeAddr(c.t)
	args := []string{"serve", "--data.dir", c.dataDir, "--web.listen-address", c.addr,
		"--prometheus.url", "http://127.0.0.1:1", "--log.level", "debug"}
	if c.dsn != "" {
		args = append(args, "--db.dsn", c.dsn)
	}
	args = append(args, c.extra...)
	c.log = &testsupport.SyncBuffer{}
	c.cmd = exec.Command(c.bin, args...)
	c.cmd.Env = cleanEnv()
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.exited = make(chan struct{})
	go func() { c.cmd.Wait(); close(c.exited) }()
	c.t.Cleanup(c.stop)

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			c.t.Fatalf("boxfleet serve exited: %v\n%s", c.cmd.ProcessState, c.log)
		default:
		}
		resp, err := http.Get(c.url() + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("boxfleet serve not ready after 30s\n%s", c.log)
}

// stop ends the process the way an init system does and checks that it
// shuts down cleanly.
func (c *controller) stop() {
	if c.cmd == nil {
		return
	}
	select {
	case <-c.exited:
	default:
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
			c.t.Errorf("boxfleet serve ignored SIGTERM for 10s\n%s", c.log)
		}
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 && !c.t.Failed() {
		c.t.Errorf("boxfleet serve exited with %d\n%s", code, c.log)
	}
	c.cmd = nil
}

func (c *controller) url() string {
	if c.apiURL != "" {
		return c.apiURL
	}
	return "http://" + c.addr
}

// URLOverride points admin commands at another listener (the admin one).
func (c *controller) URLOverride(u string) { c.apiURL = u }
func (c *controller) tokenFile() string    { return filepath.Join(c.dataDir, "admin.token") }

type result struct {
	stdout, stderr string
	code           int
}

// run runs an admin command against the controller.
func (c *controller) run(args ...string) result {
	c.t.Helper()
	return c.runEnv([]string{"BOXFLEET_URL=" + c.url(), "BOXFLEET_TOKEN_FILE=" + c.tokenFile()}, args...)
}

func (c *controller) runEnv(env []string, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = cleanEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			c.t.Fatal(err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// ok runs a command that must succeed.
func (c *controller) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("boxfleet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// json runs a command with -o json and decodes its output.
func (c *controller) json(out any, args ...string) {
	c.t.Helper()
	raw := c.ok(append(args, "-o", "json")...)
	dec := json.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(out); err != nil {
		c.t.Fatalf("boxfleet %s -o json: %v\n%s", strings.Join(args, " "), err, raw)
	}
	if _, err := dec.Token(); err != io.EOF {
		c.t.Fatalf("boxfleet %s -o json printed more than one JSON value:\n%s", strings.Join(args, " "), raw)
	}
}

// fails runs a command that must fail with a message containing want.
func (c *controller) fails(want string, args ...string) {
	c.t.Helper()
	c.failsEnv(nil, want, args...)
}

func (c *controller) failsEnv(env []string, want string, args ...string) {
	c.t.Helper()
	if env == nil {
		env = []string{"BOXFLEET_URL=" + c.url(), "BOXFLEET_TOKEN_FILE=" + c.tokenFile()}
	}
	r := c.runEnv(env, args...)
	if r.code == 0 {
		c.t.Errorf("boxfleet %s succeeded, want a failure\n%s", strings.Join(args, " "), r.stdout)
		return
	}
	if !strings.Contains(r.stderr, want) {
		c.t.Errorf("boxfleet %s: stderr %q, want it to say %q", strings.Join(args, " "), r.stderr, want)
	}
	if r.stdout != "" {
		c.t.Errorf("boxfleet %s failed but printed to stdout: %q", strings.Join(args, " "), r.stdout)
	}
}

// httpGet calls the API directly with a bearer token.
func httpGet(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	return httpDo(t, "GET", url, token, "")
}

func httpDo(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// row finds the table row that starts with key and returns its fields.
func row(t *testing.T, table, key string) []string {
	t.Helper()
	for l := range strings.SplitSeq(table, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == key {
			return f
		}
	}
	t.Fatalf("no row %q in\n%s", key, table)
	return nil
}

func fieldsText(f []string) string { return strings.Join(f, " ") }

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}
