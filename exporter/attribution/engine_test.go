package attribution

import (
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/exporter/clashapi"
)

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

type rig struct {
	t   *testing.T
	e   *Engine
	now time.Time
	up  uint64
	dn  uint64
	id  uint32
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, e: New(Options{}), now: t0}
	r.e.LogUp()
	r.poll() // baseline
	return r
}

// open logs a new connection of user from source on inbound.
func (r *rig) open(user, inbound, source string) {
	r.id++
	r.e.Observe(clashapi.LogLine{ID: r.id, Inbound: inbound, Kind: clashapi.LogFrom, Source: source}, r.now)
	r.e.Observe(clashapi.LogLine{ID: r.id, Inbound: inbound, Kind: clashapi.LogUser, User: user}, r.now)
}

// move adds bytes to the node totals, as sing-box counts every byte.
func (r *rig) move(up, down uint64) { r.up += up; r.dn += down }

func (r *rig) poll(conns ...clashapi.Connection) Result {
	r.now = r.now.Add(time.Second)
	return r.e.Apply(&clashapi.Snapshot{UploadTotal: r.up, DownloadTotal: r.dn, Connections: conns}, r.now)
}

func conn(id, inbound, source string, up, down uint64) clashapi.Connection {
	ip, _, _ := net.SplitHostPort(source)
	return clashapi.Connection{ID: id, Inbound: inbound, Source: source, SourceIP: ip, Upload: up, Download: down}
}

func userSum(res Result) map[string]Traffic {
	out := map[string]Traffic{}
	for o, t := range res.Owners {
		out[o.User] = out[o.User].Add(t)
	}
	return out
}

func TestLongConnectionIsExact(t *testing.T) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(100, 1000)
	got := userSum(r.poll(conn("c1", "in", "1.1.1.1:40000", 100, 1000)))
	if got["alice"] != (Traffic{100, 1000}) {
		t.Fatalf("first poll: %+v", got)
	}
	r.move(50, 500)
	res := r.poll(conn("c1", "in", "1.1.1.1:40000", 150, 1500))
	if got := userSum(res); got["alice"] != (Traffic{50, 500}) {
		t.Fatalf("second poll: %+v", got)
	}
	if res.Estimated != (Traffic{}) {
		t.Fatalf("nothing was estimated, got %+v", res.Estimated)
	}
}

func TestShortConnectionsOfOneUserAreExact(t *testing.T) {
	r := newRig(t)
	for i := range 5 {
		r.open("alice", "in", "1.1.1.1:"+string(rune('0'+i))+"0000")
	}
	r.move(700, 70000) // all five opened and closed between polls
	r.now = r.now.Add(time.Second)
	res := r.poll()
	if got := userSum(res); got["alice"] != (Traffic{700, 70000}) {
		t.Fatalf("alice got %+v, want all 700/70000", got)
	}
	if res.Estimated != (Traffic{}) || res.Unattributed != (Traffic{}) {
		t.Fatalf("estimated %+v unattributed %+v, want none", res.Estimated, res.Unattributed)
	}
}

func TestSharedRemainderIsSplitAndDeclared(t *testing.T) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.open("bob", "in", "2.2.2.2:40000")
	r.move(1000, 3000)
	res := r.poll()
	got := userSum(res)
	if got["alice"].Add(got["bob"]) != (Traffic{1000, 3000}) {
		t.Fatalf("shares %+v do not add up to the remainder", got)
	}
	if res.Estimated != (Traffic{1000, 3000}) {
		t.Fatalf("estimated %+v, want the whole shared remainder", res.Estimated)
	}
}

func TestLearnedSizesGuideTheSplit(t *testing.T) {
	r := newRig(t)
	// Measured alone: alice's short connections move 10x bob's.
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(0, 10000)
	r.poll()
	r.open("bob", "in", "2.2.2.2:40000")
	r.move(0, 1000)
	r.poll()
	// Together: one each.
	r.open("alice", "in", "1.1.1.1:40001")
	r.open("bob", "in", "2.2.2.2:40001")
	r.move(0, 11000)
	got := userSum(r.poll())
	if a := got["alice"].Down; a < 9500 || a > 10500 {
		t.Fatalf("alice got %d of 11000, want about 10000", a)
	}
}

func TestTailGoesToTheUserWhoseConnectionClosed(t *testing.T) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.open("bob", "in", "2.2.2.2:40000")
	r.move(10, 1000)
	r.poll(conn("a", "in", "1.1.1.1:40000", 5, 500), conn("b", "in", "2.2.2.2:40000", 5, 500))
	// alice's connection closes after moving 300 more; bob's stays and moves 200.
	r.move(0, 500)
	got := userSum(r.poll(conn("b", "in", "2.2.2.2:40000", 5, 700)))
	if got["alice"].Down != 300 || got["bob"].Down != 200 {
		t.Fatalf("got alice %d bob %d, want 300 and 200", got["alice"].Down, got["bob"].Down)
	}
}

