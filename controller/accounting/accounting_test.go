package accounting

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func series(user, dir string) string {
	return fmt.Sprintf(`singbox_user_traffic_bytes_total{user=%q,direction=%q}`, user, dir)
}

// fleet is two fake exporters scraped by a real Prometheus, and the true
// traffic the test made them count.
type fleet struct {
	prom   *promtest.Server
	nodes  map[string]*promtest.Target
	truth  map[string]int64 // user/direction -> bytes that really crossed nodes
	down   map[string]bool
	kept   map[string]float64 // a vanished node's series, by vanish
	epochs int                // epochs started by resets
}

func newFleet(t *testing.T) *fleet {
	f := &fleet{nodes: map[string]*promtest.Target{}, truth: map[string]int64{}, down: map[string]bool{}}
	var targets []promtest.StaticTarget
	for _, n := range []string{"n1", "n2"} {
		tg := promtest.NewTarget(t)
		tg.Set(epochMetric, 1_700_000_000)
		f.nodes[n] = tg
		targets = append(targets, promtest.StaticTarget{Addr: tg.Addr(), Labels: map[string]string{"node": n}})
	}
	f.prom = promtest.Start(t, 200*time.Millisecond, targets...)
	return f
}

// move counts traffic on a node, as an exporter would.
func (f *fleet) move(node, user, dir string, n int64) {
	f.nodes[node].Add(series(user, dir), float64(n))
	f.truth[user+"/"+dir] += n
}

// settle waits until Prometheus holds every up node's current values.
func (f *fleet) settle(t *testing.T) {
	t.Helper()
	for name, tg := range f.nodes {
		if f.down[name] {
			continue
		}
		want := tg.Add(series("probe", "upload"), 1) // a sentinel that changes on every settle
		f.prom.WaitFor(t, fmt.Sprintf(`singbox_user_traffic_bytes_total{node=%q,user="probe"}`, name), 20*time.Second,
			func(v model.Vector) bool { return len(v) == 1 && float64(v[0].Value) == want })
	}
}

// vanish makes node's exporter drop one user's series (then waits until
// Prometheus saw it go), or with user "" serve every known series again at
// the values they had.
func (f *fleet) vanish(t *testing.T, node, user, dir string) {
	t.Helper()
	tg := f.nodes[node]
	if f.kept == nil {
		f.kept = map[string]float64{}
		for _, k := range []string{epochMetric, series("alice", "upload"), series("alice", "download"), series("bob", "upload"), series("bob", "download")} {
			f.kept[k] = tg.Add(k, 0)
		}
	}
	probe := tg.Add(series("probe", "upload"), 0) // settle's, always growing
	tg.Reset()
	tg.Set(series("probe", "upload"), probe)
	for k, v := range f.kept {
		if user == "" || k != series(user, dir) {
			tg.Set(k, v)
		}
	}
	if user == "" {
		f.kept = nil
		return
	}
	f.settle(t)
	f.prom.WaitFor(t, fmt.Sprintf(`singbox_user_traffic_bytes_total{node=%q,user=%q,direction=%q}`, node, user, dir), 20*time.Second,
		func(v model.Vector) bool { return len(v) == 0 })
}

func (f *fleet) setDown(node string, down bool) {
	f.down[node] = down
	f.nodes[node].SetDown(down)
}

