package accounting_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/accounting"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// The ledger must come out exact whichever backend --prometheus.url points
// at. This runs the story of TestLedgerExact, through the package's
// exported API only, on Prometheus and on VictoriaMetrics (its own scraper,
// with stale markers when a target fails, as vmagent sends them), where
// what differs is the engine: when a sample becomes visible, lookback and
// staleness, and how a counter's float is stored.

const (
	bkMetric = "singbox_user_traffic_bytes_total"
	bkEpoch  = "singbox_exporter_counters_start_timestamp_seconds"
)

func bkSeries(user, dir string) string {
	return fmt.Sprintf(`%s{user=%q,direction=%q}`, bkMetric, user, dir)
}

// bkFleet is two fake exporters scraped by one backend, and the traffic
// that really crossed them.
type bkFleet struct {
	srv   *promtest.Server
	nodes map[string]*promtest.Target
	truth map[string]int64 // user/direction -> bytes
	down  map[string]bool
}

func newBkFleet(t *testing.T, b promtest.Backend) *bkFleet {
	f := &bkFleet{nodes: map[string]*promtest.Target{}, truth: map[string]int64{}, down: map[string]bool{}}
	var targets []promtest.StaticTarget
	for _, n := range []string{"n1", "n2"} {
		tg := promtest.NewTarget(t)
		tg.Set(bkEpoch, 1_700_000_000)
		f.nodes[n] = tg
		targets = append(targets, promtest.StaticTarget{Addr: tg.Addr(), Labels: map[string]string{"node": n}})
	}
	f.srv = b.Start(t, promtest.Options{Interval: 200 * time.Millisecond, Targets: targets})
	return f
}

func (f *bkFleet) move(node, user, dir string, n int64) {
	f.nodes[node].Add(bkSeries(user, dir), float64(n))
	f.truth[user+"/"+dir] += n
}

// settle waits until the backend answers every up node's current values:
// a sentinel series changes on every settle, and the scrape that carries
// it carries the rest.
func (f *bkFleet) settle(t *testing.T) {
	t.Helper()
	for name, tg := range f.nodes {
		if f.down[name] {
			continue
		}
		want := tg.Add(bkSeries("probe", "upload"), 1)
		f.srv.WaitFor(t, fmt.Sprintf(`%s{node=%q,user="probe"}`, bkMetric, name), 30*time.Second,
			func(v model.Vector) bool { return len(v) == 1 && float64(v[0].Value) == want })
	}
}

func (f *bkFleet) setDown(node string, down bool) {
	f.down[node] = down
	f.nodes[node].SetDown(down)
}

