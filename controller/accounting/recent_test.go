package accounting

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// recentNode is a gateNode whose exporter also lists, as singbox_exporter
// does with --collector.user-recent-window, the per-user series that
// moved within its window, with their values. The list is redone at every
// change and refresh, so between them it can only hold more than the
// real exporter's, never less.
type recentNode struct {
	*gateNode
	window time.Duration
	moved  map[string]time.Time // per-user series -> when it last moved
	// dropped plays a relabelling in Prometheus that drops the recent
	// series: the exporter still says how many it sent.
	dropped bool
}

func newRecentNode(t *testing.T, window time.Duration) *recentNode {
	e := &recentNode{gateNode: newGateNode(t, true), window: window, moved: map[string]time.Time{}}
	e.Set(windowMetric, window.Seconds())
	return e
}

// change runs fn on the exporter's series, notes which per-user series it
// moved or added, and lists the recent ones again.
func (e *recentNode) change(fn func(ex map[string]float64)) {
	e.gateNode.change(func(ex map[string]float64) {
		before := userSeries(ex)
		fn(ex)
		now := time.Now()
		for k, v := range userSeries(ex) {
			if b, ok := before[k]; !ok || b != v {
				e.moved[k] = now
			}
		}
		e.relist(ex, now)
	})
}

// refresh lists the recent series as of now: those whose window passed
// leave the exposition.
func (e *recentNode) refresh() {
	e.Update(func(ex map[string]float64) { e.relist(ex, time.Now()) })
}

func (e *recentNode) relist(ex map[string]float64, now time.Time) {
	maps.DeleteFunc(ex, func(k string, _ float64) bool { return strings.HasPrefix(k, recentMetric+"{") })
	if e.window <= 0 {
		delete(ex, listedMetric)
		return
	}
	listed := 0
	for k, v := range userSeries(ex) {
		if at, ok := e.moved[k]; ok && now.Sub(at) < e.window {
			listed++
			if !e.dropped {
				ex[recentMetric+strings.TrimPrefix(k, metric)] = v
			}
		}
	}
	ex[listedMetric] = float64(listed)
}

// recentUsers is the user/direction pairs the exporter lists as recent.
func (e *recentNode) recentUsers() map[string]bool {
	out := map[string]bool{}
	e.Update(func(ex map[string]float64) {
		for k := range ex {
			if strings.HasPrefix(k, recentMetric+"{") {
				out[k] = true
			}
		}
	})
	return out
}