func newAccountant(t *testing.T, s *store.Store, f *fleet, holder string) *Accountant {
	a, err := New(s, f.prom.URL, holder, quietLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ok, err := s.TryLease(context.Background(), LeaseName, holder, 60_000)
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	return a
}

func ledger(t *testing.T, s *store.Store, user string) (int64, int64) {
	t.Helper()
	up, down, err := s.LedgerTotal(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return up, down
}

func checkExact(t *testing.T, s *store.Store, f *fleet, users ...string) {
	t.Helper()
	for _, u := range users {
		up, down := ledger(t, s, u)
		if up != f.truth[u+"/upload"] || down != f.truth[u+"/download"] {
			t.Errorf("%s: ledger up=%d down=%d, true up=%d down=%d", u, up, down, f.truth[u+"/upload"], f.truth[u+"/download"])
		}
	}
}

// TestLedgerExact drives real Prometheus through increments, an exporter
// that loses its state, a node that disappears and returns, a Prometheus
// restart, and a controller that dies between query and commit; after each
// step the ledger equals the traffic that really happened.
func TestLedgerExact(t *testing.T) {
	f := newFleet(t)
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		ctx := context.Background()
		if _, err := s.CreateUser(ctx, "test", "alice", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		// Each back end starts from the fleet's current counters: count
		// what is already there as this database's history.
		for k := range f.truth {
			f.truth[k] = 0
		}
		a := newAccountant(t, s, f, "c1")
		f.settle(t)
		mustCycle(t, a)
		base := map[string][2]int64{}
		for _, u := range []string{"alice", "bob"} {
			up, down := ledger(t, s, u)
			base[u] = [2]int64{up, down}
			f.truth[u+"/upload"], f.truth[u+"/download"] = up, down
		}

		step := func(name string, fn func()) {
			t.Helper()
			fn()
			f.settle(t)
			mustCycle(t, a)
			checkExact(t, s, f, "alice", "bob")
			if t.Failed() {
				t.Fatalf("ledger wrong after %s", name)
			}
		}
		step("increments", func() {
			f.move("n1", "alice", "upload", 1_000)
			f.move("n1", "alice", "download", 50_000)
			f.move("n2", "alice", "download", 7)
			f.move("n2", "bob", "upload", 123_456_789_012) // beyond 32 bits
		})
		step("an idle cycle adds nothing", func() {})
		step("counter reset on n1", func() {
			// Every series gone, and a new epoch: when the counters
			// started, so a new one on every back end's run.
			f.nodes["n1"].Reset()
			f.epochs++
			f.nodes["n1"].Set(epochMetric, float64(1_800_000_000+f.epochs))
			f.move("n1", "alice", "download", 300) // the new exporter starts from zero
		})
		step("node n2 disappears", func() { f.setDown("n2", true) })
		f.prom.WaitFor(t, `singbox_user_traffic_bytes_total{node="n2"}`, 20*time.Second,
			func(v model.Vector) bool { return len(v) == 0 })
		f.setDown("n2", false)
		step("node n2 returns with more traffic", func() { f.move("n2", "bob", "upload", 10) })

		// A series moves, then leaves the exporter before the next cycle
		// and comes back unchanged later: the cycle in between must not
		// take its absence for "unchanged", nor the one after it its
		// return.
		f.move("n1", "alice", "upload", 777)
		f.settle(t)
		f.vanish(t, "n1", "alice", "upload")
		mustCycle(t, a)
		f.vanish(t, "n1", "", "")
		f.settle(t)
		mustCycle(t, a)
		checkExact(t, s, f, "alice", "bob")
		if t.Failed() {
			t.Fatal("ledger wrong after a series that moved came back")
		}

		// The controller dies after reading Prometheus and before
		// committing: a new one must neither lose nor repeat the delta.
		f.move("n1", "alice", "upload", 5_000)
		f.settle(t)
		cctx, cancel := context.WithCancel(ctx)
		a.BeforeCommit = func(string) { cancel() }
		if err := a.Cycle(cctx); err == nil {
			t.Fatal("cycle with a cancelled commit succeeded")
		}
		restarted := newAccountant(t, s, f, "c1")
		mustCycle(t, restarted)
		checkExact(t, s, f, "alice", "bob")
		mustCycle(t, restarted)
		checkExact(t, s, f, "alice", "bob")

		// Prometheus restarts: it keeps its data, so nothing changes.
		f.prom.Restart(t)
		f.settle(t)
		mustCycle(t, restarted)
		checkExact(t, s, f, "alice", "bob")

		u, err := s.GetUser(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := u.Used()-(base["alice"][0]+base["alice"][1]), f.truth["alice/upload"]+f.truth["alice/download"]-(base["alice"][0]+base["alice"][1]); got != want {
			t.Errorf("alice's period usage grew by %d, want %d", got, want)
		}
	})
}

// TestCycleWithoutPrometheus: an outage is an error that changes nothing.
func TestCycleWithoutPrometheus(t *testing.T) {
	s := storetest.SQLite(t)
	a, err := New(s, "http://"+testsupport.FreeAddr(t), "c1", quietLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Cycle(context.Background()); err == nil {
		t.Fatal("cycle against a dead Prometheus succeeded")
	}
	up, down := ledger(t, s, "alice")
	if up != 0 || down != 0 {
		t.Fatal("ledger changed")
	}
}

func mustCycle(t *testing.T, a *Accountant) {
	t.Helper()
	if err := a.Cycle(context.Background()); err != nil {
		t.Fatalf("accounting cycle: %v", err)
	}
}
