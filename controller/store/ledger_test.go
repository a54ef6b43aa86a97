package store_test

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

func commit(t *testing.T, s *store.Store, node string, samples ...store.Sample) store.CommitResult {
	t.Helper()
	res, err := s.CommitNode(bg, "", "", node, 0, samples, s.Now())
	if err != nil {
		t.Fatalf("commit %s: %v", node, err)
	}
	return res
}

func up(user string, v int64) store.Sample {
	return store.Sample{User: user, Direction: "upload", Value: v}
}
func down(user string, v int64) store.Sample {
	return store.Sample{User: user, Direction: "download", Value: v}
}

func assertTotals(t *testing.T, s *store.Store, user string, wantUp, wantDown int64) {
	t.Helper()
	u, d, err := s.LedgerTotal(bg, user)
	if err != nil || u != wantUp || d != wantDown {
		t.Errorf("ledger of %s: %d up, %d down (%v); want %d, %d", user, u, d, err, wantUp, wantDown)
	}
}

func TestCommitNodeDeltas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		createUser(t, s, "alice", store.UserSpec{})

		// The first value of a series is all new traffic: the exporter
		// counts from zero.
		res := commit(t, s, "n1", up("alice", 100), down("alice", 200))
		if res != (store.CommitResult{Series: 2, Changed: 2, Bytes: 300}) {
			t.Errorf("first commit: %+v", res)
		}
		assertTotals(t, s, "alice", 100, 200)

		res = commit(t, s, "n1", up("alice", 150), down("alice", 260))
		if res != (store.CommitResult{Series: 2, Changed: 2, Bytes: 110}) {
			t.Errorf("increment: %+v", res)
		}
		assertTotals(t, s, "alice", 150, 260)

		before := dump(t, s)
		res = commit(t, s, "n1", up("alice", 150), down("alice", 260))
		if res != (store.CommitResult{Series: 2}) {
			t.Errorf("unchanged values: %+v", res)
		}
		if after := dump(t, s); !reflect.DeepEqual(before, after) {
			t.Errorf("unchanged values wrote to the database")
		}

		// Below the checkpoint: the exporter restarted without its state and
		// counts again from zero, so the new value is new traffic.
		res = commit(t, s, "n1", up("alice", 30), down("alice", 260))
		if res != (store.CommitResult{Series: 2, Changed: 1, Resets: 1, Bytes: 30}) {
			t.Errorf("counter reset: %+v", res)
		}
		assertTotals(t, s, "alice", 180, 260)
		commit(t, s, "n1", up("alice", 35), down("alice", 260))
		assertTotals(t, s, "alice", 185, 260)

		// Another node has checkpoints of its own.
		commit(t, s, "n2", up("alice", 1000))
		assertTotals(t, s, "alice", 1185, 260)
		if u := getUser(t, s, "alice"); u.UsedUp != 1185 || u.UsedDown != 260 || u.ExpireAt != nil {
			t.Errorf("period usage %d/%d, want 1185/260; expiry %v, want none", u.UsedUp, u.UsedDown, u.ExpireAt)
		}
		rows, err := s.Usage(bg, "alice", 20251105, 20251105)
		if err != nil || len(rows) != 2 || rows[0].Node != "n1" || rows[0].Upload != 185 || rows[1].Node != "n2" || rows[1].Upload != 1000 {
			t.Errorf("usage per node: %+v %v", rows, err)
		}
	})
}

// Traffic of a name the users table does not know (deleted, or not yet
// created) is still kept in the ledger, so history is exact.
func TestCommitNodeUnknownUser(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		res := commit(t, s, "n1", up("ghost", 40), down("ghost", 2))
		if res.Bytes != 42 {
			t.Errorf("commit: %+v", res)
		}
		assertTotals(t, s, "ghost", 40, 2)
		if _, err := s.GetUser(bg, "ghost"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the ledger created a user: %v", err)
		}
	})
}

func TestCommitNodeSplitsDays(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 12, 31, 23, 59, 50))
		createUser(t, s, "alice", store.UserSpec{})
		commit(t, s, "n1", up("alice", 100))
		clk.set(date(2026, 1, 1, 0, 0, 10))
		commit(t, s, "n1", up("alice", 250))
		clk.add(time.Hour)
		commit(t, s, "n1", up("alice", 260))
		rows, err := s.Usage(bg, "alice", 20251201, 20260131)
		if err != nil {
			t.Fatal(err)
		}
		want := []store.UsageRow{
			{User: "alice", Node: "n1", Day: 20251231, Upload: 100},
			{User: "alice", Node: "n1", Day: 20260101, Upload: 160},
		}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("daily rows %+v, want %+v", rows, want)
		}
		if rows, _ := s.Usage(bg, "alice", 20260101, 20260101); len(rows) != 1 {
			t.Errorf("one-day range: %+v", rows)
		}
	})
}

