package attribution

import (
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/exporter/clashapi"
)

// A remainder nobody explains waits PoolPolls snapshots; a flush declares
// it unattributed at once, so users plus unattributed equal the node total.
func TestSettleNowDeclaresUnexplainedRemainder(t *testing.T) {
	r := newRig(t)
	r.move(300, 4000)
	if res := r.poll(); res.Unattributed != (Traffic{}) {
		t.Fatalf("the remainder should still be waiting, got unattributed %+v", res.Unattributed)
	}
	res := r.e.SettleNow(r.now)
	if res.Unattributed != (Traffic{300, 4000}) || len(res.Owners) != 0 {
		t.Fatalf("unattributed %+v owners %+v, want all 300/4000 unattributed", res.Unattributed, res.Owners)
	}
	if again := r.e.SettleNow(r.now); again.Unattributed != (Traffic{}) {
		t.Fatalf("settled twice: %+v", again.Unattributed)
	}
	if later := r.poll(); later.Unattributed != (Traffic{}) {
		t.Fatalf("the next snapshot counted the settled remainder again: %+v", later.Unattributed)
	}
}

// A connection logged just before the snapshot, too recently to be judged
// unseen, explains the remainder; a flush gives it the bytes at once.
func TestSettleNowGivesRemainderToYoungBirths(t *testing.T) {
	r := newRig(t)
	r.now = r.now.Add(time.Second)
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(700, 70000)
	requested := r.now.Add(time.Millisecond) // within Settle of the log line
	res := r.e.Apply(&clashapi.Snapshot{UploadTotal: r.up, DownloadTotal: r.dn}, requested)
	if got := userSum(res); len(got) != 0 {
		t.Fatalf("Apply attributed %+v before the birth settled", got)
	}
	r.open("bob", "in", "2.2.2.2:40000") // logged after the snapshot: not in its remainder
	r.e.births[len(r.e.births)-1].at = requested.Add(time.Millisecond)

	res = r.e.SettleNow(requested)
	if got := userSum(res); got["alice"] != (Traffic{700, 70000}) || len(got) != 1 {
		t.Fatalf("got %+v, want alice 700/70000 alone", got)
	}
	if res.Unattributed != (Traffic{}) || res.Estimated != (Traffic{}) {
		t.Fatalf("unattributed %+v estimated %+v, want none", res.Unattributed, res.Estimated)
	}
	if len(r.e.births) != 1 || r.e.births[0].user != "bob" {
		t.Fatalf("births left %+v, want bob's only", r.e.births)
	}
}

// Nothing held, nothing given: a flush on a quiet node changes nothing.
func TestSettleNowWithNothingHeld(t *testing.T) {
	r := newRig(t)
	r.open("alice", "in", "1.1.1.1:40000")
	r.move(100, 1000)
	r.poll(conn("c1", "in", "1.1.1.1:40000", 100, 1000))
	res := r.e.SettleNow(r.now)
	if len(res.Owners) != 0 || res.Unattributed != (Traffic{}) {
		t.Fatalf("owners %+v unattributed %+v, want nothing", res.Owners, res.Unattributed)
	}
	if res := New(Options{}).SettleNow(t0); len(res.Owners) != 0 || res.Unattributed != (Traffic{}) {
		t.Fatalf("an engine without a baseline settled %+v", res)
	}
}
