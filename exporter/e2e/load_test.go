package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/exporter/clashapi/clashapitest"
)

// TestLoad runs the real exporter against a Clash API serving 10,000 open
// connections of 5,000 users, next to a second exporter forced to poll every
// second the way a naive per-inbound poller would, and reports CPU, RSS,
// polls and scrape latency of both. It takes a minute, so it runs only with
// BOXFLEET_LOAD=1 (make load).
func TestLoad(t *testing.T) {
	if os.Getenv("BOXFLEET_LOAD") == "" {
		t.Skip("set BOXFLEET_LOAD=1 to run the load test")
	}
	const conns, users, run = 10_000, 5_000, 60 * time.Second
	bin := binaries2(t)
	// Cleanups run last-in first-out: the exporters stop (and drop their
	// log streams) before the servers wait for open requests to end.
	srvDefault := clashapitest.NewServer(clashapitest.Body(conns, users))
	t.Cleanup(srvDefault.Close)
	srvNaive := clashapitest.NewServer(clashapitest.Body(conns, users))
	t.Cleanup(srvNaive.Close)

	start := func(url string, extra ...string) (*process, string) {
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := append([]string{"--web.listen-address=" + listen, "--singbox.clash-api=" + url,
			"--state.path=" + filepath.Join(t.TempDir(), "state.json")}, extra...)
		p := startProcess(t, bin, args...)
		waitHTTP(t, "http://"+listen+"/metrics", 20*time.Second)
		return p, "http://" + listen + "/metrics"
	}
	pd, urlD := start(srvDefault.URL)
	pn, urlN := start(srvNaive.URL, "--singbox.poll-budget=1", "--singbox.poll-interval=1s")
	cpu0D, cpu0N := cpuSeconds(t, pd), cpuSeconds(t, pn)
	time.Sleep(run)
	cpuD, cpuN := cpuSeconds(t, pd)-cpu0D, cpuSeconds(t, pn)-cpu0N

	report := func(name string, p *process, url string, cpu float64, polls int64) {
		var worst time.Duration
		for range 10 {
			s := time.Now()
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			worst = max(worst, time.Since(s))
		}
		perPoll := cpu / float64(polls)
		t.Logf("%-8s polls %4d in %s, exporter CPU %.2f%% of a core, %.1f ms per poll (%.2f ms per 1k conns), peak RSS %d MiB, slowest of 10 scrapes %s, sing-box cost at 20 µs/conn/poll %.1f%%",
			name, polls, run, 100*cpu/run.Seconds(), 1000*perPoll, 1000*perPoll/(conns/1000), rssPeakMiB(t, p), worst.Round(time.Millisecond),
			100*float64(polls)*conns*20e-6/run.Seconds())
		if worst > 100*time.Millisecond {
			t.Errorf("%s: a scrape took %s, want under 100ms", name, worst)
		}
	}
	report("default", pd, urlD, cpuD, srvDefault.Polls.Load())
	report("1s-naive", pn, urlN, cpuN, srvNaive.Polls.Load())
	if cpuD/run.Seconds() > 0.05 {
		t.Errorf("exporter CPU %.2f%% of a core, want under 5%%", 100*cpuD/run.Seconds())
	}
	if rss := rssPeakMiB(t, pd); rss > 50 {
		t.Errorf("exporter peak RSS %d MiB, want under 50", rss)
	}
}

func binaries2(t *testing.T) string {
	_, exporter := binaries(t, "sing-box")
	return exporter
}

// cpuSeconds reads user+system CPU time of a child from /proc.
func cpuSeconds(t *testing.T, p *process) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func rssPeakMiB(t *testing.T, p *process) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb / 1024
		}
	}
	return -1
}