// Random increments, resets and missing series over several nodes: the
// ledger and the period counters equal the traffic that really happened.
func TestCommitNodeExactOverManyCycles(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 11, 5, 0, 0, 0))
		users := []string{"a", "b", "c", "d"}
		for _, u := range users {
			createUser(t, s, u, store.UserSpec{})
		}
		rng := rand.New(rand.NewPCG(1, 2))
		type series struct{ node, user, dir string }
		counters := map[series]int64{}
		truth := map[string][2]int64{}
		for range 60 {
			clk.add(37 * time.Minute)
			for _, node := range []string{"n1", "n2", "n3"} {
				var samples []store.Sample
				for _, u := range users {
					for i, dir := range []string{"upload", "download"} {
						k := series{node, u, dir}
						inc := rng.Int64N(1 << 40)
						if rng.IntN(4) == 0 {
							inc = 0
						}
						switch r := rng.IntN(10); {
						case r == 0 && counters[k] > 0:
							// The exporter lost its state. A reset shows only
							// as a value below the last one, as with any
							// counter, so count less than before.
							inc = rng.Int64N(counters[k])
							counters[k] = 0
						case r == 1:
							continue // not scraped this time
						}
						counters[k] += inc
						tt := truth[u]
						tt[i] += inc
						truth[u] = tt
						samples = append(samples, store.Sample{User: u, Direction: dir, Value: counters[k]})
					}
				}
				commit(t, s, node, samples...)
			}
		}
		for _, u := range users {
			assertTotals(t, s, u, truth[u][0], truth[u][1])
			if got := getUser(t, s, u); got.UsedUp != truth[u][0] || got.UsedDown != truth[u][1] {
				t.Errorf("period usage of %s: %d/%d, want %d/%d", u, got.UsedUp, got.UsedDown, truth[u][0], truth[u][1])
			}
		}
	})
}

func commitEpoch(t *testing.T, s *store.Store, node string, epoch int64, samples ...store.Sample) store.CommitResult {
	t.Helper()
	res, err := s.CommitNode(bg, "", "", node, epoch, samples, s.Now())
	if err != nil {
		t.Fatalf("commit %s: %v", node, err)
	}
	return res
}

// A new counter epoch (the exporter started counting afresh) voids the
// node's checkpoints, even for a series that comes back above its old
// value, which no value comparison could detect.
func TestCommitNodeEpoch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		commitEpoch(t, s, "n1", 1000, up("a", 100), up("b", 50))
		commitEpoch(t, s, "n2", 1000, up("a", 7))
		res := commitEpoch(t, s, "n1", 1000, up("a", 120), up("b", 50))
		if res.Bytes != 20 || res.Resets != 0 {
			t.Errorf("same epoch: %+v", res)
		}
		// The exporter restarted without its state; by the time of the
		// commit a has moved 130 bytes, more than its old value.
		res = commitEpoch(t, s, "n1", 2000, up("a", 130))
		if res.Bytes != 130 || res.Resets != 2 {
			t.Errorf("new epoch: %+v, want 130 bytes and both old checkpoints void", res)
		}
		assertTotals(t, s, "a", 257, 0)
		// b vanished with the old state; when it returns it is all new.
		res = commitEpoch(t, s, "n1", 2000, up("a", 130), up("b", 60))
		if res.Bytes != 60 {
			t.Errorf("series returning after a new epoch: %+v", res)
		}
		assertTotals(t, s, "b", 110, 0)
		// An unknown epoch keeps the checkpoints, and the other node's
		// epoch is its own.
		if res := commitEpoch(t, s, "n1", 0, up("a", 131)); res.Bytes != 1 || res.Resets != 0 {
			t.Errorf("unknown epoch: %+v", res)
		}
		if res := commitEpoch(t, s, "n2", 1000, up("a", 9)); res.Bytes != 2 || res.Resets != 0 {
			t.Errorf("other node: %+v", res)
		}
	})
}

