// Package promtest runs a real Prometheus, or VictoriaMetrics, for
// integration tests, scraping fake targets whose counter values the test
// sets, so that code reading Prometheus is tested against the backend's
// own query semantics (lookback, staleness, counter values as floats, rule
// evaluation and ALERTS).
package promtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
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

// Update runs fn on the series (full series text -> value) under the lock
// scrapes take, so that a scrape sees all of fn's changes or none: for
// series that must move together, as an exporter's counters and a
// timestamp describing them do.
func (tg *Target) Update(fn func(samples map[string]float64)) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	fn(tg.samples)
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

// Server is a running metrics backend that answers the Prometheus HTTP
// API at URL: Prometheus itself, or VictoriaMetrics with vmalert for rules
// (see Backend).
type Server struct {
	URL     string
	API     promv1.API
	Backend Backend
	procs   []*proc
	rules   string // Prometheus's rule file, when it has one
}

// StaticTarget is one scrape target with its target labels.
type StaticTarget struct {
	Addr   string
	Labels map[string]string
}

// Start runs Prometheus scraping targets every interval.
func Start(t testing.TB, interval time.Duration, targets ...StaticTarget) *Server {
	t.Helper()
	return Prometheus.Start(t, Options{Interval: interval, Targets: targets})
}

// StartWithRules is Start with a rule file (its YAML text; "" for none)
// evaluated every interval, for code that reads what real rule evaluation
// produces, such as the ALERTS series.
func StartWithRules(t testing.TB, interval time.Duration, rules string, targets ...StaticTarget) *Server {
	t.Helper()
	return Prometheus.Start(t, Options{Interval: interval, Rules: rules, Targets: targets})
}

// proc is one program of a backend, started again as it was by Restart.
type proc struct {
	tool  string // a name tools/build.sh accepts
	args  []string
	ready string // URL that answers 200 once the program serves
	cmd   *exec.Cmd
}

func (s *Server) start(t testing.TB) {
	for _, p := range s.procs {
		p.start(t)
	}
}

func (p *proc) start(t testing.TB) {
	p.cmd = exec.Command(testbin.Path(t, p.tool), p.args...)
	p.cmd.Stderr = os.Stderr
	testsupport.DieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.tool, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not become ready", p.tool)
}

// Stop kills the backend's programs (idempotent).
func (s *Server) Stop() {
	for _, p := range slices.Backward(s.procs) {
		if c := p.cmd; c != nil && c.Process != nil && c.ProcessState == nil {
			c.Process.Kill()
			c.Wait()
		}
	}
}

// SetRules replaces Prometheus's rule file; the next Restart loads it.
func (s *Server) SetRules(t testing.TB, rules string) {
	t.Helper()
	if s.rules == "" {
		t.Fatal("promtest: SetRules on a backend started without Prometheus rules")
	}
	writeFile(t, s.rules, rules)
}

// Restart starts the backend again on the same addresses and data.
func (s *Server) Restart(t testing.TB) {
	s.Stop()
	s.start(t)
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
	t.Fatalf("%s: %s never matched; last result: %v", s.Backend, q, last)
}
