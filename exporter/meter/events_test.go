package meter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
	"github.com/boxfleet/boxfleet/exporter/state"
)

// oneConnNode is a Clash API with one open connection whose bytes, and the
// node totals, the test sets; with no bytes the connection is closed.
type oneConnNode struct {
	*httptest.Server
	mu                   sync.Mutex
	up, down, cUp, cDown uint64
}

func newOneConnNode(t *testing.T) *oneConnNode {
	n := &oneConnNode{}
	mux := http.NewServeMux()
	mux.HandleFunc("/connections", func(w http.ResponseWriter, _ *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		conn := ""
		if n.cUp+n.cDown > 0 { // c1 closed otherwise
			conn = fmt.Sprintf(`{"id":"c1","metadata":{"network":"tcp","type":"vless/vless-in","sourceIP":"203.0.113.7","sourcePort":"40000"},"upload":%d,"download":%d,"start":"2026-11-01T00:00:00Z"}`, n.cUp, n.cDown)
		}
		fmt.Fprintf(w, `{"uploadTotal":%d,"downloadTotal":%d,"memory":1,"connections":[%s]}`, n.up, n.down, conn)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"version":"sing-box 1.14.1"}`) })
	n.Server = httptest.NewServer(mux)
	t.Cleanup(n.Close)
	return n
}

func (n *oneConnNode) set(up, down, cUp, cDown uint64) {
	n.mu.Lock()
	n.up, n.down, n.cUp, n.cDown = up, down, cUp, cDown
	n.mu.Unlock()
}

// In Events mode the engine does no work: the state keeps the node totals
// and the ledger's connections, not a second copy of every connection.
// The same state read in Clash API mode (the operator dropped
// --singbox.api) counts on from what the ledger had credited each open
// connection, its user known, rather than counting its bytes again.
func TestEventsStateAndModeSwitch(t *testing.T) {
	node := newOneConnNode(t)
	clash, err := clashapi.NewClient(node.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.json")
	ctx := context.Background()

	node.set(1000, 5000, 100, 2000)
	m := New(Config{Clash: clash, Events: idleEvents{}, StatePath: path, Log: quietLog()})
	m.ledger.Apply(sbapi.Batch{Reset: true, Events: []sbapi.Event{{Kind: sbapi.New, ID: "c1", User: "ana", Inbound: "vless-in",
		Source: "203.0.113.7:40000", HasTotals: true, Up: 100, Down: 2000}}})
	m.Poll(ctx) // the baseline
	node.set(1010, 5100, 110, 2100)
	m.creditEvents(m.ledger.Apply(sbapi.Batch{Events: []sbapi.Event{{Kind: sbapi.Update, ID: "c1", DeltaUp: 10, DeltaDown: 100}}}))
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	v := m.View()
	if want := (attribution.Traffic{Up: 10, Down: 100}); v.Counters.Node != want || v.Counters.Users["ana"] != want || v.Counters.Inbounds["vless-in"] != want {
		t.Fatalf("events mode: node %v, ana %v, vless-in %v; want %v each", v.Counters.Node, v.Counters.Users["ana"], v.Counters.Inbounds["vless-in"], want)
	}
	if a := v.Active["ana"]; a.Connections != 1 || !a.Sources["203.0.113.7"] || v.Unowned != 0 {
		t.Errorf("events mode: ana active %+v, unowned %d; want one connection from 203.0.113.7", a, v.Unowned)
	}
	f, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Engine == nil || f.Engine.Total != (attribution.Traffic{Up: 1010, Down: 5100}) || len(f.Engine.Conns) != 0 {
		t.Fatalf("events mode saved the engine state %+v, want the node totals and no connections", f.Engine)
	}
	if f.Events == nil || f.Events.Conns["c1"].Source != "203.0.113.7:40000" {
		t.Fatalf("events mode saved the ledger %+v, want c1 with its source", f.Events)
	}

	// Meanwhile c1 moved on; the exporter comes back in Clash API mode.
	node.set(1310, 9100, 410, 6100)
	m = New(Config{Clash: clash, StatePath: path, Log: quietLog()})
	m.Poll(ctx)
	v = m.View()
	moved := attribution.Traffic{Up: 300, Down: 4000}
	if v.Counters.Node != (attribution.Traffic{Up: 310, Down: 4100}) {
		t.Errorf("node %v, want 310/4100 (the node totals carried across)", v.Counters.Node)
	}
	if got := v.Counters.Inbounds["vless-in"]; got != (attribution.Traffic{Up: 310, Down: 4100}) {
		t.Errorf("vless-in %v, want 310/4100: c1's bytes before the switch counted once", got)
	}
	if got := v.Counters.Users["ana"]; got != (attribution.Traffic{Up: 10, Down: 100}.Add(moved)) {
		t.Errorf("ana %v, want 310/4100: c1's new bytes are hers", got)
	}
	if a := v.Active["ana"]; a.Connections != 1 || a.SourceIPs != 1 || !a.Sources["203.0.113.7"] {
		t.Errorf("ana active %+v after the switch, want one connection from 203.0.113.7", a)
	}
}

// A reload of sing-box starts its node totals again at zero, so what it
// counted after the last poll is in no total, while the connection's final
// event still brings it to its user. The node total is raised to what the
// events reported once the deficit has held for two update intervals, and
// only by it; a deficit for one poll (an event that came before the
// snapshot counting its bytes) raises nothing.
func TestEventsRaiseNodeTotalLostInReload(t *testing.T) {
	node := newOneConnNode(t)
	clash, err := clashapi.NewClient(node.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const interval = 20 * time.Millisecond
	m := New(Config{Clash: clash, Events: idleEvents{}, EventInterval: interval, Log: quietLog()})
	event := func(e sbapi.Event) {
		m.pollMu.Lock()
		m.creditEvents(m.ledger.Apply(sbapi.Batch{Events: []sbapi.Event{e}}))
		m.pollMu.Unlock()
	}
	// At least the time and the polls for the window to pass twice, however
	// slow a poll is.
	pollFor := func(d time.Duration) {
		for i, end := 0, time.Now().Add(d); i < 8 || time.Now().Before(end); i++ {
			m.Poll(ctx)
			time.Sleep(interval / 4)
		}
	}
	m.ledger.Apply(sbapi.Batch{Reset: true, Events: []sbapi.Event{{Kind: sbapi.New, ID: "c1", User: "ana", Inbound: "vless-in",
		Source: "203.0.113.7:40000", HasTotals: true, Up: 100, Down: 2000}}})
	node.set(1000, 5000, 100, 2000)
	m.Poll(ctx) // the baseline

	// An event ahead of the snapshot: for one poll the users are ahead.
	event(sbapi.Event{Kind: sbapi.Update, ID: "c1", DeltaUp: 10, DeltaDown: 100})
	node.set(1000, 5000, 100, 2000)
	m.Poll(ctx)
	node.set(1010, 5100, 110, 2100)
	pollFor(4 * interval)
	want := attribution.Traffic{Up: 10, Down: 100}
	if v := m.View(); v.Counters.Node != want || v.Counters.Unattributed != (attribution.Traffic{}) {
		t.Fatalf("after an early event: node %v, unattributed %v; want node %v, nothing unattributed", v.Counters.Node, v.Counters.Unattributed, want)
	}

	// c1 moves 50/500 more and closes, then sing-box reloads before the
	// next poll: its totals start again from zero.
	event(sbapi.Event{Kind: sbapi.Update, ID: "c1", DeltaUp: 50, DeltaDown: 500})
	event(sbapi.Event{Kind: sbapi.Closed, ID: "c1", HasTotals: true, Up: 160, Down: 2600, ClosedAt: 1})
	node.set(0, 0, 0, 0)
	pollFor(4 * interval)
	want = attribution.Traffic{Up: 60, Down: 600}
	v := m.View()
	if v.Counters.Users["ana"] != want {
		t.Fatalf("ana %v, want %v", v.Counters.Users["ana"], want)
	}
	if v.Counters.Node != want || v.Counters.Unattributed != (attribution.Traffic{}) {
		t.Fatalf("after the reload: node %v, unattributed %v; want node %v (raised by the 50/500 the totals lost), nothing unattributed", v.Counters.Node, v.Counters.Unattributed, want)
	}

	// The new sing-box counts on; the raise is not made twice.
	node.set(7, 70, 0, 0)
	pollFor(4 * interval)
	v = m.View()
	if want := (attribution.Traffic{Up: 67, Down: 670}); v.Counters.Node != want {
		t.Fatalf("node %v, want %v", v.Counters.Node, want)
	}
	if want := (attribution.Traffic{Up: 7, Down: 70}); v.Counters.Unattributed != want {
		t.Errorf("unattributed %v, want %v (bytes no event reported)", v.Counters.Unattributed, want)
	}
}
