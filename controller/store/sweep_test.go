package store_test

import (
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

func sweep(t *testing.T, s *store.Store) []store.StatusChange {
	t.Helper()
	ch, err := s.Sweep(bg, "sweep")
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// Periods are calendar periods in UTC: usage resets exactly at the first
// instant of the next day, Monday, 1st of the month or 1 January, and not a
// second before.
func TestSweepPeriodResets(t *testing.T) {
	cases := []struct {
		strategy         string
		created, before  time.Time
		boundary, within time.Time
	}{
		{"day", date(2025, 1, 31, 10, 0, 0), date(2025, 1, 31, 23, 59, 59), date(2025, 2, 1, 0, 0, 0), date(2025, 2, 1, 23, 0, 0)},
		// 29 January 2025 is a Wednesday, 3 February a Monday.
		{"week", date(2025, 1, 29, 10, 0, 0), date(2025, 2, 2, 23, 59, 59), date(2025, 2, 3, 0, 0, 0), date(2025, 2, 9, 23, 59, 59)},
		// Calendar month, not 30 days: 31 January to 1 February resets.
		{"month", date(2025, 1, 31, 12, 0, 0), date(2025, 1, 31, 23, 59, 59), date(2025, 2, 1, 0, 0, 0), date(2025, 2, 28, 23, 0, 0)},
		{"month", date(2024, 2, 1, 0, 0, 0), date(2024, 2, 29, 23, 59, 59), date(2024, 3, 1, 0, 0, 0), date(2024, 3, 31, 0, 0, 0)},
		{"year", date(2025, 6, 15, 0, 0, 0), date(2025, 12, 31, 23, 59, 59), date(2026, 1, 1, 0, 0, 0), date(2026, 12, 31, 0, 0, 0)},
	}
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for _, c := range cases {
			clk := setClock(s, c.created)
			name := c.strategy + c.created.Format("20060102")
			createUser(t, s, name, store.UserSpec{ResetStrategy: new(c.strategy), TrafficLimit: new(int64(100))})
			use(t, s, "n-"+name, name, 60, 50)
			sweep(t, s)
			if u := getUser(t, s, name); u.Status != store.StatusLimited {
				t.Fatalf("%s: over quota but %s", name, u.Status)
			}

			clk.set(c.before)
			sweep(t, s)
			if u := getUser(t, s, name); u.Used() != 110 {
				t.Errorf("%s: reset before the boundary, at %v", name, c.before)
			}

			clk.set(c.boundary)
			// Users of earlier cases reset too, on their own boundaries.
			ch := changeOf(sweep(t, s), name)
			want := store.StatusChange{User: name, From: store.StatusLimited, To: store.StatusActive, Reset: true}
			if ch != want {
				t.Errorf("%s at %v: sweep changed %+v, want %+v", name, c.boundary, ch, want)
			}
			u := getUser(t, s, name)
			if u.Used() != 0 || u.Status != store.StatusActive || !u.PeriodStart.Equal(c.boundary) {
				t.Errorf("%s after the boundary: used %d, %s, period from %v", name, u.Used(), u.Status, u.PeriodStart)
			}

			// Traffic in the new period counts; the next sweep within the
			// period keeps it.
			use(t, s, "n-"+name, name, 70, 50)
			clk.set(c.within)
			sweep(t, s)
			if u := getUser(t, s, name); u.Used() != 10 {
				t.Errorf("%s within the new period: used %d, want 10", name, u.Used())
			}
		}
	})
}

func TestSweepNoResetNeverResets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 1, 1, 0, 0, 0))
		createUser(t, s, "forever", store.UserSpec{})
		use(t, s, "n1", "forever", 1, 2)
		clk.set(date(2027, 1, 1, 0, 0, 0))
		if ch := sweep(t, s); len(ch) != 0 {
			t.Errorf("sweep changed %+v", ch)
		}
		if u := getUser(t, s, "forever"); u.Used() != 3 {
			t.Errorf("used %d, want 3", u.Used())
		}
	})
}

func TestSweepStatuses(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		t0 := date(2025, 4, 10, 12, 0, 0)
		clk := setClock(s, t0)
		createUser(t, s, "expiring", store.UserSpec{ExpireAt: new(t0.Add(time.Hour))})
		createUser(t, s, "heavy", store.UserSpec{TrafficLimit: new(int64(1000))})
		createUser(t, s, "light", store.UserSpec{TrafficLimit: new(int64(1000))})
		createUser(t, s, "banned", store.UserSpec{TrafficLimit: new(int64(10)), ResetStrategy: new("day")})
		createUser(t, s, "waiting", store.UserSpec{OnHoldSeconds: new(int64(86400))})
		use(t, s, "n1", "heavy", 999, 1)
		use(t, s, "n1", "light", 999, 0)
		use(t, s, "n1", "banned", 50, 50)
		if _, err := s.SuspendUser(bg, "admin", "banned", "abuse"); err != nil {
			t.Fatal(err)
		}

		got := map[string]store.StatusChange{}
		for _, c := range sweep(t, s) {
			got[c.User] = c
		}
		if len(got) != 1 || got["heavy"].To != store.StatusLimited {
			t.Errorf("first sweep: %+v, want only heavy limited", got)
		}

		clk.set(t0.Add(time.Hour - time.Second))
		if ch := sweep(t, s); len(ch) != 0 {
			t.Errorf("sweep a second before expiry changed %+v", ch)
		}
		clk.set(t0.Add(time.Hour))
		ch := sweep(t, s)
		if len(ch) != 1 || ch[0] != (store.StatusChange{User: "expiring", From: store.StatusActive, To: store.StatusExpired}) {
			t.Errorf("sweep at expiry: %+v", ch)
		}

		// The next day resets the banned user's usage but not the ban.
		clk.set(date(2025, 4, 11, 0, 0, 0))
		ch = sweep(t, s)
		if len(ch) != 1 || ch[0] != (store.StatusChange{User: "banned", From: store.StatusDisabled, To: store.StatusDisabled, Reset: true}) {
			t.Errorf("sweep at the day boundary: %+v", ch)
		}
		if u := getUser(t, s, "banned"); u.Status != store.StatusDisabled || u.Used() != 0 {
			t.Errorf("banned user: %s, used %d", u.Status, u.Used())
		}
		if ch := sweep(t, s); len(ch) != 0 {
			t.Errorf("a repeated sweep changed %+v", ch)
		}
		if ev := events(t, s, store.EventFilter{Actor: "sweep"}); len(ev) != 3 {
			t.Errorf("%d sweep events, want one per change (3)", len(ev))
		}
		if u := getUser(t, s, "waiting"); u.Status != store.StatusOnHold || u.ExpireAt != nil {
			t.Errorf("unused on-hold user: %s, expiry %v", u.Status, u.ExpireAt)
		}
	})
}

func changeOf(chs []store.StatusChange, user string) store.StatusChange {
	for _, c := range chs {
		if c.User == user {
			return c
		}
	}
	return store.StatusChange{}
}
