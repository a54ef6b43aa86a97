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
	"github.com/boxfleet/boxfleet/exporter/state"
)

// fakeNode is a Clash API whose node totals the test moves, with no open
// connections: every byte is a remainder nobody explains.
type fakeNode struct {
	*httptest.Server
	mu       sync.Mutex
	up, down uint64
}

func newFakeNode(t *testing.T) *fakeNode {
	n := &fakeNode{}
	mux := http.NewServeMux()
	mux.HandleFunc("/connections", func(w http.ResponseWriter, _ *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		fmt.Fprintf(w, `{"uploadTotal":%d,"downloadTotal":%d,"memory":1,"connections":[]}`, n.up, n.down)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"version":"sing-box 1.14.1"}`)
	})
	n.Server = httptest.NewServer(mux)
	t.Cleanup(n.Close)
	return n
}

func (n *fakeNode) move(up, down uint64) {
	n.mu.Lock()
	n.up += up
	n.down += down
	n.mu.Unlock()
}

func newTestMeter(t *testing.T, url, statePath string, stats StatsReader) *Meter {
	t.Helper()
	clash, err := clashapi.NewClient(url, "")
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Clash: clash, Stats: stats, StatePath: statePath, Log: quietLog()})
}

// A poll leaves an unexplained remainder waiting; a flush settles it and
// writes the state before it returns, so the file alone has every byte.
func TestFlushSettlesAndWrites(t *testing.T) {
	node := newFakeNode(t)
	path := filepath.Join(t.TempDir(), "state.json")
	m := newTestMeter(t, node.URL, path, nil)
	// As if the log stream were up: without it no remainder waits, since
	// no log line could explain it.
	m.engine.LogUp()
	ctx := context.Background()
	m.Poll(ctx) // baseline
	node.move(300, 4000)
	m.Poll(ctx)
	if v := m.View(); v.Counters.Node != (attribution.Traffic{Up: 300, Down: 4000}) || v.Counters.Unattributed != (attribution.Traffic{}) {
		t.Fatalf("after a poll: node %+v unattributed %+v, want the remainder waiting", v.Counters.Node, v.Counters.Unattributed)
	}

	before := time.Now()
	node.move(20, 500)
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	want := attribution.Traffic{Up: 320, Down: 4500}
	v := m.View()
	if v.Counters.Node != want || v.Counters.Unattributed != want {
		t.Errorf("after Flush: node %+v unattributed %+v, want both %+v", v.Counters.Node, v.Counters.Unattributed, want)
	}
	if v.LastSuccess.Before(before) {
		t.Errorf("LastSuccess %v is older than the flush (%v)", v.LastSuccess, before)
	}
	f, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Counters.Node != want || f.Counters.Unattributed != want {
		t.Errorf("state file: node %+v unattributed %+v, want both %+v", f.Counters.Node, f.Counters.Unattributed, want)
	}
}

func TestFlushReportsFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("sing-box down", func(t *testing.T) {
		node := newFakeNode(t)
		m := newTestMeter(t, node.URL, filepath.Join(t.TempDir(), "state.json"), nil)
		m.Poll(ctx)
		last := m.View().LastSuccess
		node.Close()
		if err := m.Flush(ctx); err == nil {
			t.Fatal("Flush succeeded with sing-box down")
		}
		if got := m.View().LastSuccess; !got.Equal(last) {
			t.Errorf("a failed poll moved LastSuccess from %v to %v", last, got)
		}
	})
	t.Run("state not writable", func(t *testing.T) {
		node := newFakeNode(t)
		m := newTestMeter(t, node.URL, filepath.Join(t.TempDir(), "missing", "state.json"), nil)
		if err := m.Flush(ctx); err == nil {
			t.Fatal("Flush succeeded without writing the state file")
		}
		if m.View().LastSuccess.IsZero() {
			t.Error("the poll itself succeeded, but LastSuccess was not set")
		}
	})
}

type fakeStats struct {
	reads int
	users map[string]attribution.Traffic
}

func (s *fakeStats) Users(context.Context) (map[string]attribution.Traffic, error) {
	s.reads++
	return s.users, nil
}

// In exact mode a flush reads the stats service too: the users' counters
// are what a reload or stop would otherwise lose.
func TestFlushReadsStats(t *testing.T) {
	node := newFakeNode(t)
	stats := &fakeStats{users: map[string]attribution.Traffic{"alice": {}}}
	path := filepath.Join(t.TempDir(), "state.json")
	m := newTestMeter(t, node.URL, path, stats)
	ctx := context.Background()
	m.Poll(ctx)
	node.move(100, 900)
	stats.users = map[string]attribution.Traffic{"alice": {Up: 100, Down: 900}}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if stats.reads != 2 {
		t.Errorf("stats read %d times, want 2 (the poll and the flush)", stats.reads)
	}
	f, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Counters.Users["alice"]; got != (attribution.Traffic{Up: 100, Down: 900}) {
		t.Errorf("state file has alice %+v, want 100/900", got)
	}
}
