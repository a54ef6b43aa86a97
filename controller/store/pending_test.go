package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// commitLater commits as the accountant does: the users' period usage
// waits for FoldUsage.
func commitLater(t *testing.T, s *store.Store, node string, samples ...store.Sample) {
	t.Helper()
	if _, err := s.Commit(bg, store.NodeCommit{Node: node, Samples: samples, At: s.Now()}); err != nil {
		t.Fatalf("commit %s: %v", node, err)
	}
}

func fold(t *testing.T, s *store.Store) int64 {
	t.Helper()
	n, err := s.FoldUsage(bg)
	if err != nil {
		t.Fatalf("fold: %v", err)
	}
	return n
}

func assertUsed(t *testing.T, s *store.Store, user string, wantUp, wantDown int64) {
	t.Helper()
	if u := getUser(t, s, user); u.UsedUp != wantUp || u.UsedDown != wantDown {
		t.Errorf("%s's period usage: %d up, %d down; want %d, %d", user, u.UsedUp, u.UsedDown, wantUp, wantDown)
	}
}

func TestFoldUsage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 11, 5, 12, 0, 0))
		createUser(t, s, "alice", store.UserSpec{})
		createUser(t, s, "hold", store.UserSpec{OnHoldSeconds: new(int64(3600))})

		// One user on three nodes: the ledger has every commit at once,
		// the period usage has none until the fold.
		commitLater(t, s, "n1", up("alice", 100), down("alice", 1000), up("hold", 1))
		commitLater(t, s, "n2", up("alice", 20), down("alice", 200))
		commitLater(t, s, "n3", up("alice", 3), down("alice", 30))
		assertTotals(t, s, "alice", 123, 1230)
		assertUsed(t, s, "alice", 0, 0)
		first := clk.now()
		clk.add(10 * time.Minute)
		commitLater(t, s, "n1", up("alice", 150), down("alice", 1000), up("hold", 5))

		if n := fold(t, s); n != 6 {
			t.Errorf("folded %d pending rows, want 6 (one per commit and user)", n)
		}
		assertUsed(t, s, "alice", 173, 1230)
		// The on-hold clock starts at the first commit that carried the
		// user's traffic, not at the fold.
		h := getUser(t, s, "hold")
		if h.UsedUp != 5 || h.FirstUsedAt == nil || !h.FirstUsedAt.Equal(first) || h.ExpireAt == nil || !h.ExpireAt.Equal(first.Add(time.Hour)) {
			t.Errorf("on-hold user after the fold: used %d, first used %v, expires %v; want 5, %v, %v", h.UsedUp, h.FirstUsedAt, h.ExpireAt, first, first.Add(time.Hour))
		}

		// Folded once: a second fold adds nothing.
		if n := fold(t, s); n != 0 {
			t.Errorf("second fold folded %d rows", n)
		}
		assertUsed(t, s, "alice", 173, 1230)
	})
}

// TestPendingUsageAndResets: traffic committed before a reset, but not
// folded yet, belongs to the period the reset ends; a user deleted and
// created again starts from nothing.
func TestPendingUsageAndResets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		createUser(t, s, "alice", store.UserSpec{})
		createUser(t, s, "bob", store.UserSpec{})
		commitLater(t, s, "n1", up("alice", 100), up("bob", 100))
		if _, err := s.ResetUsage(bg, "admin", "alice"); err != nil {
			t.Fatal(err)
		}
		commitLater(t, s, "n1", up("alice", 130), up("bob", 130))
		fold(t, s)
		assertUsed(t, s, "alice", 30, 0)
		assertUsed(t, s, "bob", 130, 0)

		commitLater(t, s, "n1", up("bob", 200))
		if err := s.DeleteUser(bg, "admin", "bob"); err != nil {
			t.Fatal(err)
		}
		createUser(t, s, "bob", store.UserSpec{})
		fold(t, s)
		assertUsed(t, s, "bob", 0, 0)
		// The ledger keeps every byte either way.
		assertTotals(t, s, "alice", 130, 0)
		assertTotals(t, s, "bob", 200, 0)
	})
}

// TestSweepFoldsFirst: the quota is judged on every committed byte.
func TestSweepFoldsFirst(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		createUser(t, s, "alice", store.UserSpec{TrafficLimit: new(int64(1000))})
		commitLater(t, s, "n1", down("alice", 600))
		commitLater(t, s, "n2", down("alice", 600))
		if _, err := s.Sweep(bg, "system:sweep"); err != nil {
			t.Fatal(err)
		}
		if u := getUser(t, s, "alice"); u.Status != store.StatusLimited || u.Used() != 1200 {
			t.Errorf("after the sweep: %s with %d used; want limited with 1200", u.Status, u.Used())
		}
	})
}

// TestFoldRaces folds, resets and commits at the same time from several
// goroutines: every byte is in the users' usage once, except what a reset
// dropped, and nothing deadlocks (MySQL would fail one of two
// transactions that lock in opposite orders).
func TestFoldRaces(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 11, 5, 12, 0, 0))
		users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
		for _, u := range users {
			createUser(t, s, u, store.UserSpec{})
		}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		const rounds = 20
		// The accountant: sequential commits; every user moves 10 bytes on
		// each of two nodes a round.
		wg.Go(func() {
			for r := 1; r <= rounds; r++ {
				var samples []store.Sample
				for _, u := range users {
					samples = append(samples, up(u, int64(10*r)))
				}
				for _, n := range []string{"n1", "n2"} {
					if _, err := s.Commit(bg, store.NodeCommit{Node: n, Samples: samples, At: s.Now()}); err != nil {
						errs <- err
						return
					}
				}
			}
		})
		// Two folders and a resetter of u0 beside it.
		for range 2 {
			wg.Go(func() {
				for range rounds {
					if _, err := s.FoldUsage(bg); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Go(func() {
			for range rounds / 2 {
				if _, err := s.ResetUsage(bg, "admin", "u0"); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		fold(t, s)
		// Users never reset hold exactly the ledger: 2 nodes x 10 bytes x
		// rounds.
		for _, u := range users[1:] {
			assertUsed(t, s, u, 2*10*rounds, 0)
		}
		if u := getUser(t, s, "u0"); u.UsedUp > 2*10*rounds || u.UsedUp%10 != 0 {
			t.Errorf("u0 after resets: %d up; want a multiple of 10 up to %d", u.UsedUp, 2*10*rounds)
		}
	})
}
