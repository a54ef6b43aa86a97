package accounting

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// gateNode is a fake singbox_exporter as the accounting sees it: the
// per-user counters, the epoch and, unless it plays an older exporter, the
// change timestamp, which moves in the very scrape whose per-user series
// differ from the one before. change edits them in one update of the
// target, so a scrape never shows new values with an old timestamp.
type gateNode struct {
	*promtest.Target
	down  bool
	stamp int64 // the last change timestamp handed out, ms
}

func newGateNode(t *testing.T, stamped bool) *gateNode {
	e := &gateNode{Target: promtest.NewTarget(t), stamp: 1_800_000_000_000}
	e.Set(epochMetric, 1_700_000_000)
	if stamped {
		e.Set(changeMetric, e.nextStamp())
	}
	return e
}

// nextStamp is a change timestamp the exporter never showed, one
// millisecond on: the smallest step the real one takes (the later of now
// and its last plus 1 ms), and the hardest to see. VictoriaMetrics's
// changes() took a step that small of a value near 1.8e9 for a rounding
// error, and the gate then missed a series new on a node.
func (e *gateNode) nextStamp() float64 {
	e.stamp++
	return float64(e.stamp) / 1e3
}

// change runs fn on the exporter's series and moves the change timestamp,
// if it is shown, when the per-user series differ afterwards.
func (e *gateNode) change(fn func(ex map[string]float64)) {
	e.Update(func(ex map[string]float64) {
		before := userSeries(ex)
		fn(ex)
		if _, ok := ex[changeMetric]; ok && !maps.Equal(before, userSeries(ex)) {
			ex[changeMetric] = e.nextStamp()
		}
	})
}

// setDown makes the exporter's scrapes fail, or succeed again.
func (e *gateNode) setDown(down bool) {
	e.down = down
	e.SetDown(down)
}

// userSeries is a copy of the per-user series among an exposition's.
func userSeries(ex map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range ex {
		if strings.HasPrefix(k, metric+"{") {
			out[k] = v
		}
	}
	return out
}

