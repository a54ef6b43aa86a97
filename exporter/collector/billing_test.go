package collector

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/accounting"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/meter"
	"github.com/boxfleet/boxfleet/exporter/state"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// liveView is a view the test changes between scrapes.
type liveView struct {
	mu sync.Mutex
	v  meter.View
}

func (l *liveView) View() meter.View {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := l.v
	v.Counters = l.v.Counters.Clone()
	return v
}

// set changes the counters and bumps the poll count, which settle waits for.
func (l *liveView) set(fn func(v *meter.View)) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(&l.v)
	l.v.Polls++
	return float64(l.v.Polls)
}

// TestHiddenUsersAreBilledWhole runs the exporter's collector with
// --collector.user-min-bytes and --collector.user-idle-timeout under a
// real Prometheus and the controller's real accounting: users below the
// threshold or idle have no series, and when one appears later (or after
// the exporter lost its state) the ledger still holds every byte, because
// a series the accounting has no checkpoint for counts from zero and one
// it has a checkpoint for counts from there.
func TestHiddenUsersAreBilledWhole(t *testing.T) {
	const threshold = 1000
	epoch := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	lv := &liveView{v: meter.View{Mode: "v2ray_api", Up: true, Counters: newCounters(epoch)}}
	reg := prometheus.NewRegistry()
	clk := &clock{t: epoch}
	c := NewWithOptions(lv, Options{UserMinBytes: threshold, UserIdleTimeout: time.Hour})
	c.now = clk.now
	reg.MustRegister(c)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer target.Close()
	prom := promtest.Start(t, 200*time.Millisecond, promtest.StaticTarget{
		Addr: strings.TrimPrefix(target.URL, "http://"), Labels: map[string]string{"node": "n1"},
	})

	s := storetest.SQLite(t)
	ctx := context.Background()
	log := logrus.New()
	log.SetOutput(io.Discard)
	a, err := accounting.New(s, prom.URL, "c1", log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryLease(ctx, accounting.LeaseName, "c1", 600_000); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	// billed is what the ledger must hold: for each epoch of the
	// exporter's counters, the user's counter if it is exposed. Bytes of a
	// user still under the threshold are billed once the user crosses it;
	// the ones of a user who never does (at most the threshold per user,
	// node and lost state file) never are.
	past := map[string]attribution.Traffic{}
	billed := func(u string) attribution.Traffic {
		cur := lv.View().Counters.Users[u]
		if cur.Up+cur.Down < threshold {
			cur = attribution.Traffic{}
		}
		return past[u].Add(cur)
	}
	users := []string{"idle", "small", "late", "big"}
	// step changes the node's counters, waits until Prometheus scraped
	// them and runs one accounting cycle, then checks the ledger.
	step := func(name string, fn func(v *meter.View)) {
		t.Helper()
		want := lv.set(fn)
		prom.WaitFor(t, `singbox_exporter_polls_total{result="success"}`, 20*time.Second,
			func(v model.Vector) bool { return len(v) == 1 && float64(v[0].Value) == want })
		if err := a.Cycle(ctx); err != nil {
			t.Fatalf("%s: accounting: %v", name, err)
		}
		for _, u := range users {
			up, down, err := s.LedgerTotal(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			if w := billed(u); up != int64(w.Up) || down != int64(w.Down) {
				t.Errorf("%s: %s in the ledger up=%d down=%d, want up=%d down=%d", name, u, up, down, w.Up, w.Down)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	move := func(v *meter.View, user string, up, down uint64) {
		v.Counters.Users[user] = v.Counters.Users[user].Add(attribution.Traffic{Up: up, Down: down})
	}
	series := func(user string) int {
		t.Helper()
		v, err := prom.Query(`singbox_user_traffic_bytes_total{user="` + user + `"}`)
		if err != nil {
			t.Fatal(err)
		}
		return len(v)
	}

	step("start", func(v *meter.View) {
		v.Counters.Users["idle"] = attribution.Traffic{}
		move(v, "small", 300, 200)
		move(v, "late", 400, 0)
		move(v, "big", 7000, 90000)
	})
	if n := series("idle") + series("small") + series("late"); n != 0 {
		t.Fatalf("%d series of users under the threshold in Prometheus, want 0", n)
	}
	if n := series("big"); n != 2 {
		t.Fatalf("big has %d series, want 2", n)
	}
	step("late crosses the threshold", func(v *meter.View) { move(v, "late", 350, 350) })
	if n := series("late"); n != 2 {
		t.Fatalf("late has %d series after crossing, want 2", n)
	}
	if up, down, _ := s.LedgerTotal(ctx, "late"); up != 750 || down != 350 {
		t.Fatalf("late billed %d/%d on appearing, want the whole 750/350", up, down)
	}
	step("late keeps counting", func(v *meter.View) { move(v, "late", 5, 6) })

	// An hour without a byte hides late and big too; late comes back
	// with everything it moved while away.
	clk.add(61 * time.Minute)
	step("everyone idle", func(*meter.View) {})
	if n := series("big") + series("late"); n != 0 {
		t.Fatalf("%d series of idle users, want 0", n)
	}
	step("late comes back", func(v *meter.View) { move(v, "late", 7000, 30) })
	if n := series("late"); n != 2 {
		t.Fatalf("late has %d series after coming back, want 2", n)
	}
	if n := series("big"); n != 0 {
		t.Fatalf("big, still idle, has %d series", n)
	}

	// The exporter loses its state: counters start again at zero with a
	// new epoch, every user drops under the threshold (their series
	// vanish), and comes back later with less than before.
	for _, u := range users {
		past[u] = billed(u)
	}
	step("state lost", func(v *meter.View) { v.Counters = newCounters(epoch.Add(time.Hour)) })
	if n := series("big") + series("late"); n != 0 {
		t.Fatalf("%d series right after the state loss, want 0", n)
	}
	step("users come back after the loss", func(v *meter.View) {
		move(v, "big", 600, 600)
		move(v, "late", 999, 1)
		move(v, "small", 10, 10)
	})
	step("and keep counting", func(v *meter.View) {
		move(v, "big", 1, 2)
		move(v, "small", 990, 0)
	})
}

func newCounters(since time.Time) state.Counters {
	return state.Counters{
		Since:    since,
		Users:    map[string]attribution.Traffic{},
		Inbounds: map[string]attribution.Traffic{},
	}
}