// A partial commit holds only the series that moved; the others keep
// their checkpoints. It is refused under an epoch other than the stored
// one, and every commit moves the node's cursor.
func TestCommitPartial(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		part := func(epoch, scraped int64, samples ...store.Sample) (store.CommitResult, error) {
			return s.Commit(bg, store.NodeCommit{Node: "n1", Epoch: epoch, Samples: samples, Partial: true, Scraped: scraped, At: s.Now()})
		}
		cursor := func() store.NodeCursor {
			t.Helper()
			c, err := s.NodeCursors(bg)
			if err != nil {
				t.Fatal(err)
			}
			return c["n1"]
		}
		if _, err := part(1000, 4000, up("a", 1)); !errors.Is(err, store.ErrEpochMoved) {
			t.Errorf("partial commit of a node never committed: %v", err)
		}
		res, err := s.Commit(bg, store.NodeCommit{Node: "n1", Epoch: 1000, Scraped: 5000, At: s.Now(),
			Samples: []store.Sample{up("a", 100), down("a", 200), up("b", 10)}})
		if err != nil || res.Bytes != 310 || cursor() != (store.NodeCursor{Epoch: 1000, Scraped: 5000}) {
			t.Fatalf("full commit: %+v %v, cursor %+v", res, err, cursor())
		}
		res, err = part(1000, 6000, up("a", 150))
		if err != nil || res != (store.CommitResult{Series: 1, Changed: 1, Bytes: 50}) {
			t.Errorf("partial commit: %+v %v", res, err)
		}
		assertTotals(t, s, "a", 150, 200)
		assertTotals(t, s, "b", 10, 0)
		if c := cursor(); c != (store.NodeCursor{Epoch: 1000, Scraped: 6000}) {
			t.Errorf("cursor after a partial commit: %+v", c)
		}
		// The directions not in a partial commit keep their checkpoints.
		if res, _ := part(1000, 7000, down("a", 230), up("b", 10)); res.Bytes != 30 || res.Changed != 1 {
			t.Errorf("second partial commit: %+v", res)
		}
		if res, _ := s.CommitNode(bg, "", "", "n1", 1000, []store.Sample{up("a", 150), down("a", 230), up("b", 10)}, s.Now()); res.Bytes != 0 || res.Changed != 0 {
			t.Errorf("full commit of unchanged values after partial ones: %+v", res)
		}
		// Nothing moved: only the cursor.
		before := dump(t, s)["usage_days"]
		if _, err := part(1000, 8000); err != nil || cursor().Scraped != 8000 {
			t.Errorf("empty partial commit: %v, cursor %+v", err, cursor())
		}
		if after := dump(t, s)["usage_days"]; !reflect.DeepEqual(before, after) {
			t.Errorf("an empty commit wrote to the ledger")
		}
		// Another epoch needs every series: nothing is written.
		before = dump(t, s)["counters"]
		if _, err := part(2000, 9000, up("a", 1)); !errors.Is(err, store.ErrEpochMoved) {
			t.Errorf("partial commit under a new epoch: %v", err)
		}
		if after := dump(t, s)["counters"]; !reflect.DeepEqual(before, after) || cursor().Scraped != 8000 {
			t.Errorf("a refused commit wrote")
		}
		// A commit that does not know its scrape voids the cursor.
		commitEpoch(t, s, "n1", 0, up("a", 151))
		if c := cursor(); c != (store.NodeCursor{Epoch: 1000}) {
			t.Errorf("cursor after a commit of unknown epoch: %+v", c)
		}
	})
}

// Under a known epoch a value below the checkpoint is an older reading
// (a backend that lost its last samples), not a reset: nothing is added,
// and the checkpoint stays.
func TestCommitNodeOlderReading(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		commitEpoch(t, s, "n1", 1000, up("a", 6000), down("a", 10))
		if res := commitEpoch(t, s, "n1", 1000, up("a", 1000), down("a", 20)); res.Bytes != 10 || res.Resets != 0 || res.Changed != 1 || res.Older != 1 {
			t.Errorf("older reading: %+v, want 10 bytes, no reset, one older reading", res)
		}
		if res := commitEpoch(t, s, "n1", 1000, up("a", 6007), down("a", 20)); res.Bytes != 7 {
			t.Errorf("after the older reading: %+v, want 7 bytes", res)
		}
		assertTotals(t, s, "a", 6007, 20)
	})
}

// MoveCursors moves quiet nodes' cursors forward under the lease, never
// under another epoch, never back, and creates no cursor.
func TestMoveCursors(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		for node, epoch := range map[string]int64{"n1": 1000, "n2": 2000} {
			if _, err := s.Commit(bg, store.NodeCommit{Node: node, Epoch: epoch, Scraped: 5000, At: s.Now(), Samples: []store.Sample{up("a", 1)}}); err != nil {
				t.Fatal(err)
			}
		}
		cursors := func() map[string]store.NodeCursor {
			t.Helper()
			c, err := s.NodeCursors(bg)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		moves := map[string]store.NodeCursor{"n1": {Epoch: 1000, Scraped: 9000}, "n2": {Epoch: 2001, Scraped: 9000}, "n3": {Epoch: 1, Scraped: 9000}}
		if err := s.MoveCursors(bg, "accounting", "c1", moves); !errors.Is(err, store.ErrNotLeader) {
			t.Errorf("without the lease: %v, want ErrNotLeader", err)
		}
		if ok, err := s.TryLease(bg, "accounting", "c1", 60_000); !ok || err != nil {
			t.Fatalf("lease: %v %v", ok, err)
		}
		if err := s.MoveCursors(bg, "accounting", "c1", moves); err != nil {
			t.Fatal(err)
		}
		want := map[string]store.NodeCursor{"n1": {Epoch: 1000, Scraped: 9000}, "n2": {Epoch: 2000, Scraped: 5000}}
		if got := cursors(); !reflect.DeepEqual(got, want) {
			t.Errorf("cursors %+v, want %+v (n2's epoch moved, n3 has none)", got, want)
		}
		if err := s.MoveCursors(bg, "accounting", "c1", map[string]store.NodeCursor{"n1": {Epoch: 1000, Scraped: 8000}}); err != nil {
			t.Fatal(err)
		}
		if err := s.MoveCursors(bg, "accounting", "c2", map[string]store.NodeCursor{"n2": {Epoch: 2000, Scraped: 9500}}); !errors.Is(err, store.ErrNotLeader) {
			t.Errorf("another holder: %v, want ErrNotLeader", err)
		}
		if got := cursors(); !reflect.DeepEqual(got, want) {
			t.Errorf("cursors %+v after a move back and another holder's, want %+v", got, want)
		}
	})
}

