package accounting

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestScale measures accounting cycles at the size (100,000 users,
// 200 nodes, 1,000,000 series by default: 2,500 users per node, both
// directions) against a real Prometheus, first in this process, then in the
// real `boxfleet serve` whose memory it reads from /proc. Four cycles run
// on a fresh ledger: every series new, every series changed (the worst
// case), a tenth of the series changed, nothing changed. After each, the ledger and every user's period
// usage must equal the true traffic. Timings are logged, not asserted: the
// machine is shared. Run with:
//
//	BOXFLEET_SCALE=1 go test ./controller/accounting -run TestScale -v -timeout 60m
//
// BOXFLEET_SCALE_SERVE=0 skips boxfleet serve; BOXFLEET_SCALE_UNGATED=1
// runs the in-process cycles also without the change-timestamp gate, side
// by side (see scaleInProcess), and BOXFLEET_SCALE_FOLD_OTHER=1 also with
// the back end's other way of adding to the users' usage (each node commit
// or once a cycle, see store.FoldEachCommit), and BOXFLEET_SCALE_NOBUSY=1
// also without reading busy nodes whole (see Accountant.busy), and
// BOXFLEET_SCALE_BEFORE_GROUPS=1 also committing one node a transaction
// without the index on the users' periods, and
// BOXFLEET_SCALE_NORECENT=1 also without the exporters' recent series
// (BOXFLEET_SCALE_RECENT_WINDOW, default 2m, is the fake exporters'
// window, 0 for none); BOXFLEET_SCALE_CYCLE_PROFILE=dir and
// BOXFLEET_SCALE_PROM_PROFILE=seconds save CPU profiles of the in-process
// cycles (see cycleProfile);
// BOXFLEET_SCALE_PROFILE=dir saves boxfleet serve's CPU profiles there;
// BOXFLEET_SCALE_INTERVAL
// (default 1m) is its --accounting.interval, long enough for a cycle and
// a new generation to fit between two ticks.
func TestScale(t *testing.T) {
	sc := scaleFromEnv(t)
	t.Logf("scale: %d users, %d nodes x %d users x %d directions = %d series, scraped every %s",
		sc.users, sc.nodes, sc.perNode, sc.dirs, sc.series(), sc.scrape)
	f := newScaleFleet(t, sc)
	f.publish(t, 1)
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		t.Run("in-process", func(t *testing.T) { scaleInProcess(t, f, db) })
	})
	if os.Getenv("BOXFLEET_SCALE_SERVE") == "0" {
		return
	}
	bin := testbin.GoBuild(t, "./cmd/boxfleet", t.TempDir())
	t.Run("serve/sqlite", func(t *testing.T) { scaleServe(t, f, bin, storetest.NewSQLiteDB(t)) })
	t.Run("serve/mysql", func(t *testing.T) { scaleServe(t, f, bin, storetest.NewMySQLDB(t)) })
}

// The second 10 % cycle moves another tenth: the first follows a cycle in
// which every series moved, the second one like it, as in a steady busy
// hour.
var cycleNames = [5]string{"every series new", "every series changed", "10 % of series changed", "10 % changed again", "nothing changed"}

// generationOf is the generation the fleet serves in cycle i: the last
// cycle reads the third generation again.
func generationOf(i int) int { return min(i+1, 4) }

// scaled is one accountant of the in-process run, with its own ledger.
type scaled struct {
	name string
	a    *Accountant
	raw  *sql.DB
}

