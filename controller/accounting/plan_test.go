package accounting

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// TestPlanMarksBusyNodes: a node whose last commit changed busyChanged
// series or more is marked to be read whole unless the gate finds it
// quiet; one not scraped since its cursor is still left alone.
func TestPlanMarksBusyNodes(t *testing.T) {
	cursors := map[string]store.NodeCursor{
		"busy": {Epoch: 1, Scraped: 1000}, "idle-busy": {Epoch: 1, Scraped: 1000},
		"calm": {Epoch: 1, Scraped: 1000}, "new": {},
	}
	scraped := map[string]int64{"busy": 2000, "idle-busy": 1000, "calm": 2000, "new": 2000}
	busy := map[string]bool{"busy": true, "idle-busy": true}
	got := plan([]string{"busy", "calm", "idle-busy", "new"}, scraped, cursors, false, busy)
	want := []query{
		{nodes: []string{"busy", "calm"}, moved: true, since: []int64{1000, 1000}, epochs: []int64{1, 1}, busy: []bool{true, false}},
		{nodes: []string{"new"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n got %+v\nwant %+v", got, want)
	}
}

// TestBusyNodeReadWhole runs the accountant on a real Prometheus through
// a node that gets busy and calm again: while busy it is read whole
// without asking which series moved, still not at all while quiet, and by
// moved series once calm; the ledger is exact after every cycle.
func TestBusyNodeReadWhole(t *testing.T) {
	ctx := context.Background()
	e := newGateNode(t, true)
	prom := promtest.Start(t, 200*time.Millisecond, promtest.StaticTarget{Addr: e.Addr(), Labels: map[string]string{"node": "n1"}})
	ql := newQueryLog(t, prom.URL)
	s := storetest.SQLite(t)
	a := gateAccountant(t, s, ql.URL)
	users := busyChanged/2 + 10 // both directions: more than busyChanged series
	truth := map[string]int64{}
	probe := 0
	cycle := func(name string, moving int, wantWhole, wantAsked, wantSeries bool) {
		t.Helper()
		e.change(func(ex map[string]float64) {
			for u := range moving {
				for _, d := range directions {
					ex[series(fmt.Sprintf("u%03d", u), d)] += float64(100 + u)
					truth[fmt.Sprintf("u%03d", u)] += int64(100 + u)
				}
			}
			ex["boxfleet_test_probe"]++
		})
		probe++
		prom.WaitFor(t, `boxfleet_test_probe`, 20*time.Second, func(v model.Vector) bool { return len(v) == 1 && int(v[0].Value) == probe })
		ql.mu.Lock()
		ql.queries = nil
		ql.mu.Unlock()
		if err := a.Cycle(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ql.mu.Lock()
		qs := strings.Join(ql.queries, "\n")
		ql.mu.Unlock()
		whole := strings.Contains(qs, metric+`|`+epochMetric+`",node=~`)
		asked := strings.Contains(qs, `increase(`+metric)
		if whole != wantWhole || asked != wantAsked {
			t.Errorf("%s: read whole %v (want %v), asked which series moved %v (want %v)", name, whole, wantWhole, asked, wantAsked)
		}
		if got := whole || strings.Contains(qs, metric+`{node=`) || strings.Contains(qs, metric+`|`+epochMetric+`",node=`); got != wantSeries {
			t.Errorf("%s: n1's series asked for: %v, want %v; queries:\n%s", name, got, wantSeries, qs)
		}
		for u, want := range truth {
			up, down, err := s.LedgerTotal(ctx, u)
			if err != nil || up+down != want {
				t.Fatalf("%s: %s in the ledger %d (%v), want %d", name, u, up+down, err, want)
			}
		}
	}
	cycle("every series new", users, true, false, true) // a first read is whole
	cycle("every series moves: busy", users, true, false, true)
	cycle("nothing moves: the gate still answers", 0, false, false, false)
	cycle("one user moves: still busy", 1, true, false, true)
	cycle("two users move: calm, asked which moved", 2, false, true, true)
}
