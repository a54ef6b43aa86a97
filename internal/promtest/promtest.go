// Package promtest runs a real Prometheus for integration tests, scraping
// fake targets whose counter values the test sets, so that code reading
// Prometheus is tested against Prometheus's own query semantics (lookback,
// staleness, counter values as floats).
package promtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

// Target serves an exposition whose samples the test sets. Down makes it
// answer 503, so Prometheus marks its series stale.
type Target struct {
	mu      sync.Mutex
	samples map[string]float64 // full series text (name{labels}) -> value
	down    bool
	srv     *httptest.Server
}

// NewTarget starts a target on loopback.
func NewTarget(t testing.TB) *Target {
	tg := &Target{samples: map[string]float64{}}
	tg.srv = httptest.NewServer(http.HandlerFunc(tg.serve))
	t.Cleanup(tg.srv.Close)
	return tg
}

// Addr is the host:port Prometheus scrapes.
func (tg *Target) Addr() string { return strings.TrimPrefix(tg.srv.URL, "http://") }

// Set sets one series, e.g. Set(`m{user="a"}`, 5).
func (tg *Target) Set(series string, v float64) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.samples[series] = v
}

// Add adds to one series and returns the new value.
func (tg *Target) Add(series string, d float64) float64 {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.samples[series] += d
	return tg.samples[series]
}

// Reset drops every series, as an exporter that lost its state would.
func (tg *Target) Reset() {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.samples = map[string]float64{}
}

// SetDown makes scrapes fail (true) or succeed again.
func (tg *Target) SetDown(down bool) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.down = down
}

func (tg *Target) serve(w http.ResponseWriter, r *http.Request) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	keys := make([]string, 0, len(tg.samples))
	for k := range tg.samples {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	for _, k := range keys {
		// Shortest exact form: integers print as integers, and fractions
		// (latencies, ratios) are not rounded away.
		fmt.Fprintf(w, "%s %s\n", k, strconv.FormatFloat(tg.samples[k], 'f', -1, 64))
	}
}

// Server is a running Prometheus.
type Server struct {
	URL  string
	API  promv1.API
	cmd  *exec.Cmd
	dir  string
	args []string
}

// StaticTarget is one scrape target with its target labels.
type StaticTarget struct {
	Addr   string
	Labels map[string]string
}

// Start runs Prometheus scraping targets every interval.
func Start(t testing.TB, interval time.Duration, targets ...StaticTarget) *Server {
	t.Helper()
	return StartWithRules(t, interval, "", targets...)
}

// StartWithRules is Start with a rule file (its YAML text; "" for none)
// evaluated every interval, for code that reads what real rule evaluation
// produces, such as the ALERTS series.
func StartWithRules(t testing.TB, interval time.Duration, rules string, targets ...StaticTarget) *Server {
	t.Helper()
	bin := testbin.Path(t, "prometheus")
	dir := t.TempDir()
	var sc strings.Builder
	fmt.Fprintf(&sc, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		model.Duration(interval), model.Duration(interval), model.Duration(interval))
	if rules != "" {
		rf := filepath.Join(dir, "rules.yml")
		if err := os.WriteFile(rf, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sc, "rule_files: [%q]\n", rf)
	}
	sc.WriteString("scrape_configs:\n  - job_name: test\n    static_configs:\n")
	for _, tg := range targets {
		fmt.Fprintf(&sc, "      - targets: [%q]\n        labels: {", tg.Addr)
		first := true
		for k, v := range tg.Labels {
			if !first {
				sc.WriteString(", ")
			}
			first = false
			fmt.Fprintf(&sc, "%s: %q", k, v)
		}
		sc.WriteString("}\n")
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(sc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	s := &Server{URL: "http://" + addr, dir: dir, args: []string{
		"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn",
	}}
	c, err := promapi.NewClient(promapi.Config{Address: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	s.API = promv1.NewAPI(c)
	s.start(t, bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(t testing.TB, bin string) {
	s.cmd = exec.Command(bin, s.args...)
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("prometheus did not become ready")
}

// Stop kills Prometheus (idempotent).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// Restart starts Prometheus again on the same address and data.
func (s *Server) Restart(t testing.TB) {
	s.Stop()
	s.start(t, testbin.Path(t, "prometheus"))
}

// Query runs an instant query and returns the vector.
func (s *Server) Query(q string) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := s.API.Query(ctx, q, time.Now())
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("not a vector: %s", v.Type())
	}
	return vec, nil
}

// WaitFor polls q until check accepts the result.
func (s *Server) WaitFor(t testing.TB, q string, timeout time.Duration, check func(model.Vector) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last model.Vector
	for time.Now().Before(deadline) {
		v, err := s.Query(q)
		if err == nil && check(v) {
			return
		}
		last = v
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("prometheus: %s never matched; last result: %v", q, last)
}

// FreeAddr returns a loopback address nothing listens on, never the same
// one twice in a process: the kernel may hand a just-closed port out again
// at once, and two servers of one test would then collide.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.m[addr] {
			handedOut.m[addr] = true
			return addr
		}
	}
	t.Fatal("no fresh loopback port")
	return ""
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

var handedOut = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}
