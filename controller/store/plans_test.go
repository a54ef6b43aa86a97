package store_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

func TestPlans(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 7, 1, 0, 0, 0))
		created := clk.now()
		p, err := s.PutPlan(bg, "admin", store.Plan{Name: "pro", TrafficLimit: 100 << 30, ResetStrategy: "month",
			DurationSeconds: 30 * 86400, DeviceLimit: 2, Groups: []string{"us", "eu"}, Note: "pro plan"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Groups, []string{"eu", "us"}) || !p.CreatedAt.Equal(created) {
			t.Errorf("put returned %+v", p)
		}
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "basic"}); err != nil {
			t.Fatal(err)
		}

		clk.add(time.Hour)
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "pro", TrafficLimit: 200 << 30, ResetStrategy: "week"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetPlan(bg, "pro")
		if err != nil {
			t.Fatal(err)
		}
		if got.TrafficLimit != 200<<30 || got.ResetStrategy != "week" || got.DurationSeconds != 0 || len(got.Groups) != 0 {
			t.Errorf("replaced plan: %+v", got)
		}
		if !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(clk.now()) {
			t.Errorf("replacing a plan: created %v updated %v, want %v and %v", got.CreatedAt, got.UpdatedAt, created, clk.now())
		}
		if b, _ := s.GetPlan(bg, "basic"); b == nil || b.ResetStrategy != "no_reset" {
			t.Errorf("default reset strategy: %+v", b)
		}

		ps, err := s.ListPlans(bg)
		if err != nil || len(ps) != 2 || ps[0].Name != "basic" || ps[1].Name != "pro" {
			t.Errorf("list: %v %v", ps, err)
		}
		if err := s.DeletePlan(bg, "admin", "pro"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetPlan(bg, "pro"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted plan: %v", err)
		}
		if err := s.DeletePlan(bg, "admin", "pro"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if ev := events(t, s, store.EventFilter{ObjectType: "plan"}); len(ev) != 4 {
			t.Errorf("%d plan events, want 4 (put, put, put, delete)", len(ev))
		}
	})
}

func TestInvalidPlans(t *testing.T) {
	bad := map[string]store.Plan{
		"name":                {Name: "../etc"},
		"traffic_limit_bytes": {Name: "p", TrafficLimit: -1},
		"reset_strategy":      {Name: "p", ResetStrategy: "hourly"},
		"duration_seconds":    {Name: "p", DurationSeconds: -1},
		"groups":              {Name: "p", Groups: []string{"<b>"}},
	}
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for field, p := range bad {
			_, err := s.PutPlan(bg, "admin", p)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Field != field {
				t.Errorf("invalid %s: %v", field, err)
			}
		}
		if ps, _ := s.ListPlans(bg); len(ps) != 0 {
			t.Errorf("invalid plans stored: %v", ps)
		}
	})
}