// TestRecentExact reads nodes through their exporters' recent series on
// each back end, and checks after every cycle that the ledger is exact:
// nodes whose last read is within the window are read through the list
// (boxfleet_accounting_node_reads_total{how="recent"}), and a node whose last read is older than the
// window is read the other ways, since a series may have moved and left
// the list meanwhile; an exporter without the list (n3) and a new epoch
// are read as before.
func TestRecentExact(t *testing.T) {
	oldMargin, oldRefresh := recentMargin, cursorRefresh
	recentMargin, cursorRefresh = 2*time.Second, 20*time.Second
	t.Cleanup(func() { recentMargin, cursorRefresh = oldMargin, oldRefresh })
	// Long enough for a settle and a cycle on VictoriaMetrics, whose
	// answers to a selector may lag new series by 10 s in these tests.
	const window = 40 * time.Second
	promtest.Each(t, func(t *testing.T, b promtest.Backend) {
		ctx := context.Background()
		n1, n2 := newRecentNode(t, window), newRecentNode(t, window)
		n3 := newGateNode(t, true)
		recents := map[string]*recentNode{"n1": n1, "n2": n2}
		changers := map[string]func(func(map[string]float64)){"n1": n1.change, "n2": n2.change, "n3": n3.change}
		targets := []promtest.StaticTarget{
			{Addr: n1.Addr(), Labels: map[string]string{"node": "n1"}},
			{Addr: n2.Addr(), Labels: map[string]string{"node": "n2"}},
			{Addr: n3.Addr(), Labels: map[string]string{"node": "n3"}},
		}
		srv := b.Start(t, promtest.Options{Interval: 200 * time.Millisecond, Targets: targets})
		s := storetest.SQLite(t)
		a := gateAccountant(t, s, srv.URL)
		truth := map[string]int64{}
		move := func(ex map[string]float64, user, dir string, n int64) {
			ex[series(user, dir)] += float64(n)
			truth[user+"/"+dir] += n
		}
		// settle waits until the back end answers every node's latest
		// exposition, and on VictoriaMetrics 11 s more (see window).
		probe := 0.0
		settle := func() {
			t.Helper()
			probe++
			for _, e := range []*promtest.Target{n1.Target, n2.Target, n3.Target} {
				e.Set("boxfleet_test_probe", probe)
			}
			srv.WaitFor(t, `boxfleet_test_probe`, 30*time.Second, func(v model.Vector) bool {
				for _, s := range v {
					if float64(s.Value) != probe {
						return false
					}
				}
				return len(v) == 3
			})
			if b == promtest.VictoriaMetrics {
				time.Sleep(11 * time.Second)
			}
		}
		// step changes the exporters, waits for the back end, runs a
		// cycle, checks the ledger and returns how many nodes the cycle
		// read through their recent series.
		step := func(name string, fn func()) int64 {
			t.Helper()
			fn()
			settle()
			before := nodeReads(a)[readRecent]
			if err := a.Cycle(ctx); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ledgerIsTruth(t, s, truth, name)
			return int64(nodeReads(a)[readRecent] - before)
		}
		readRecent := func(name string, got, want int64) {
			t.Helper()
			if got != want {
				t.Errorf("%s: %d nodes read through their recent series, want %d", name, got, want)
			}
		}

		readRecent("first traffic", step("first traffic", func() {
			for _, n := range []string{"n1", "n2", "n3"} {
				changers[n](func(ex map[string]float64) {
					move(ex, "alice", "upload", 1_000)
					move(ex, "bob", "download", 123_456_789_012)
				})
			}
		}), 0) // no cursors yet: read whole
		readRecent("n1 and n2 move, n3 too", step("n1 and n2 move, n3 too", func() {
			n1.change(func(ex map[string]float64) { move(ex, "alice", "download", 77) })
			n2.change(func(ex map[string]float64) { move(ex, "carol", "download", 4_000) }) // a new series
			n3.change(func(ex map[string]float64) { move(ex, "alice", "upload", 5) })
		}), 2)
		// Only n2 moves: n1's recent series still list alice and bob,
		// whose values equal their checkpoints, and n1's gate keeps it
		// unread anyway.
		readRecent("n2 moves", step("n2 moves", func() {
			n2.change(func(ex map[string]float64) { move(ex, "bob", "upload", 9) })
		}), 1)

		// n2 loses its state: a new epoch, counters from zero, every
		// series new and so recent; the epoch alone says read it whole.
		readRecent("n2 lost its state", step("n2 lost its state", func() {
			n2.change(func(ex map[string]float64) {
				ex[epochMetric]++
				maps.DeleteFunc(ex, func(k string, _ float64) bool { return strings.HasPrefix(k, metric+"{") })
				move(ex, "alice", "download", 6)
			})
		}), 0)
		// n1 moves, and the move leaves its recent series before the
		// next cycle: the cursor is older than the window, so n1 is read
		// another way and nothing is missed.
		n1.change(func(ex map[string]float64) { move(ex, "carol", "upload", 3_333) })
		time.Sleep(window)
		n1.refresh()
		if r := n1.recentUsers(); len(r) != 0 {
			t.Fatalf("n1 still lists %v as recent after its window", r)
		}
		readRecent("n1's move left the window", step("n1's move left the window", func() {}), 0)
		// n2 stood still meanwhile; its cursor was refreshed in that
		// cycle, so it is read through its recent series again.

		readRecent("both move again", step("both move again", func() {
			for _, n := range []string{"n1", "n2"} {
				recents[n].change(func(ex map[string]float64) { move(ex, "bob", "download", 1) })
			}
		}), 2)
		// A relabelling drops n1's recent series; the count the exporter
		// sent says some are missing, so n1 is read the other ways.
		readRecent("n1's recent series dropped", step("n1's recent series dropped", func() {
			n1.dropped = true
			n1.change(func(ex map[string]float64) { move(ex, "carol", "download", 50) })
		}), 0)
		n1.dropped = false
		// n1 is downgraded to an exporter without the list: read as before.
		readRecent("n1 without the list", step("n1 without the list", func() {
			n1.change(func(ex map[string]float64) {
				delete(ex, windowMetric)
				n1.window = 0
				move(ex, "alice", "upload", 12)
			})
		}), 0)
	})
}