func TestLateLogLineAttributesPendingBytes(t *testing.T) {
	r := newRig(t)
	r.move(10, 100)
	res := r.poll(conn("c", "in", "1.1.1.1:40000", 10, 100))
	if len(res.Owners) != 0 || res.Unowned != 1 {
		t.Fatalf("owner guessed before the log line: %+v", res)
	}
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(5, 50)
	if got := userSum(r.poll(conn("c", "in", "1.1.1.1:40000", 15, 150))); got["alice"] != (Traffic{15, 150}) {
		t.Fatalf("alice got %+v, want 15/150 including the pending bytes", got["alice"])
	}
}

func TestUnknownConnectionBecomesUnattributed(t *testing.T) {
	r := newRig(t)
	r.move(10, 100)
	r.poll(conn("c", "in", "1.1.1.1:40000", 10, 100))
	res := r.poll()
	if res.Unattributed != (Traffic{10, 100}) {
		t.Fatalf("unattributed %+v, want 10/100", res.Unattributed)
	}
}

func TestUnexplainedRemainderWaitsThenIsUnattributed(t *testing.T) {
	r := newRig(t)
	r.move(0, 4096)
	var total Traffic
	for range 3 {
		total = total.Add(r.poll().Unattributed)
	}
	if total.Down != 4096 {
		t.Fatalf("unattributed %d after 3 polls, want 4096", total.Down)
	}
}

func TestRestartCountsNewInstanceOnce(t *testing.T) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(100, 1000)
	r.poll(conn("c", "in", "1.1.1.1:40000", 100, 1000))
	// sing-box restarts: totals start again at zero.
	r.up, r.dn = 0, 0
	r.open("alice", "in", "1.1.1.1:40001")
	r.move(20, 200)
	res := r.poll(conn("d", "in", "1.1.1.1:40001", 20, 200))
	if !res.Restarted || res.Node != (Traffic{20, 200}) {
		t.Fatalf("restart: %+v", res)
	}
	if got := userSum(res); got["alice"] != (Traffic{20, 200}) {
		t.Fatalf("alice %+v after restart, want 20/200", got["alice"])
	}
}

// savedWithAlice is a rig in which alice has one connection open, metered
// at 100/1000, and the engine's state saved right after.
func savedWithAlice(t *testing.T) (*rig, *State) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(100, 1000)
	r.poll(conn("c", "in", "1.1.1.1:40000", 100, 1000))
	return r, r.e.Export()
}

func TestExportImportContinues(t *testing.T) {
	r, saved := savedWithAlice(t)

	e2 := New(Options{})
	e2.Import(saved)
	r.e = e2
	r.move(1, 10)
	res := r.poll(conn("c", "in", "1.1.1.1:40000", 101, 1010))
	if res.Node != (Traffic{1, 10}) {
		t.Fatalf("node delta %+v after import, want 1/10", res.Node)
	}
	if got := userSum(res); got["alice"] != (Traffic{1, 10}) {
		t.Fatalf("alice %+v after import, want 1/10 (not the whole connection again)", got["alice"])
	}
}

func TestActivity(t *testing.T) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.open("alice", "in", "1.1.1.1:40001")
	r.open("alice", "in", "3.3.3.3:40000")
	res := r.poll(conn("a", "in", "1.1.1.1:40000", 0, 0), conn("b", "in", "1.1.1.1:40001", 0, 0), conn("c", "in", "3.3.3.3:40000", 0, 0))
	if a := res.Active["alice"]; a.Connections != 3 || a.SourceIPs != 2 {
		t.Fatalf("activity %+v, want 3 connections from 2 IPs", a)
	}
	got := slices.Sorted(maps.Keys(res.Active["alice"].Sources))
	if !slices.Equal(got, []string{"1.1.1.1", "3.3.3.3"}) {
		t.Fatalf("sources %q, want the two distinct addresses", got)
	}
}

func TestSplitAddsUp(t *testing.T) {
	for _, w := range [][]float64{{1}, {1, 1, 1}, {0.1, 1e12, 3}, {0, 0}} {
		var sum uint64
		for _, s := range split(1_000_003, w) {
			sum += s
		}
		if sum != 1_000_003 {
			t.Errorf("split %v: shares add to %d", w, sum)
		}
	}
}

