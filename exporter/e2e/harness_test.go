package e2e

import (
	"bytes"
	"context"
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
// sockets on the test's connections: the ground truth a user's metered
// traffic is compared with.
//
// A connection whose request is none of the test's (/bytes, /upload) is
// answered 404 and not counted. The origin listens on an ephemeral loopback
// port, and nothing stops another program on the machine from connecting to
// it: a Prometheus still scraping a target that had that port before (a
// scale test's httptest targets, scraped every 15 s, outlive a killed test
// run as a Prometheus scraping dead ports). Such a scrape never passes
// through sing-box. Prometheus 3.14's request to a five-digit port with a
// 10-99 s timeout is 364 bytes and Go's 404 answer 176 bytes: when the
// origin counted them, an exact mode came out "364 bytes up and 176 down
// short" now and then.
type origin struct {
	addr      string
	read      atomic.Uint64 // the user's upload
	written   atomic.Uint64 // the user's download
	strangers atomic.Uint64 // connections that were not the test's, not counted
	stranger  atomic.Pointer[string]
	listener  net.Listener
}

// countingConn counts into its origin until it turns out to be a stranger's,
// when it takes back what it counted.
type countingConn struct {
	net.Conn
	o             *origin
	mu            sync.Mutex
	read, written uint64
	stranger      bool
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.count(n, 0)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.count(0, n)
	return n, err
}

func (c *countingConn) count(r, w int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read += uint64(r)
	c.written += uint64(w)
	if !c.stranger {
		c.o.read.Add(uint64(r))
		c.o.written.Add(uint64(w))
	}
}

// disown stops counting the connection and takes back what it counted.
func (c *countingConn) disown(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stranger {
		return
	}
	c.stranger = true
	c.o.read.Add(-c.read)
	c.o.written.Add(-c.written)
	c.o.strangers.Add(1)
	c.o.stranger.CompareAndSwap(nil, &what)
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
	return &countingConn{Conn: c, o: l.o}, nil
}

type connKey struct{}

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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		r.Context().Value(connKey{}).(*countingConn).disown(fmt.Sprintf("%s %s from %s (%s)", r.Method, r.RequestURI, r.RemoteAddr, r.UserAgent()))
		w.Header().Set("Connection", "close")
		http.NotFound(w, r)
	})
	srv := &http.Server{Handler: mux, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}}
	go srv.Serve(countingListener{l, o})
	t.Cleanup(func() {
		srv.Close()
		if n := o.strangers.Load(); n > 0 {
			t.Logf("origin %s: %d connections not the test's, not counted (the first: %s)", o.addr, n, *o.stranger.Load())
		}
	})
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

// TestOriginIgnoresStrangers: a request that is not the test's, here the
// 364-byte scrape a Prometheus 3.14 sends a target on a five-digit port with
// a 10 s timeout, reaches the origin without passing through sing-box and
// must not count as the user's traffic; the test's own requests still count
// every byte.
func TestOriginIgnoresStrangers(t *testing.T) {
	o := startOrigin(t)
	scrape := "GET /metrics HTTP/1.1\r\nHost: " + o.addr + "\r\nUser-Agent: Prometheus/3.14.0\r\n" +
		"Accept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\n" +
		"Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
	if len(scrape) != 364 {
		t.Fatalf("the scrape is %d bytes, want 364", len(scrape))
	}
	c, err := net.Dial("tcp", o.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, scrape); err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(c) // the origin closes after its 404 (or the deadline ends it)
	c.Close()
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 404 ")) {
		t.Fatalf("the origin answered a scrape %q, want a 404", answer)
	}
	if up, down := o.truth(); up != 0 || down != 0 {
		t.Errorf("a scrape that never crossed sing-box counted %d bytes up and %d down", up, down)
	}
	if n := o.strangers.Load(); n != 1 {
		t.Errorf("%d strangers, want 1", n)
	}

	resp, err := http.Get("http://" + o.addr + "/bytes?n=1000")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 1000 {
		t.Fatalf("the test's own request got %d bytes, want 1000", len(body))
	}
	// The origin counts a write once it returned, which can be after the
	// client has read it.
	testsupport.Until(t, "the test's own request counted", 5*time.Second, func() bool {
		up, down := o.truth()
		return up >= 50 && down >= 1000
	}, func() string { up, down := o.truth(); return fmt.Sprintf("%d bytes up, %d down", up, down) })
}