func TestUserFromPlan(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		now := date(2025, 7, 16, 9, 0, 0)
		clk := setClock(s, now)
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "month", TrafficLimit: 50 << 30, ResetStrategy: "month",
			DurationSeconds: 30 * 86400, DeviceLimit: 3, Groups: []string{"eu"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "trial", TrafficLimit: 1 << 30,
			DurationSeconds: 86400, OnHoldSeconds: 7 * 86400}); err != nil {
			t.Fatal(err)
		}

		u, err := s.CreateUser(bg, "admin", "m1", "month", store.UserSpec{})
		if err != nil {
			t.Fatal(err)
		}
		if u.Plan != "month" || u.TrafficLimit != 50<<30 || u.ResetStrategy != "month" || u.DeviceLimit != 3 ||
			!slices.Equal(u.Groups, []string{"eu"}) || u.Status != store.StatusActive {
			t.Errorf("user from plan: %+v", u)
		}
		if want := now.Add(30 * 24 * time.Hour); u.ExpireAt == nil || !u.ExpireAt.Equal(want) {
			t.Errorf("expiry %v, want %v (duration from creation)", u.ExpireAt, want)
		}
		if want := date(2025, 7, 1, 0, 0, 0); !u.PeriodStart.Equal(want) {
			t.Errorf("period from %v, want %v", u.PeriodStart, want)
		}

		// The spec overrides the plan field by field.
		u, err = s.CreateUser(bg, "admin", "m2", "month", store.UserSpec{TrafficLimit: new(int64(0)), Groups: &[]string{}})
		if err != nil || u.TrafficLimit != 0 || len(u.Groups) != 0 || u.DeviceLimit != 3 {
			t.Errorf("spec over plan: %+v %v", u, err)
		}

		u, err = s.CreateUser(bg, "admin", "t1", "trial", store.UserSpec{})
		if err != nil {
			t.Fatal(err)
		}
		if u.Status != store.StatusOnHold || u.ExpireAt != nil || u.OnHoldSeconds != 7*86400 || u.FirstUsedAt != nil {
			t.Errorf("on-hold plan: status %s, expiry %v, on hold %d, first use %v", u.Status, u.ExpireAt, u.OnHoldSeconds, u.FirstUsedAt)
		}
		// Time passing without use does not start the clock.
		clk.add(30 * 24 * time.Hour)
		sweep(t, s)
		if u := getUser(t, s, "t1"); u.Status != store.StatusOnHold || u.ExpireAt != nil {
			t.Errorf("unused on-hold user after 30 days: %s, expiry %v", u.Status, u.ExpireAt)
		}

		// Users keep their copy when the plan changes or goes.
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "month", TrafficLimit: 1}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePlan(bg, "admin", "trial"); err != nil {
			t.Fatal(err)
		}
		if u := getUser(t, s, "m1"); u.TrafficLimit != 50<<30 || u.ResetStrategy != "month" {
			t.Errorf("plan change reached an existing user: %+v", u)
		}
		if u := getUser(t, s, "t1"); u.OnHoldSeconds != 7*86400 || u.Plan != "trial" {
			t.Errorf("plan deletion reached an existing user: %+v", u)
		}
	})
}

// An on-hold user's clock starts with the first traffic the ledger sees:
// expiry is first use plus the on-hold duration, and the sweep makes the
// user active.
func TestOnHoldFirstUse(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 8, 1, 0, 0, 0))
		createUser(t, s, "h", store.UserSpec{OnHoldSeconds: new(int64(3600))})

		// A series appearing at zero is not use.
		clk.add(time.Minute)
		use(t, s, "n1", "h", 0, 0)
		if u := getUser(t, s, "h"); u.FirstUsedAt != nil || u.ExpireAt != nil {
			t.Fatalf("zero traffic started the clock: first use %v, expiry %v", u.FirstUsedAt, u.ExpireAt)
		}

		clk.add(time.Minute)
		first := clk.now()
		use(t, s, "n1", "h", 10, 0)
		u := getUser(t, s, "h")
		if u.FirstUsedAt == nil || !u.FirstUsedAt.Equal(first) {
			t.Errorf("first use %v, want %v", u.FirstUsedAt, first)
		}
		if want := first.Add(time.Hour); u.ExpireAt == nil || !u.ExpireAt.Equal(want) {
			t.Errorf("expiry %v, want %v", u.ExpireAt, want)
		}

		// Another node's commit in the same second (MySQL's statement
		// accepts first_used_at as it was or as just set) keeps the clock.
		use(t, s, "n2", "h", 3, 0)
		if u2 := getUser(t, s, "h"); !u2.FirstUsedAt.Equal(*u.FirstUsedAt) || !u2.ExpireAt.Equal(*u.ExpireAt) || u2.UsedUp != 13 {
			t.Errorf("a second commit at first use: first use %v, expiry %v, used %d", u2.FirstUsedAt, u2.ExpireAt, u2.UsedUp)
		}

		clk.add(time.Minute)
		use(t, s, "n1", "h", 20, 5)
		if u2 := getUser(t, s, "h"); !u2.FirstUsedAt.Equal(*u.FirstUsedAt) || !u2.ExpireAt.Equal(*u.ExpireAt) {
			t.Errorf("later use moved the clock: first use %v, expiry %v", u2.FirstUsedAt, u2.ExpireAt)
		}
		if ch := sweep(t, s); len(ch) != 1 || ch[0].To != store.StatusActive {
			t.Errorf("sweep after first use: %+v", ch)
		}
		clk.set(first.Add(time.Hour))
		if ch := sweep(t, s); len(ch) != 1 || ch[0].To != store.StatusExpired {
			t.Errorf("sweep at the end of the on-hold duration: %+v", ch)
		}
	})
}
