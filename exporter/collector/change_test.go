package collector

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/boxfleet/boxfleet/internal/promtest"
)

const changeName = "singbox_exporter_user_counters_change_timestamp_seconds"

// scrapeOnce gathers c once and returns the change timestamp and the
// per-user series it came with, as series text -> value.
func scrapeOnce(t *testing.T, c prometheus.Collector) (float64, map[string]float64) {
	t.Helper()
	var stamp float64
	found := false
	series := map[string]float64{}
	for name, mf := range gather(t, c) {
		for _, m := range mf.GetMetric() {
			switch name {
			case changeName:
				stamp, found = m.GetGauge().GetValue(), true
			case "singbox_user_traffic_bytes_total":
				series[label(m, "user")+"/"+label(m, "direction")] = m.GetCounter().GetValue()
			}
		}
	}
	if !found {
		t.Fatalf("no %s", changeName)
	}
	return stamp, series
}

// The change timestamp moves exactly when the per-user traffic series
// differ from the last scrape's: a value moved, a series appeared (a user
// crossing --collector.user-min-bytes, or back from idle) or went (idle,
// deleted); never for a poll that changed nothing, nor for users whose
// series are hidden. It never repeats, even when the clock stands still.
func TestUserChangeTimestamp(t *testing.T) {
	c, lv, clk := idleCollector()
	last, _ := scrapeOnce(t, c)
	expect := func(what string, change bool) {
		t.Helper()
		got, _ := scrapeOnce(t, c)
		switch {
		case change && got <= last:
			t.Errorf("%s: change timestamp %.3f, was %.3f: want a later one", what, got, last)
		case !change && got != last:
			t.Errorf("%s: change timestamp %.3f, was %.3f: want it unchanged", what, got, last)
		}
		last = got
	}
	expect("scraped again", false)
	lv.set(func(*meter.View) {})
	expect("a poll that moved nothing", false)
	lv.set(func(v *meter.View) { v.Counters.Users["alice"] = attribution.Traffic{Up: 11, Down: 20} })
	expect("alice moved", true)
	expect("the clock stands still, nothing moved", false)
	lv.set(func(v *meter.View) { v.Counters.Users["alice"] = attribution.Traffic{Up: 12, Down: 20} })
	expect("alice moved, the clock standing still", true)
	lv.set(func(v *meter.View) { v.Counters.Users["carol"] = attribution.Traffic{} })
	expect("carol, with no byte, is hidden", false)
	lv.set(func(v *meter.View) { v.Counters.Users["carol"] = attribution.Traffic{Down: 1} })
	expect("carol's series appears", true)
	clk.add(61 * time.Minute)
	expect("everyone idle: the series go", true)
	clk.add(time.Minute)
	expect("still idle", false)
	lv.set(func(v *meter.View) { v.Counters.Users["bob"] = attribution.Traffic{Up: 1, Down: 2} })
	expect("bob back from idle", true)
	lv.set(func(v *meter.View) { delete(v.Counters.Users, "alice") })
	expect("alice, hidden, deleted", false)
	lv.set(func(v *meter.View) {
		delete(v.Counters.Users, "bob")
		v.Counters.Users["dave"] = attribution.Traffic{Up: 1, Down: 2}
	})
	expect("bob's series gone, dave's with his values in their place", true)
	lv.set(func(v *meter.View) { delete(v.Counters.Users, "dave") })
	expect("dave deleted", true)
}

// A restarted exporter, on its state file, shows a timestamp no scrape of
// the previous process carried, even when nothing moved: a counter of
// changes would start again where the old one may have stood, with other
// values behind it.
func TestUserChangeTimestampNewAfterRestart(t *testing.T) {
	lv := &liveView{v: sampleView()}
	old := New(lv)
	seen := map[float64]bool{}
	for range 3 {
		lv.set(func(v *meter.View) {
			v.Counters.Users["alice"] = v.Counters.Users["alice"].Add(attribution.Traffic{Up: 1})
		})
		s, _ := scrapeOnce(t, old)
		seen[s] = true
	}
	time.Sleep(10 * time.Millisecond) // a restart takes longer than that, and than the old process ran ahead of the clock
	for _, moved := range []bool{false, true} {
		if moved {
			lv.set(func(v *meter.View) {
				v.Counters.Users["alice"] = v.Counters.Users["alice"].Add(attribution.Traffic{Up: 1})
			})
		}
		s, _ := scrapeOnce(t, New(lv))
		if seen[s] {
			t.Errorf("a new process (moved: %v) shows change timestamp %.3f, which the old one showed", moved, s)
		}
	}
}

