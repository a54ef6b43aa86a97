package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

func freePort(t *testing.T) int { return testsupport.FreePort(t) }

// origin is a local HTTP server that counts every byte that crosses its
// sockets: the ground truth a user's metered traffic is compared with.
type origin struct {
	addr     string
	read     atomic.Uint64 // the user's upload
	written  atomic.Uint64 // the user's download
	listener net.Listener
}

type countingConn struct {
	net.Conn
	o      *origin
	r, w   atomic.Uint64
	first  []byte
	start  time.Time
	closed atomic.Bool
	mu     sync.Mutex
}

var traceMu sync.Mutex

func tracef(format string, a ...any) {
	dir := os.Getenv("BOXFLEET_ORIGIN_TRACE")
	if dir == "" {
		return
	}
	traceMu.Lock()
	defer traceMu.Unlock()
	f, err := os.OpenFile(dir, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000000")}, a...)...)
	f.Close()
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.o.read.Add(uint64(n))
	c.r.Add(uint64(n))
	c.mu.Lock()
	if len(c.first) < 400 && n > 0 {
		c.first = append(c.first, b[:min(n, 400)]...)
	}
	c.mu.Unlock()
	if err != nil {
		tracef("origin %s conn %s read err %v (r=%d w=%d)", c.o.addr, c.RemoteAddr(), err, c.r.Load(), c.w.Load())
	}
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.o.written.Add(uint64(n))
	c.w.Add(uint64(n))
	if err != nil {
		tracef("origin %s conn %s write err %v (r=%d w=%d)", c.o.addr, c.RemoteAddr(), err, c.r.Load(), c.w.Load())
	}
	return n, err
}

func (c *countingConn) Close() error {
	if !c.closed.Swap(true) {
		c.mu.Lock()
		first := c.first
		c.mu.Unlock()
		tracef("origin %s conn %s closed after %s r=%d w=%d first=%q", c.o.addr, c.RemoteAddr(), time.Since(c.start), c.r.Load(), c.w.Load(), first)
	}
	return c.Conn.Close()
}

type countingListener struct {
	net.Listener
	o *origin
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tracef("origin %s accept %s", l.o.addr, c.RemoteAddr())
	return &countingConn{Conn: c, o: l.o, start: time.Now()}, nil
}

func startOrigin(t *testing.T) *origin {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{addr: l.Addr().String(), listener: l}
	mux := http.NewServeMux()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		pause, _ := time.ParseDuration(r.URL.Query().Get("pause"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
			if pause > 0 {
				w.(http.Flusher).Flush()
				time.Sleep(pause)
			}
		}
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(countingListener{l, o})
	t.Cleanup(func() { srv.Close() })
	return o
}

func (o *origin) truth() (up, down uint64) { return o.read.Load(), o.written.Load() }

// process is a child program the test starts, stops and restarts.
type process struct {
	t    *testing.T
	name string
	args []string
	log  string
	cmd  *exec.Cmd
}

func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{t: t, name: name, args: args, log: filepath.Join(t.TempDir(), filepath.Base(name)+".log")}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if d := os.Getenv("BOXFLEET_ORIGIN_TRACE"); d != "" {
			b, _ := os.ReadFile(p.log)
			os.WriteFile(fmt.Sprintf("%s.%s.%d.%d.log", d, filepath.Base(name), time.Now().UnixNano(), os.Getpid()), b, 0o644)
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", filepath.Base(name), b)
		}
	})
	return p
}

func (p *process) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.name, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	f.Close()
}

// stop ends the process gracefully (SIGTERM) and waits for it.
func (p *process) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

func (p *process) restart() {
	tracef("restart %s begin", filepath.Base(p.name))
	defer tracef("restart %s end", filepath.Base(p.name))
	p.stop()
	p.start()
}

// startExporter runs singbox_exporter against sing-box's Clash API at
// clashAddr, and its V2Ray stats API at v2ray unless that is empty, with its
// state in a fresh directory, and returns it with its listen address once
// /metrics answers.
func startExporter(t *testing.T, bin, clashAddr, v2ray string, extra ...string) (*process, string) {
	t.Helper()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(clashSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{
		"--web.listen-address=" + listen,
		"--singbox.clash-api=http://" + clashAddr,
		"--singbox.clash-secret-file=" + secretFile,
		"--state.path=" + filepath.Join(dir, "state.json"),
		"--log.level=debug",
	}
	if v2ray != "" {
		args = append(args, "--singbox.v2ray-api="+v2ray)
	}
	p := startProcess(t, bin, append(args, extra...)...)
	waitHTTP(t, "http://"+listen+"/metrics", 20*time.Second)
	return p, listen
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func singBoxCheck(t *testing.T, bin, config string) {
	t.Helper()
	if out, err := exec.Command(bin, "check", "-c", config).CombinedOutput(); err != nil {
		t.Fatalf("sing-box check: %v\n%s", err, out)
	}
}

func waitHTTP(t *testing.T, u string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within %s", u, timeout)
}

func waitTCP(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not accept within %s", addr, timeout)
}

// scrape fetches and parses an exposition; a parse error fails the test,
// which is how hostile user names are shown not to break it.
func scrape(t *testing.T, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing exposition: %v", err)
	}
	return mf
}

// value returns the sample of family whose labels include want.
func value(mf map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f, ok := mf[family]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

func binaries(t *testing.T, singbox string) (sb, exporter string) {
	return testbin.Path(t, singbox), testbin.GoBuild(t, "./cmd/singbox_exporter", t.TempDir())
}

// socksClient returns an HTTP client that reaches through a SOCKS5 proxy,
// with one TCP connection per request when fresh is set.
func socksClient(proxyAddr string, fresh bool) *http.Client {
	u := &url.URL{Scheme: "socks5", Host: proxyAddr}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: fresh},
		Timeout:   2 * time.Minute,
	}
}