// ledgerIsTruth stops the test unless alice's, bob's and carol's ledgers
// hold what truth (user/direction -> bytes) says crossed.
func ledgerIsTruth(t *testing.T, s *store.Store, truth map[string]int64, step string) {
	t.Helper()
	for _, u := range []string{"alice", "bob", "carol"} {
		up, down, err := s.LedgerTotal(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if up != truth[u+"/upload"] || down != truth[u+"/download"] {
			t.Errorf("%s: %s: ledger up=%d down=%d, true up=%d down=%d", step, u, up, down, truth[u+"/upload"], truth[u+"/download"])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// gateAccountant is an accountant with the gate on, reading the back end
// at url and holding the lease.
func gateAccountant(t *testing.T, s *store.Store, url string) *Accountant {
	t.Helper()
	a, err := New(s, url, "c1", quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.SkipQuiet = true
	if ok, err := s.TryLease(context.Background(), LeaseName, "c1", 600_000); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	return a
}

// queryLog sits between the accountant and the backend and keeps the
// queries it was asked.
type queryLog struct {
	mu      sync.Mutex
	queries []string
	URL     string
	// refuse answers bad_data to the queries it matches, as a back end
	// that does not know some of the syntax would.
	refuse func(q string) bool
}

func newQueryLog(t *testing.T, backend string) *queryLog {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	ql := &queryLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		q := r.URL.Query().Get("query")
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("query") != "" {
			q = form.Get("query")
		}
		ql.mu.Lock()
		ql.queries = append(ql.queries, q)
		refuse := ql.refuse != nil && ql.refuse(q)
		ql.mu.Unlock()
		if refuse {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"status":"error","errorType":"bad_data","error":"unexpected <@>"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ql.URL = srv.URL
	return ql
}

// seriesAsked tells which nodes' per-user series were asked for since the
// last call, in any of the ways the accountant asks for them.
func (ql *queryLog) seriesAsked() map[string]bool {
	ql.mu.Lock()
	defer ql.mu.Unlock()
	out := map[string]bool{}
	for _, q := range ql.queries {
		for _, n := range []string{"n1", "n2", "n3"} {
			for _, sel := range []string{metric + `{node=`, metric + `",node=`, metric + `|` + epochMetric + `",node=`} {
				if strings.Contains(q, sel+strconv.Quote(n)) {
					out[n] = true
				}
			}
		}
	}
	ql.queries = nil
	return out
}

// TestGateExact drives the change-timestamp gate through what can go wrong
// with it, on each backend: after every step the ledger is exact, and a
// node whose timestamp stood still has none of its series asked for, while
// a node without one (n3, an older exporter) keeps the per-series path.
func TestGateExact(t *testing.T) {
	promtest.Each(t, func(t *testing.T, b promtest.Backend) {
		ctx := context.Background()
		nodes := map[string]*gateNode{"n1": newGateNode(t, true), "n2": newGateNode(t, true), "n3": newGateNode(t, false)}
		var targets []promtest.StaticTarget
		for _, n := range []string{"n1", "n2", "n3"} {
			targets = append(targets, promtest.StaticTarget{Addr: nodes[n].Addr(), Labels: map[string]string{"node": n}})
		}
		srv := b.Start(t, promtest.Options{Interval: 200 * time.Millisecond, Targets: targets})
		ql := newQueryLog(t, srv.URL)
		s := storetest.SQLite(t)
		truth := map[string]int64{}
		a := gateAccountant(t, s, ql.URL)
		move := func(ex map[string]float64, user, dir string, n int64) {
			ex[series(user, dir)] += float64(n)
			truth[user+"/"+dir] += n
		}
		// settle waits until the backend answers every up node's current
		// series: a probe series moves on every settle, and the scrape
		// that carries it carries the rest. Then it waits for the node's
		// per-user series through the selector the accountant asks with:
		// VictoriaMetrics answers a selector it answered in the last few
		// seconds from a cache that it drops at most every 10 s, so a new
		// series stays out of it that long. Its default 30 s
		// -search.latencyOffset outlasts that; the 2.2 s these tests run
		// with does not.
		settle := func() {
			t.Helper()
			probes := map[string]float64{}
			for name, e := range nodes {
				if !e.down {
					probes[name] = e.Add("boxfleet_test_probe", 1)
				}
			}
			for name, want := range probes {
				e := nodes[name]
				srv.WaitFor(t, fmt.Sprintf(`boxfleet_test_probe{node=%q}`, name), 30*time.Second,
					func(v model.Vector) bool { return len(v) == 1 && float64(v[0].Value) == want })
				var users map[string]float64
				e.Update(func(ex map[string]float64) { users = userSeries(ex) })
				srv.WaitFor(t, fmt.Sprintf(`%s{node=%q}`, metric, name), 30*time.Second, func(v model.Vector) bool {
					got := map[string]float64{}
					for _, s := range v {
						got[series(string(s.Metric["user"]), string(s.Metric["direction"]))] = float64(s.Value)
					}
					return maps.Equal(got, users)
				})
			}
		}
		check := func(name string) {
			t.Helper()
			ledgerIsTruth(t, s, truth, name)
		}
		// step changes the exporters, waits until the backend scraped
		// them, runs a cycle and checks the ledger; it returns the nodes
		// whose series the cycle asked for.
		step := func(name string, fn func()) map[string]bool {
			t.Helper()
			fn()
			settle()
			ql.seriesAsked()
			if err := a.Cycle(ctx); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			check(name)
			return ql.seriesAsked()
		}
		// quiet checks that nodes had none of their series asked for, and
		// the rest of the stamped ones did. Prometheus is exact about
		// windows; VictoriaMetrics's changes() also counts the step into
		// the window, which can only make it read more.
		quiet := func(name string, asked map[string]bool, want ...string) {
			t.Helper()
			for _, n := range want {
				if asked[n] {
					t.Errorf("%s: %s's series were asked for, though its change timestamp stood still (asked: %v)", name, n, asked)
				}
			}
			if !asked["n3"] {
				t.Errorf("%s: n3, without a change timestamp, was not read (asked: %v)", name, asked)
			}
		}
		all := func(name string, asked map[string]bool, want ...string) {
			t.Helper()
			for _, n := range want {
				if !asked[n] {
					t.Errorf("%s: %s's series were not asked for (asked: %v)", name, n, asked)
				}
			}
		}

		step("first traffic", func() {
			for _, e := range nodes {
				e.change(func(ex map[string]float64) {
					move(ex, "alice", "upload", 1_000)
					move(ex, "bob", "download", 123_456_789_012)
				})
			}
		})
		// One more cycle lets every cursor reach a scrape after the last
		// change: VictoriaMetrics's changes() counts the step into its
		// window too.
		step("settling", func() {})
		quiet("idle", step("idle", func() {}), "n1", "n2")

		asked := step("n1 moves", func() { nodes["n1"].change(func(ex map[string]float64) { move(ex, "alice", "download", 77) }) })
		all("n1 moves", asked, "n1")
		if b == promtest.Prometheus {
			quiet("n1 moves", asked, "n2")
		}

		// n2 is downgraded to an exporter without the timestamp and moves
		// in the same scrape, then upgraded again with more traffic in the
		// same scrape: from the cursor on, the timestamp it then shows
		// never changes, but it was not in the cursor's scrape.
		step("n2 without the timestamp moves", func() {
			nodes["n2"].change(func(ex map[string]float64) {
				delete(ex, changeMetric)
				move(ex, "alice", "upload", 5)
			})
		})
		step("n2 with the timestamp again, more traffic", func() {
			nodes["n2"].change(func(ex map[string]float64) {
				ex[changeMetric] = nodes["n2"].nextStamp()
				move(ex, "bob", "upload", 9)
			})
		})
		step("settling", func() {})
		quiet("n2 back, idle", step("n2 back, idle", func() {}), "n1", "n2")

		// The exporter restarts on its state file, having counted more
		// while it was away: the same epoch, a new timestamp.
		// It comes back up only once it shows all of that, as the new
		// process would from its first scrape.
		nodes["n1"].setDown(true)
		time.Sleep(time.Second)
		step("n1 restarted on its state", func() {
			nodes["n1"].change(func(ex map[string]float64) {
				ex[changeMetric] = nodes["n1"].nextStamp()
				move(ex, "alice", "upload", 11)
			})
			nodes["n1"].setDown(false)
		})
		// A user's series appears late, with its whole value.
		step("carol appears on n2", func() { nodes["n2"].change(func(ex map[string]float64) { move(ex, "carol", "download", 4_000) }) })

		// A cycle fails after reading: the next controller reads again.
		nodes["n1"].change(func(ex map[string]float64) { move(ex, "bob", "upload", 3) })
		settle()
		cctx, cancel := context.WithCancel(ctx)
		a.BeforeCommit = func(string) { cancel() }
		if err := a.Cycle(cctx); err == nil {
			t.Fatal("a cycle whose commit was cancelled succeeded")
		}
		a = gateAccountant(t, s, ql.URL)
		step("after a failed cycle", func() {})

		// A quiet node's cursor still moves forward once it is old.
		step("settling", func() {})
		before, err := s.NodeCursors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old := cursorRefresh
		cursorRefresh = 0
		quiet("quiet cursors refreshed", step("quiet cursors refreshed", func() {}), "n1", "n2")
		cursorRefresh = old
		after, err := s.NodeCursors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"n1", "n2"} {
			if after[n].Scraped <= before[n].Scraped || after[n].Epoch != before[n].Epoch {
				t.Errorf("%s's cursor %+v after a refresh, was %+v: want a later scrape, same epoch", n, after[n], before[n])
			}
		}

		// The exporter loses its state: a new epoch, counters from zero.
		step("n2 lost its state", func() {
			nodes["n2"].change(func(ex map[string]float64) {
				ex[epochMetric]++
				maps.DeleteFunc(ex, func(k string, _ float64) bool { return strings.HasPrefix(k, metric+"{") })
				ex[changeMetric] = nodes["n2"].nextStamp()
				move(ex, "alice", "download", 6)
			})
		})
		// A new epoch whose counters happen to show the same series: all
		// of it is new traffic. singbox_exporter starts a new epoch only
		// in a new process, with a new timestamp; this one keeps it, so
		// only the epoch tells.
		step("n1's epoch changes, its series the same", func() {
			nodes["n1"].change(func(ex map[string]float64) {
				old := userSeries(ex)
				maps.DeleteFunc(ex, func(k string, _ float64) bool { return strings.HasPrefix(k, metric+"{") })
				ex[epochMetric] += 10
				for _, u := range []string{"alice", "bob", "carol"} {
					for _, d := range directions {
						if v, ok := old[series(u, d)]; ok {
							move(ex, u, d, int64(v))
						}
					}
				}
			})
		})
		step("idle after all", func() {})
	})
}

// A back end that refuses the gate's query (no @ modifier) still has every
// moved series read, and the ledger stays exact.
func TestGateRefused(t *testing.T) {
	ctx := context.Background()
	e := newGateNode(t, true)
	prom := promtest.Start(t, 200*time.Millisecond, promtest.StaticTarget{Addr: e.Addr(), Labels: map[string]string{"node": "n1"}})
	ql := newQueryLog(t, prom.URL)
	ql.refuse = func(q string) bool { return strings.Contains(q, changeMetric) }
	s := storetest.SQLite(t)
	a := gateAccountant(t, s, ql.URL)
	var want int64
	for i, n := range []int64{100, 0, 7, 0, 30} {
		e.change(func(ex map[string]float64) { ex[series("alice", "upload")] += float64(n); ex["boxfleet_test_probe"]++ })
		want += n
		prom.WaitFor(t, `boxfleet_test_probe`, 20*time.Second, func(v model.Vector) bool { return len(v) == 1 && int(v[0].Value) == i+1 })
		if err := a.Cycle(ctx); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if up, _, err := s.LedgerTotal(ctx, "alice"); err != nil || up != want {
			t.Fatalf("cycle %d: alice's upload in the ledger %d (%v), want %d", i, up, err, want)
		}
		if i > 0 && !ql.seriesAsked()["n1"] {
			t.Fatalf("cycle %d: n1's series not asked for while the gate is refused", i)
		}
	}
}