// scaleInProcess runs the cycles in this process. With
// BOXFLEET_SCALE_UNGATED=1 a second accountant on a fresh database of the
// same kind runs each cycle beside it without the change-timestamp gate
// (every moved node's series asked for, as before the gate), on the same
// generation and the same Prometheus: a before and after side by side.
// The two take turns going first, so neither always finds Prometheus's
// caches warm.
func scaleInProcess(t *testing.T, f *scaleFleet, db storetest.DB) {
	ctx := context.Background()
	runs := []scaled{newScaled(t, f, db, "")}
	// beside is a second accountant on a fresh database of the same kind,
	// changed by set: the "before" of a side-by-side measurement.
	beside := func(name string, set func(o *scaled)) {
		other := storetest.NewSQLiteDB(t)
		if db.Backend == "mysql" {
			other = storetest.NewMySQLDB(t)
		}
		o := newScaled(t, f, other, name)
		set(&o)
		runs = append(runs, o)
	}
	if os.Getenv("BOXFLEET_SCALE_UNGATED") == "1" {
		beside(" ungated (before)", func(o *scaled) { o.a.SkipQuiet = false })
	}
	if os.Getenv("BOXFLEET_SCALE_NOBUSY") == "1" {
		beside(" asking which series moved on busy nodes too (before)", func(o *scaled) { o.a.baseline.noBusy = true })
	}
	if os.Getenv("BOXFLEET_SCALE_NORECENT") == "1" {
		beside(" without the recent series (before)", func(o *scaled) { o.a.baseline.noRecent = true })
	}
	if os.Getenv("BOXFLEET_SCALE_BEFORE_GROUPS") == "1" {
		// One node to a commit transaction, and no index on the users'
		// periods: as before both.
		beside(" one node a transaction, no period index (before)", func(o *scaled) {
			o.a.baseline.nodesPerTx = 1
			if _, err := o.raw.Exec(map[string]string{"sqlite": `DROP INDEX users_period`, "mysql": `DROP INDEX users_period ON users`}[db.Backend]); err != nil {
				t.Fatal(err)
			}
		})
	}
	if os.Getenv("BOXFLEET_SCALE_FOLD_OTHER") == "1" {
		// The back end's other way of adding to the users' usage.
		beside("", func(o *scaled) {
			o.a.Store.FoldEachCommit = !o.a.Store.FoldEachCommit
			o.name = " usage added by each node commit"
			if !o.a.Store.FoldEachCommit {
				o.name = " usage folded once a cycle"
			}
		})
	}
	for i, name := range cycleNames {
		if i == 2 && f.sc.window > 0 {
			// The 10 % cycles come a busy while after the one in which
			// every series moved: the accountants keep cycling, as
			// boxfleet serve would, until those moves have left the
			// exporters' recent series.
			for time.Since(f.published) < f.sc.window {
				time.Sleep(f.sc.scrape)
				for _, r := range runs {
					if err := r.a.Cycle(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if g := generationOf(i); g != f.gen {
			f.publish(t, g)
		} else {
			// Every node scraped again since the last cycle, or the
			// cycle would have nothing new to read at all.
			time.Sleep(f.sc.scrape + 2*time.Second)
		}
		for j := range runs {
			r := runs[(i+j)%len(runs)]
			stopProfile := cycleProfile(t, f, fmt.Sprintf("%s-%d%s", db.Backend, i, r.name))
			start, cpu, reads, phases := time.Now(), cpuTime(), nodeReads(r.a), phaseSeconds(r.a)
			err := r.a.Cycle(ctx)
			took, cpuUsed := time.Since(start), cpuTime()-cpu
			stopProfile()
			if err != nil {
				t.Fatal(err)
			}
			logCycle(t, db.Backend+" in-process"+r.name, f.sc.series(), name, took)
			after := phaseSeconds(r.a)
			t.Logf("  phases: sweep %.2f s, waiting for Prometheus %.2f s, commit %.2f s",
				after[phaseSweep]-phases[phaseSweep], after[phaseQuery]-phases[phaseQuery], after[phaseCommit]-phases[phaseCommit])
			now := nodeReads(r.a)
			t.Logf("  nodes read: %.0f quiet (nothing read), %.0f through their recent series, %.0f asked which series moved, %.0f whole, of %d",
				now[readQuiet]-reads[readQuiet], now[readRecent]-reads[readRecent], now[readMoved]-reads[readMoved], now[readWhole]-reads[readWhole], f.sc.nodes)
			// The wall time swings with the neighbours' load on a shared
			// machine; this process's CPU time (the controller's work and the
			// fake targets' serving, not Prometheus's nor MySQL's) does less.
			t.Logf("  this process's CPU time during the cycle: %.2f s", cpuUsed.Seconds())
			// What a cycle costs when it reads nothing: it sweeps the users'
			// statuses twice, whatever moved.
			sweep := time.Now()
			if err := r.a.sweep(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("  one sweep of the users' statuses alone (a cycle runs two): %.2f s", time.Since(sweep).Seconds())
			checkLedger(t, r.raw, f.truth(f.gen))
		}
	}
}

// cycleProfile saves a CPU profile of one in-process cycle in
// BOXFLEET_SCALE_CYCLE_PROFILE's directory, when set, and returns what
// stops it. With BOXFLEET_SCALE_PROM_PROFILE=seconds it also saves
// Prometheus's own profile of the cycle's first seconds (its pprof
// endpoint profiles a fixed span), to tell its queries from its scrapes.
func cycleProfile(t *testing.T, fl *scaleFleet, name string) func() {
	dir := os.Getenv("BOXFLEET_SCALE_CYCLE_PROFILE")
	if dir == "" {
		return func() {}
	}
	file := filepath.Join(dir, strings.NewReplacer(" ", "_", "(", "", ")", "", ",", "").Replace(name))
	f, err := os.Create(file + ".pprof")
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	promDone := make(chan struct{})
	if secs := os.Getenv("BOXFLEET_SCALE_PROM_PROFILE"); secs != "" {
		go func() {
			defer close(promDone)
			resp, err := http.Get(fl.prom.URL + "/debug/pprof/profile?seconds=" + secs)
			if err != nil {
				t.Errorf("Prometheus's profile: %v", err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("Prometheus's profile: %s", resp.Status)
				return
			}
			out, err := os.Create(file + ".prometheus.pprof")
			if err == nil {
				_, err = io.Copy(out, resp.Body)
				out.Close()
			}
			if err != nil {
				t.Errorf("Prometheus's profile: %v", err)
			}
		}()
	} else {
		close(promDone)
	}
	return func() { pprof.StopCPUProfile(); f.Close(); <-promDone }
}

// phaseSeconds reads the accountant's time per phase so far.
// nodeReads reads how many nodes the accountant read so far, by how.
func nodeReads(a *Accountant) map[string]float64 {
	out := map[string]float64{}
	for _, h := range readHows {
		out[h] = testutil.ToFloat64(a.reads.WithLabelValues(h))
	}
	return out
}

func phaseSeconds(a *Accountant) map[string]float64 {
	out := map[string]float64{}
	for _, p := range phaseNames {
		out[p] = testutil.ToFloat64(a.phases.WithLabelValues(p))
	}
	return out
}

func newScaled(t *testing.T, f *scaleFleet, db storetest.DB, name string) scaled {
	s := db.Open(t)
	raw := rawDB(t, db)
	insertUsers(t, raw, f.sc.users)
	a, err := New(s, f.prom.URL, "scale", quietLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a.SkipQuiet = true // as boxfleet serve runs it
	// The lease outlives the slowest cycle: nothing renews it here.
	if ok, err := s.TryLease(context.Background(), LeaseName, "scale", time.Hour.Milliseconds()); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	return scaled{name: name, a: a, raw: raw}
}

// cycleTargets are the targets for the cycles of cycleNames.
var cycleTargets = [5]time.Duration{10 * time.Second, 10 * time.Second, 2 * time.Second, 2 * time.Second, time.Second}

func logCycle(t *testing.T, where string, series int, name string, d time.Duration) {
	t.Helper()
	target := cycleTargets[slices.Index(cycleNames[:], name)]
	verdict := fmt.Sprintf("within the %s target", target)
	if d > target {
		verdict = fmt.Sprintf("OVER the %s target", target)
	}
	t.Logf("%s: cycle over %d series, %s: %.2f s (%s)", where, series, name, d.Seconds(), verdict)
}

// scaleServe runs the real controller against the fleet with cycles far
// enough apart that each one sees a whole generation, and reads its cycle
// durations and bytes from /metrics and its peak memory from /proc.
func scaleServe(t *testing.T, f *scaleFleet, bin string, db storetest.DB) {
	dataDir := db.Dir
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	st, err := store.Open(context.Background(), db.DSN, dataDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	insertUsers(t, rawDB(t, storetest.DB{Backend: db.Backend, DSN: db.DSN, Dir: dataDir}), f.sc.users)
	st.Close()

	// A minute fits a cycle and a new generation between two ticks, and
	// keeps each node's last read within the exporters' recent window
	// (2 minutes less recentMargin, against a minute and a scrape), so
	// that the 10 % cycles read the recent series as they would at the
	// default 10 s.
	interval := time.Minute
	if v := os.Getenv("BOXFLEET_SCALE_INTERVAL"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	// The controller's first cycle reads the first generation: an earlier
	// run (the other back end's) left the fleet at its last.
	if f.gen != generationOf(0) {
		f.publish(t, generationOf(0))
	}
	addr := testsupport.FreeAddr(t)
	args := []string{"serve", "--data.dir=" + dataDir, "--prometheus.url=" + f.prom.URL, "--web.listen-address=" + addr,
		"--accounting.interval=" + interval.String(), "--controller.id=scale", "--log.level=warn"}
	if db.DSN != "" {
		args = append(args, "--db.dsn="+db.DSN)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	testsupport.DieWithParent(cmd) // a killed test run leaves no controller behind
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	m := &serveMetrics{t: t, url: "http://" + addr + "/metrics", tokenFile: filepath.Join(dataDir, "admin.token")}

	// The first cycle runs unwatched: its end is seen in the database, not
	// on /metrics, whose every scrape renders 100,000 users' metrics and
	// would count in the controller's peak memory.
	raw := rawDB(t, storetest.DB{Backend: db.Backend, DSN: db.DSN, Dir: dataDir})
	waitCommitted(t, raw, f, 2*interval)
	pid := cmd.Process.Pid
	logMemory(t, db.Backend+" boxfleet serve, after the first cycle, /metrics never scraped", pid)

	if dir := os.Getenv("BOXFLEET_SCALE_PROFILE"); dir != "" {
		m.profile(filepath.Join(dir, db.Backend))
	}
	var prevSum, prevBytes float64
	// prev holds /metrics as the last cycle left it: each cycle's share is
	// the difference.
	prev := map[string]float64{}
	delta := func(got map[string]float64, k string) float64 {
		d := got[k] - prev[k]
		prev[k] = got[k]
		return d
	}
	phase := func(got map[string]float64, p string) float64 {
		return delta(got, `boxfleet_accounting_phase_seconds_total{phase="`+p+`"}`)
	}
	reads := func(got map[string]float64, how string) float64 {
		return delta(got, `boxfleet_accounting_node_reads_total{how="`+how+`"}`)
	}
	cycles := 0
	for i, name := range cycleNames {
		if i == 2 && f.sc.window > 0 {
			// As in process, the 10 % cycles come once the moves of the
			// cycle in which every series moved have left the exporters'
			// recent series. The controller keeps cycling meanwhile, on
			// its own clock, and finds nothing new.
			for time.Since(f.published) < f.sc.window {
				cycles++
				got := m.waitCycles(cycles, 3*interval)
				if got["boxfleet_accounting_bytes_total"] != prevBytes {
					t.Errorf("a cycle with nothing new added %.0f bytes", got["boxfleet_accounting_bytes_total"]-prevBytes)
				}
				t.Logf("  a cycle with nothing new, while the recent window passes: %.2f s", got["boxfleet_accounting_duration_seconds_sum"]-prevSum)
				prevSum = got["boxfleet_accounting_duration_seconds_sum"]
				maps.Copy(prev, got)
			}
		}
		if g := generationOf(i); g != f.gen {
			f.publish(t, g)
		}
		cycles++
		got := m.waitCycles(cycles, 3*interval)
		logCycle(t, db.Backend+" boxfleet serve", f.sc.series(), name, time.Duration((got["boxfleet_accounting_duration_seconds_sum"]-prevSum)*float64(time.Second)))
		prevSum = got["boxfleet_accounting_duration_seconds_sum"]
		t.Logf("  phases: sweep %.2f s, waiting for Prometheus %.2f s, commit %.2f s", phase(got, phaseSweep), phase(got, phaseQuery), phase(got, phaseCommit))
		t.Logf("  nodes read: %.0f quiet (nothing read), %.0f through their recent series, %.0f asked which series moved, %.0f whole, of %d",
			reads(got, readQuiet), reads(got, readRecent), reads(got, readMoved), reads(got, readWhole), f.sc.nodes)
		// A cycle that saw half a generation would leave bytes for the next
		// one, and its time would not be the worst case.
		if want := float64(sum(f.truth(f.gen))); got["boxfleet_accounting_bytes_total"] != want {
			t.Errorf("after cycle %d the controller added %.0f bytes in all, want %.0f", i+1, got["boxfleet_accounting_bytes_total"], want)
		}
		if d := got["boxfleet_accounting_bytes_total"] - prevBytes; i == len(cycleNames)-1 && d != 0 {
			t.Errorf("the cycle with nothing changed added %.0f bytes", d)
		}
		prevBytes = got["boxfleet_accounting_bytes_total"]
	}
	logMemory(t, db.Backend+" boxfleet serve, whole run, /metrics scraped every 15 s", pid)
	checkLedger(t, raw, f.truth(f.gen))
}

// waitCommitted waits until the last node's counters of the current
// generation are in the ledger: nodes commit in name order, and a user's
// ledger on a node adds up to its counter (every counter starts at 0).
func waitCommitted(t *testing.T, raw *sql.DB, f *scaleFleet, timeout time.Duration) {
	t.Helper()
	n := f.sc.nodes - 1
	u := f.sc.userOf(n, f.sc.perNode-1)
	want := value(f.gen, n, u, 0)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var v int64
		err := raw.QueryRow(`SELECT COALESCE(SUM(upload), 0) FROM usage_days WHERE user_name = ? AND node = ?`,
			userName(u), nodeName(n)).Scan(&v)
		if err == nil && v == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the controller did not commit generation %d within %s", f.gen, timeout)
}

func logMemory(t *testing.T, what string, pid int) {
	t.Helper()
	hwm, rss := procMemory(t, pid)
	verdict := "within the 150 MiB target"
	if hwm > 150<<20 {
		verdict = "OVER the 150 MiB target"
	}
	t.Logf("%s: peak RSS (VmHWM) %.0f MiB, RSS now %.0f MiB (%s)", what, float64(hwm)/(1<<20), float64(rss)/(1<<20), verdict)
}

type serveMetrics struct {
	t         *testing.T
	url       string
	tokenFile string
}

// waitCycles polls /metrics until n accounting cycles have completed and
// returns the accounting metrics then. It polls every 15 s, as Prometheus
// would scrape: each scrape renders 100,000 users' metrics, which costs
// the controller memory and CPU of its own.
func (m *serveMetrics) waitCycles(n int, timeout time.Duration) map[string]float64 {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got, err := m.scrape()
		if err == nil && got["boxfleet_accounting_errors_total"] > 0 {
			m.t.Fatalf("an accounting cycle failed: %v", got)
		}
		if err == nil && got["boxfleet_accounting_duration_seconds_count"] >= float64(n) {
			if got["boxfleet_accounting_duration_seconds_count"] > float64(n) {
				m.t.Fatalf("missed a cycle: %v cycles done, waiting for %d", got["boxfleet_accounting_duration_seconds_count"], n)
			}
			return got
		}
		time.Sleep(15 * time.Second)
	}
	m.t.Fatalf("boxfleet serve did not finish accounting cycle %d within %s", n, timeout)
	return nil
}

// profile takes CPU profiles of the controller back to back, 20 s each,
// into dir (BOXFLEET_SCALE_PROFILE) until the test ends; `go tool pprof
// -top dir/*.pb.gz` adds them up. The accounting cycles are the only
// heavy work then, so the sum is their profile in the real process,
// /metrics scrapes and every other loop included.
func (m *serveMetrics) profile(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		m.t.Fatal(err)
	}
	base := strings.TrimSuffix(m.url, "/metrics")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			if err := m.save(ctx, base+"/debug/pprof/profile?seconds=20", filepath.Join(dir, fmt.Sprintf("cpu-%03d.pb.gz", i))); err != nil && ctx.Err() == nil {
				m.t.Logf("profile %d: %v", i, err)
				time.Sleep(time.Second)
			}
		}
	}()
}

// get asks the controller for an owner-only endpoint with the admin token;
// a status other than 200 is an error.
func (m *serveMetrics) get(ctx context.Context, url string) (*http.Response, error) {
	tok, err := os.ReadFile(m.tokenFile)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp, nil
}

// save writes an owner-only endpoint's answer to a file.
func (m *serveMetrics) save(ctx context.Context, url, file string) error {
	resp, err := m.get(ctx, url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func (m *serveMetrics) scrape() (map[string]float64, error) {
	resp, err := m.get(context.Background(), m.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "boxfleet_accounting_") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procMemory returns the process's peak and current resident set in bytes.
func procMemory(t *testing.T, pid int) (hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			hwm = kb << 10
		case "VmRSS":
			rss = kb << 10
		}
	}
	return hwm, rss
}