// Concurrent scrapes while the counters move: a timestamp always comes
// with the same per-user values, so no scrape can show new values with an
// old timestamp.
func TestUserChangeTimestampSameSnapshot(t *testing.T) {
	lv := &liveView{v: sampleView()}
	c := New(lv)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			lv.set(func(v *meter.View) {
				u := fmt.Sprintf("user%d", i%7)
				v.Counters.Users[u] = v.Counters.Users[u].Add(attribution.Traffic{Down: 1})
			})
		}
	})
	var mu sync.Mutex
	byStamp := map[float64]map[string]float64{}
	for range 4 {
		wg.Go(func() {
			for range 300 {
				s, series := scrapeOnce(t, c)
				mu.Lock()
				if prev, ok := byStamp[s]; ok && !maps.Equal(prev, series) {
					t.Errorf("change timestamp %.3f came with two different sets of series", s)
				}
				byStamp[s] = series
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	for {
		mu.Lock()
		n := len(byStamp)
		mu.Unlock()
		if n > 50 || t.Failed() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
}

// swappable serves whichever registry is current: one exporter process
// after another on the same address.
type swappable struct {
	reg atomic.Pointer[prometheus.Registry]
}

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.reg.Load(), promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (s *swappable) start(c prometheus.Collector) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	s.reg.Store(reg)
}

// TestRestartOnStateIsBilled runs the exporter's collector under a real
// Prometheus and the controller's accounting, which skips a node whose
// change timestamp stood still: the exporter restarts on its state file
// having counted more while it was away, or with nothing new, and the
// ledger holds every byte, once.
func TestRestartOnStateIsBilled(t *testing.T) {
	lv := &liveView{v: meter.View{Mode: "api", Up: true, Counters: newCounters(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))}}
	sw := &swappable{}
	sw.start(New(lv))
	target := httptest.NewServer(sw)
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
	a.SkipQuiet = true // the gate this timestamp feeds
	if ok, err := s.TryLease(ctx, accounting.LeaseName, "c1", 600_000); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	step := func(name string, fn func(v *meter.View)) {
		t.Helper()
		want := lv.set(fn)
		prom.WaitFor(t, `singbox_exporter_polls_total{result="success"}`, 20*time.Second,
			func(v model.Vector) bool { return len(v) == 1 && float64(v[0].Value) == want })
		if err := a.Cycle(ctx); err != nil {
			t.Fatalf("%s: accounting: %v", name, err)
		}
		cur := lv.View().Counters.Users["alice"]
		if up, down, err := s.LedgerTotal(ctx, "alice"); err != nil || up != int64(cur.Up) || down != int64(cur.Down) {
			t.Fatalf("%s: alice in the ledger up=%d down=%d (%v), want up=%d down=%d", name, up, down, err, cur.Up, cur.Down)
		}
	}
	move := func(v *meter.View, up, down uint64) {
		v.Counters.Users["alice"] = v.Counters.Users["alice"].Add(attribution.Traffic{Up: up, Down: down})
	}
	step("first bytes", func(v *meter.View) { move(v, 1000, 2000) })
	step("idle", func(*meter.View) {})
	step("idle again", func(*meter.View) {})
	time.Sleep(10 * time.Millisecond)
	// The new process's first scrape already has the new values.
	step("restarted, having counted more meanwhile", func(v *meter.View) {
		move(v, 5, 7)
		sw.start(New(lv))
	})
	step("idle", func(*meter.View) {})
	time.Sleep(10 * time.Millisecond)
	step("restarted, nothing new", func(*meter.View) { sw.start(New(lv)) })
	step("moves after the restarts", func(v *meter.View) { move(v, 1, 1) })
}
