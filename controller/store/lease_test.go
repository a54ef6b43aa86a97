package store_test

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

const ttl = 10_000 // ms

func tryLease(t *testing.T, s *store.Store, holder string) bool {
	t.Helper()
	ok, err := s.TryLease(bg, "accounting", holder, ttl)
	if err != nil {
		t.Fatalf("TryLease(%s): %v", holder, err)
	}
	return ok
}

func TestLease(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 1, 1, 0, 0, 0))
		if !tryLease(t, s, "a") {
			t.Fatal("a could not take a free lease")
		}
		if tryLease(t, s, "b") {
			t.Fatal("b took a lease a holds")
		}
		clk.add(8 * time.Second)
		if !tryLease(t, s, "a") {
			t.Fatal("a could not renew its lease")
		}
		// Renewal moved the expiry: 8 s later the lease still is a's.
		clk.add(8 * time.Second)
		if tryLease(t, s, "b") {
			t.Fatal("b took a renewed lease before it expired")
		}
		if ok, _ := s.TryLease(bg, "sweep", "b", ttl); !ok {
			t.Error("leases of different names are not independent")
		}
		clk.add(2*time.Second + time.Millisecond)
		if !tryLease(t, s, "b") {
			t.Fatal("b could not take over an expired lease")
		}
		if tryLease(t, s, "a") {
			t.Fatal("a got its lease back while b holds it")
		}

		// Only the holder can release.
		if err := s.ReleaseLease(bg, "accounting", "a"); err != nil {
			t.Fatal(err)
		}
		if tryLease(t, s, "a") {
			t.Fatal("a released b's lease")
		}
		if err := s.ReleaseLease(bg, "accounting", "b"); err != nil {
			t.Fatal(err)
		}
		if !tryLease(t, s, "a") {
			t.Fatal("a released lease was not free at once")
		}
	})
}

// Controllers racing for a free or expired lease: exactly one wins.
func TestLeaseRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 1, 1, 0, 0, 0))
		for round := range 3 {
			var mu sync.Mutex
			var winners []string
			var wg sync.WaitGroup
			for _, h := range []string{"a", "b", "c", "d", "e"} {
				wg.Go(func() {
					ok, err := s.TryLease(bg, "accounting", h, ttl)
					if err != nil {
						t.Errorf("%s: %v", h, err)
					}
					if ok {
						mu.Lock()
						winners = append(winners, h)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(winners) != 1 {
				t.Errorf("round %d: holders %v, want exactly one", round, winners)
			}
			clk.add(time.Minute)
		}
	})
}

// The ledger is written only under the lease: a controller that lost it
// (expired, taken over) commits nothing at all.
func TestCommitNodeFencedByLease(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 1, 1, 0, 0, 0))
		createUser(t, s, "alice", store.UserSpec{OnHoldSeconds: new(int64(60))})
		samples := []store.Sample{up("alice", 10), down("alice", 20), up("ghost", 5)}
		commitAs := func(holder string) error {
			_, err := s.CommitNode(bg, "accounting", holder, "n1", 7, samples, clk.now())
			return err
		}

		refused := func(holder, why string) {
			t.Helper()
			before := dump(t, s)
			if err := commitAs(holder); !errors.Is(err, store.ErrNotLeader) {
				t.Errorf("commit %s: %v, want ErrNotLeader", why, err)
			}
			if after := dump(t, s); !reflect.DeepEqual(before, after) {
				t.Errorf("refused commit %s changed the database:\nbefore %v\nafter  %v", why, before, after)
			}
		}
		refused("a", "without any lease")
		tryLease(t, s, "b")
		refused("a", "under another holder's lease")
		clk.add(ttl*time.Millisecond + time.Millisecond)
		refused("b", "under an expired lease")

		tryLease(t, s, "a")
		if err := commitAs("a"); err != nil {
			t.Fatalf("commit by the holder: %v", err)
		}
		assertTotals(t, s, "alice", 10, 20)
		if u := getUser(t, s, "alice"); u.FirstUsedAt == nil {
			t.Errorf("holder's commit did not record first use")
		}
	})
}