func (f *bkFleet) accountant(t *testing.T, s *store.Store) *accounting.Accountant {
	log := logrus.New()
	log.SetOutput(io.Discard)
	a, err := accounting.New(s, f.srv.URL, "c1", log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryLease(context.Background(), accounting.LeaseName, "c1", 60_000); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	return a
}

func (f *bkFleet) checkExact(t *testing.T, s *store.Store) {
	t.Helper()
	for _, u := range []string{"alice", "bob"} {
		up, down, err := s.LedgerTotal(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if up != f.truth[u+"/upload"] || down != f.truth[u+"/download"] {
			t.Errorf("%s: ledger up=%d down=%d, true up=%d down=%d", u, up, down, f.truth[u+"/upload"], f.truth[u+"/download"])
		}
	}
}

func bkCycle(t *testing.T, a *accounting.Accountant) {
	t.Helper()
	if err := a.Cycle(context.Background()); err != nil {
		t.Fatalf("accounting cycle: %v", err)
	}
}

func TestLedgerExactOnEachBackend(t *testing.T) {
	promtest.Each(t, func(t *testing.T, b promtest.Backend) {
		f := newBkFleet(t, b)
		s := storetest.SQLite(t)
		if _, err := s.CreateUser(context.Background(), "test", "alice", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		a := f.accountant(t, s)
		step := func(name string, fn func()) {
			t.Helper()
			fn()
			f.settle(t)
			bkCycle(t, a)
			f.checkExact(t, s)
			if t.Failed() {
				t.Fatalf("%s: ledger wrong after %s", b, name)
			}
		}
		step("increments", func() {
			f.move("n1", "alice", "upload", 1_000)
			f.move("n1", "alice", "download", 50_000)
			f.move("n2", "alice", "download", 7)
			// Beyond 32 bits, and with all 53 bits of a float's mantissa
			// in use: VictoriaMetrics stores a decimal mantissa and
			// exponent, not the float.
			f.move("n2", "bob", "upload", 123_456_789_012)
			f.move("n2", "bob", "download", 1<<53-1)
		})
		step("an idle cycle adds nothing", func() {})
		// One byte on a counter near 2^53: a step far below 1e-12 of
		// the value, which VictoriaMetrics's changes() took for rounding
		// and skipped: the byte was billed only when the counter next moved.
		step("a one-byte step on a huge counter", func() { f.move("n2", "bob", "download", 1) })
		step("counter reset on n1", func() {
			f.nodes["n1"].Reset()
			f.nodes["n1"].Set(bkEpoch, 1_800_000_000)
			f.move("n1", "alice", "download", 300)
		})
		// A target that fails gets stale markers on both backends, so its
		// series vanish from "now" at once rather than after a lookback.
		step("node n2 disappears", func() { f.setDown("n2", true) })
		f.srv.WaitFor(t, bkMetric+`{node="n2"}`, 30*time.Second, func(v model.Vector) bool { return len(v) == 0 })
		bkCycle(t, a)
		f.checkExact(t, s)
		f.setDown("n2", false)
		step("node n2 returns with more traffic", func() { f.move("n2", "bob", "upload", 10) })

		// The controller dies between reading and committing.
		f.move("n1", "alice", "upload", 5_000)
		f.settle(t)
		ctx, cancel := context.WithCancel(context.Background())
		a.BeforeCommit = func(string) { cancel() }
		if err := a.Cycle(ctx); err == nil {
			t.Fatal("cycle with a cancelled commit succeeded")
		}
		a = f.accountant(t, s)
		step("a new controller after a crash mid-cycle", func() {})

		// The backend restarts on its data and traffic goes on.
		f.srv.Restart(t)
		step("the backend restarted", func() { f.move("n1", "alice", "download", 42) })
	})
}

// A backend that crashes can come back without the samples of its last
// seconds: VictoriaMetrics keeps fresh samples in memory and flushes them
// to disk every few seconds (-inmemoryDataFlushInterval, 5s), so a SIGKILL
// loses them, where Prometheus replays its WAL. The counters it then
// answers are older, and lower, than the checkpoints the last cycle
// committed, in the same epoch. That is not a counter reset: counting it as
// one would add every such counter's whole value to the ledger again.
func TestLedgerExactAfterBackendCrash(t *testing.T) {
	promtest.Each(t, func(t *testing.T, b promtest.Backend) {
		f := newBkFleet(t, b)
		s := storetest.SQLite(t)
		a := f.accountant(t, s)
		f.move("n1", "alice", "upload", 1_000)
		f.settle(t)
		bkCycle(t, a)
		time.Sleep(6 * time.Second) // on disk by now, on either backend
		f.move("n1", "alice", "upload", 5_000)
		f.settle(t)
		bkCycle(t, a)
		f.checkExact(t, s)

		// Crash at once, and come back with every node down, so that
		// nothing newer than what survived can be scraped.
		f.setDown("n1", true)
		f.setDown("n2", true)
		f.srv.Restart(t)
		time.Sleep(3 * time.Second)
		if v, err := f.srv.Query(bkSeries("alice", "upload")); err == nil && len(v) == 1 {
			t.Logf("%s after the crash answers %v for alice's upload (the last cycle saw %d)", b, v[0].Value, f.truth["alice/upload"])
		}
		bkCycle(t, a)
		f.checkExact(t, s)
		f.setDown("n1", false)
		f.setDown("n2", false)
		f.move("n1", "alice", "upload", 7)
		f.settle(t)
		bkCycle(t, a)
		f.checkExact(t, s)
	})
}
