package collector

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/meter"
)

// scrapeHints gathers c once and returns the change timestamp, the
// per-user series and the users' change hints.
func scrapeHints(t *testing.T, c *Collector) (stamp float64, series map[string]float64, hints map[string]float64, window float64) {
	var count float64
	t.Helper()
	hints = map[string]float64{}
	for name, mf := range gather(t, c) {
		for _, m := range mf.GetMetric() {
			switch name {
			case changeName:
				stamp = m.GetGauge().GetValue()
			case "singbox_user_counters_change_timestamp_seconds":
				hints[label(m, "user")] = m.GetGauge().GetValue()
			case "singbox_exporter_user_change_window_seconds":
				window = m.GetGauge().GetValue()
			case "singbox_exporter_user_change_hints":
				count = m.GetGauge().GetValue()
			}
		}
	}
	if count != float64(len(hints)) {
		t.Fatalf("singbox_exporter_user_change_hints %v, but %d hints", count, len(hints))
	}
	_, series = scrapeOnce(t, c)
	return stamp, series, hints, window
}

// hintCollector is a collector with a change window of five minutes on a
// clock the test moves.
func hintCollector(window time.Duration) (*Collector, *liveView, *clock) {
	v := sampleView()
	v.Counters.Users = map[string]attribution.Traffic{}
	lv := &liveView{v: v}
	clk := &clock{t: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)}
	c := NewWithOptions(lv, Options{UserMinBytes: 1, UserIdleTimeout: time.Hour, UserChangeWindow: window})
	c.now = clk.now
	c.shown.changed = clk.now().UnixMilli() // as New does, on the test's clock
	return c, lv, clk
}

// The accounting reads, of a node it committed at scrape S, only the users
// whose hint is above S's change timestamp. So, for any two scrapes less
// than the window apart, the users with a hint above the first one's
// change timestamp must be exactly those whose series the second shows
// with another value or that the first did not show. Random moves,
// appearances, idleness, deletions and scrapes where nothing moved, with
// the clock standing still at times.
func TestUserChangeHintsNameEveryChange(t *testing.T) {
	c, lv, clk := hintCollector(5 * time.Minute)
	rng := rand.New(rand.NewPCG(1, 2))
	type scrape struct {
		stamp  float64
		series map[string]float64
		at     time.Time
	}
	var past []scrape
	for i := range 400 {
		lv.set(func(v *meter.View) {
			for range rng.IntN(4) {
				u := fmt.Sprintf("u%d", rng.IntN(12))
				switch rng.IntN(10) {
				case 0:
					delete(v.Counters.Users, u)
				case 1:
					v.Counters.Users[u] = v.Counters.Users[u] // appears with no byte: hidden
				default:
					v.Counters.Users[u] = v.Counters.Users[u].Add(attribution.Traffic{Up: uint64(rng.IntN(3)), Down: uint64(rng.IntN(3))})
				}
			}
		})
		switch rng.IntN(5) {
		case 0: // the clock stands still
		case 1:
			clk.add(20 * time.Minute) // users go idle, old hints expire
		default:
			clk.add(time.Duration(rng.IntN(30)) * time.Second)
		}
		stamp, series, hints, window := scrapeHints(t, c)
		if window != 300 {
			t.Fatalf("window %v, want 300", window)
		}
		for u, h := range hints {
			if h > stamp {
				t.Fatalf("scrape %d: %s's hint %.3f is above the change timestamp %.3f", i, u, h, stamp)
			}
			if _, ok := series[u+"/upload"]; !ok {
				t.Fatalf("scrape %d: %s has a hint but no series", i, u)
			}
		}
		now := clk.now()
		for _, p := range past {
			if now.Sub(p.at) >= 5*time.Minute {
				continue
			}
			want := map[string]bool{}
			for s, val := range series {
				if old, ok := p.series[s]; !ok || old != val {
					want[userOf(s)] = true
				}
			}
			got := map[string]bool{}
			for u, h := range hints {
				if h > p.stamp {
					got[u] = true
				}
			}
			if !maps.Equal(got, want) {
				t.Fatalf("scrape %d against one %s earlier: hints above its change timestamp name %v, the series that changed are %v's", i, now.Sub(p.at), got, want)
			}
		}
		past = append(past, scrape{stamp, series, now})
	}
}

func userOf(series string) string {
	for i := len(series) - 1; i >= 0; i-- {
		if series[i] == '/' {
			return series[:i]
		}
	}
	return series
}

// A hint goes once its window has passed since the user's last change, or
// with the user; with no window there are neither hints nor the window's
// gauge.
func TestUserChangeHintsExpire(t *testing.T) {
	c, lv, clk := hintCollector(5 * time.Minute)
	lv.set(func(v *meter.View) {
		v.Counters.Users["alice"] = attribution.Traffic{Up: 1}
		v.Counters.Users["bob"] = attribution.Traffic{Up: 1}
	})
	if _, _, hints, _ := scrapeHints(t, c); len(hints) != 2 {
		t.Fatalf("hints %v, want alice and bob", hints)
	}
	clk.add(4 * time.Minute)
	lv.set(func(v *meter.View) { v.Counters.Users["bob"] = attribution.Traffic{Up: 2} })
	scrapeHints(t, c)
	clk.add(time.Minute + time.Second)
	if _, _, hints, _ := scrapeHints(t, c); len(hints) != 1 || hints["bob"] == 0 {
		t.Fatalf("five minutes after alice's last change: hints %v, want bob's alone", hints)
	}
	lv.set(func(v *meter.View) { delete(v.Counters.Users, "bob") })
	if _, _, hints, _ := scrapeHints(t, c); len(hints) != 0 {
		t.Fatalf("bob deleted: hints %v, want none", hints)
	}

	c, lv, _ = hintCollector(0)
	lv.set(func(v *meter.View) { v.Counters.Users["alice"] = attribution.Traffic{Up: 1} })
	if _, _, hints, window := scrapeHints(t, c); len(hints) != 0 || window != 0 {
		t.Fatalf("no window: hints %v and window %v, want neither", hints, window)
	}
}