// Several nodes committed together land all or none: a group whose last
// node is refused leaves every node of it as it was (ledger, checkpoints,
// cursors, pending usage), and the same group accepted writes what the
// nodes committed one by one would.
func TestCommitNodesAllOrNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		createUser(t, s, "alice", store.UserSpec{})
		createUser(t, s, "bob", store.UserSpec{})
		at := s.Now()
		if _, err := s.CommitNodes(bg, []store.NodeCommit{
			{Node: "n1", Epoch: 1, Scraped: 1000, At: at, Samples: []store.Sample{up("alice", 100), down("bob", 10)}},
			{Node: "n2", Epoch: 1, Scraped: 1000, At: at, Samples: []store.Sample{up("alice", 7)}},
		}); err != nil {
			t.Fatal(err)
		}
		before := dump(t, s)
		// One transaction checks one lease: a group under two is refused
		// whole, before anything is written.
		_, err := s.CommitNodes(bg, []store.NodeCommit{
			{Node: "n1", Epoch: 1, Scraped: 2000, At: at, Partial: true, Samples: []store.Sample{up("alice", 150)}},
			{Node: "n2", Epoch: 1, Scraped: 2000, At: at, Partial: true, Lease: "accounting", Holder: "c2", Samples: []store.Sample{up("alice", 9)}},
		})
		if err == nil || !strings.Contains(err.Error(), "n2") {
			t.Fatalf("a group under two leases: %v, want an error naming n2", err)
		}
		if after := dump(t, s); !reflect.DeepEqual(before, after) {
			t.Fatalf("a group under two leases wrote:\nbefore %v\nafter  %v", before, after)
		}
		_, err = s.CommitNodes(bg, []store.NodeCommit{
			{Node: "n1", Epoch: 1, Scraped: 2000, At: at, Partial: true, Samples: []store.Sample{up("alice", 150)}},
			{Node: "n2", Epoch: 2, Scraped: 2000, At: at, Partial: true, Samples: []store.Sample{up("alice", 9)}},
		})
		if !errors.Is(err, store.ErrEpochMoved) || !strings.Contains(err.Error(), "n2") {
			t.Fatalf("a group with a partial commit under a new epoch: %v, want ErrEpochMoved naming n2", err)
		}
		if after := dump(t, s); !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused group wrote:\nbefore %v\nafter  %v", before, after)
		}
		res, err := s.CommitNodes(bg, []store.NodeCommit{
			{Node: "n1", Epoch: 1, Scraped: 2000, At: at, Partial: true, Samples: []store.Sample{up("alice", 150)}},
			{Node: "n2", Epoch: 1, Scraped: 2000, At: at, Partial: true, Samples: []store.Sample{up("alice", 9), down("bob", 4)}},
		})
		if err != nil || len(res) != 2 || res[0].Bytes != 50 || res[1].Bytes != 6 {
			t.Fatalf("group commit: %+v %v, want 50 and 6 bytes", res, err)
		}
		if _, err := s.FoldUsage(bg); err != nil {
			t.Fatal(err)
		}
		assertTotals(t, s, "alice", 159, 0)
		assertTotals(t, s, "bob", 0, 14)
		for name, want := range map[string]int64{"alice": 159, "bob": 14} {
			if u, err := s.GetUser(bg, name); err != nil || u.UsedUp+u.UsedDown != want {
				t.Errorf("%s's period usage after the fold: %+v %v, want %d", name, u, err, want)
			}
		}
		cur, err := s.NodeCursors(bg)
		if err != nil || cur["n1"].Scraped != 2000 || cur["n2"].Scraped != 2000 {
			t.Errorf("cursors after the group: %+v %v", cur, err)
		}
	})
}