// Under overlap, windows with one user's unseen connections alone never
// come, so sizes are learned from the users' short connections that a
// snapshot did catch once: twice what it saw, on average. Without that the
// unseen connections of a user with large files weighed like the default
// few kilobytes against another user's.
func TestSizesLearnedFromConnectionsSeenOnce(t *testing.T) {
	r := newRig(t)
	// Each user has a short connection caught once, half-way, and a
	// connection of the other user open all along, so no window is ever
	// one user's alone. alice's connections move 200 kB, bob's 20 kB.
	r.open("carol", "in", "3.3.3.3:40000")
	long := conn("long", "in", "3.3.3.3:40000", 0, 0)
	for i := range 4 {
		a := "1.1.1.1:4000" + string(rune('0'+i))
		b := "2.2.2.2:4000" + string(rune('0'+i))
		r.open("alice", "in", a)
		r.open("bob", "in", b)
		long.Download += 1000
		r.move(0, 100_000+10_000+1000)
		r.poll(long, conn("a"+a, "in", a, 0, 100_000), conn("b"+b, "in", b, 0, 10_000))
		long.Download += 1000
		r.move(0, 100_000+10_000+1000)
		r.poll(long)
	}
	// Now one unseen connection each, in the same window.
	r.open("alice", "in", "1.1.1.1:50000")
	r.open("bob", "in", "2.2.2.2:50000")
	long.Download += 1000
	r.move(0, 220_000+1000)
	got := userSum(r.poll(long))
	if a := got["alice"].Down; a < 190_000 || a > 210_000 {
		t.Fatalf("alice got %d of 220,000, want about 200,000 (bob %d)", a, got["bob"].Down)
	}
}

// While the log stream is down, connections begin that the engine never
// hears of: the remainder of those windows must not go to the one user it
// did hear of as soon as the stream is back (the soak once billed one user
// 3.8 MB of another's this way, as exact).
func TestRemainderOfALogGapIsUnattributed(t *testing.T) {
	r := newRig(t)
	r.e.LogDown()
	r.move(500, 80_000) // alice's connections, opened and closed unheard of
	during := r.poll()
	r.e.LogUp()
	r.open("bob", "in", "1.1.1.1:40001")
	r.move(10, 1000) // bob's, opened and closed between the polls
	res := r.poll()
	if got := userSum(res); got["bob"] != (Traffic{}) {
		t.Fatalf("bob got %+v of a window whose lines were lost", got["bob"])
	}
	if during.Unattributed != (Traffic{500, 80_000}) || res.Unattributed != (Traffic{10, 1000}) {
		t.Fatalf("unattributed %+v while deaf and %+v in the window it came back; want all of each (500/80000, 10/1000)", during.Unattributed, res.Unattributed)
	}
	if during.Unheard != during.Unattributed || res.Unheard != res.Unattributed {
		t.Fatalf("unheard %+v and %+v, want them to be the unattributed bytes", during.Unheard, res.Unheard)
	}
	// Heard of from start to end, the next window is exact again.
	r.open("bob", "in", "1.1.1.1:40002")
	r.move(20, 2000)
	res = r.poll()
	if got := userSum(res); got["bob"] != (Traffic{20, 2000}) || res.Unattributed != (Traffic{}) || res.Estimated != (Traffic{}) || res.Unheard != (Traffic{}) {
		t.Fatalf("after the gap: bob %+v, unattributed %+v, estimated %+v; want 20/2000 exactly", got["bob"], res.Unattributed, res.Estimated)
	}
}

// An exporter restarted from a state file saved a while ago meets a node
// total that grew by everything since: the users it hears of after the
// restart did not move it all.
func TestRemainderSinceTheSavedStateIsUnattributed(t *testing.T) {
	r, saved := savedWithAlice(t)
	r.move(4000, 900_000) // unsaved: the state file could not be written

	r.e = New(Options{})
	r.e.Import(saved)
	r.e.LogUp()
	r.open("bob", "in", "1.1.1.1:40001")
	r.move(0, 100)
	res := r.poll(conn("c", "in", "1.1.1.1:40000", 150, 1500))
	if got := userSum(res); got["alice"] != (Traffic{50, 500}) || got["bob"] != (Traffic{}) {
		t.Fatalf("alice %+v bob %+v; want alice's open connection metered (50/500) and nothing guessed", got["alice"], got["bob"])
	}
	if res.Unattributed != (Traffic{3950, 899_600}) {
		t.Fatalf("unattributed %+v, want 3950/899600", res.Unattributed)
	}
}

// A connection whose user was never learnt has a tail like any other: its
// share of the remainder is unattributed and what the known users get
// beside it is an estimate.
func TestUnownedTailKeepsItsShare(t *testing.T) {
	r := newRig(t)
	r.move(0, 1000)
	r.poll(conn("x", "in", "1.1.1.1:40000", 0, 1000)) // its log line never came
	r.open("alice", "in", "1.1.1.1:40001")
	r.move(0, 2000) // x's tail and alice's unseen connection
	res := r.poll()
	got := userSum(res)
	if got["alice"].Down == 0 || got["alice"].Down >= 2000 {
		t.Fatalf("alice got %d of the 2000 remainder; want a share, not none or all", got["alice"].Down)
	}
	if res.Unattributed.Down != 1000+2000-got["alice"].Down {
		t.Fatalf("unattributed %d, want x's pending 1000 plus its share %d", res.Unattributed.Down, 2000-got["alice"].Down)
	}
	if res.Estimated.Down != got["alice"].Down {
		t.Fatalf("estimated %d, want alice's share %d", res.Estimated.Down, got["alice"].Down)
	}
}
