package store_test

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCreateUser(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		now := date(2025, 3, 10, 12, 0, 0)
		setClock(s, now)
		u := createUser(t, s, "alice", store.UserSpec{})
		if u.Status != store.StatusActive || u.ResetStrategy != "no_reset" || u.TrafficLimit != 0 || u.ExpireAt != nil {
			t.Errorf("defaults: status %s, reset %s, limit %d, expiry %v", u.Status, u.ResetStrategy, u.TrafficLimit, u.ExpireAt)
		}
		if !u.CreatedAt.Equal(now) || len(u.Groups) != 0 || u.Plan != "" {
			t.Errorf("created %v, groups %v, plan %q", u.CreatedAt, u.Groups, u.Plan)
		}
		got := getUser(t, s, "alice")
		if got.Credentials != u.Credentials || got.SubToken != u.SubToken || !got.CreatedAt.Equal(u.CreatedAt) {
			t.Errorf("stored user differs from the one returned:\n%+v\n%+v", got, u)
		}
		byToken, err := s.UserByToken(bg, u.SubToken)
		if err != nil || byToken.Name != "alice" {
			t.Errorf("UserByToken: %v, %v", byToken, err)
		}

		_, err = s.CreateUser(bg, "admin", "alice", "", store.UserSpec{})
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate user: got %v, want ErrConflict", err)
		}
		if ev := events(t, s, store.EventFilter{ObjectName: "alice", Action: "user.create"}); len(ev) != 1 {
			t.Errorf("%d create events after a refused duplicate, want 1", len(ev))
		}
	})
}

func TestCreateUserWithSpec(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		now := date(2025, 3, 12, 8, 30, 0) // a Wednesday
		setClock(s, now)
		exp := now.Add(30 * 24 * time.Hour)
		u := createUser(t, s, "bob", store.UserSpec{
			TrafficLimit: new(int64(10 << 30)), ResetStrategy: new("week"), ExpireAt: &exp,
			DeviceLimit: new(int64(3)), Groups: &[]string{"us", "eu", "eu"}, Note: new("ünïcode note ✓"),
		})
		u = getUser(t, s, u.Name)
		if u.TrafficLimit != 10<<30 || u.ResetStrategy != "week" || u.DeviceLimit != 3 || u.Note != "ünïcode note ✓" {
			t.Errorf("fields not stored: %+v", u)
		}
		if u.ExpireAt == nil || !u.ExpireAt.Equal(exp) {
			t.Errorf("expiry %v, want %v", u.ExpireAt, exp)
		}
		if !slices.Equal(u.Groups, []string{"eu", "us"}) {
			t.Errorf("groups %v, want sorted and deduplicated [eu us]", u.Groups)
		}
		if want := date(2025, 3, 10, 0, 0, 0); !u.PeriodStart.Equal(want) {
			t.Errorf("weekly period starts %v, want Monday %v", u.PeriodStart, want)
		}
	})
}

func TestCredentials(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		seen := map[string]string{}
		for i := range 40 {
			u := createUser(t, s, fmt.Sprintf("user%02d", i), store.UserSpec{})
			c := u.Credentials
			if !uuidV4.MatchString(c.UUID) {
				t.Errorf("UUID %q is not a version 4 UUID", c.UUID)
			}
			for key, n := range map[string]int{c.SSKey16: 16, c.SSKey32: 32} {
				b, err := base64.StdEncoding.DecodeString(key)
				if err != nil || len(b) != n {
					t.Errorf("Shadowsocks 2022 key %q: %d bytes (%v), want %d", key, len(b), err, n)
				}
			}
			if len(c.Password) < 16 {
				t.Errorf("password %q too short to resist guessing", c.Password)
			}
			tok, err := base64.RawURLEncoding.DecodeString(u.SubToken)
			if err != nil || len(tok) < 16 {
				t.Errorf("subscription token %q: %d bytes (%v), want at least 128 bits", u.SubToken, len(tok), err)
			}
			for _, v := range []string{c.UUID, c.Password, c.SSKey16, c.SSKey32, u.SubToken} {
				if other, dup := seen[v]; dup {
					t.Errorf("%s reuses a secret of %s: %q", u.Name, other, v)
				}
				seen[v] = u.Name
			}
		}
	})
}

func TestInvalidUserNames(t *testing.T) {
	bad := []string{
		"", "../x", "a/b", "a b", "<script>", "alice\n", "a\x00b", "-lead", ".hidden", "ünï",
		"a,b", `a"b`, "a'b", "a%", "a;DROP TABLE users", strings.Repeat("a", 65),
	}
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for _, name := range bad {
			_, err := s.CreateUser(bg, "admin", name, "", store.UserSpec{})
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Field != "name" {
				t.Errorf("name %q: got %v, want a ValidationError on name", name, err)
			}
		}
		if _, total, _ := s.ListUsers(bg, store.UserFilter{}); total != 0 {
			t.Errorf("%d users stored from invalid names", total)
		}
		for _, name := range []string{strings.Repeat("a", 64), "a.b-c_d@e", "7"} {
			createUser(t, s, name, store.UserSpec{})
		}
	})
}

func TestInvalidUserSpec(t *testing.T) {
	specs := map[string]store.UserSpec{
		"traffic_limit_bytes": {TrafficLimit: new(int64(-1))},
		"reset_strategy":      {ResetStrategy: new("monthly")},
		"on_hold_seconds":     {OnHoldSeconds: new(int64(-5))},
		"device_limit":        {DeviceLimit: new(int64(-1))},
		"groups":              {Groups: &[]string{"eu", "a b"}},
		"note":                {Note: new(strings.Repeat("n", 1025))},
	}
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for field, spec := range specs {
			_, err := s.CreateUser(bg, "admin", "carol", "", spec)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Field != field {
				t.Errorf("invalid %s: got %v", field, err)
			}
		}
		_, err := s.CreateUser(bg, "admin", "carol", "no-such-plan", store.UserSpec{})
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Field != "plan" {
			t.Errorf("unknown plan: got %v, want a ValidationError on plan", err)
		}
		createUser(t, s, "carol", store.UserSpec{})
		for field, spec := range specs {
			if _, err := s.UpdateUser(bg, "admin", "carol", spec); !errors.As(err, &ve) {
				t.Errorf("update with invalid %s: got %v", field, err)
			}
		}
		if ev := events(t, s, store.EventFilter{Action: "user.update"}); len(ev) != 0 {
			t.Errorf("refused updates were audited: %d events", len(ev))
		}
	})
}

// Names, tokens and ledger keys compare exactly on both back ends: MySQL's
// usual case-insensitive collation must not make "Alice" and "alice" one
// user, or let a token match in the wrong case.
func TestNamesAndTokensAreCaseSensitive(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		upper := createUser(t, s, "Alice", store.UserSpec{})
		lower := createUser(t, s, "alice", store.UserSpec{})
		if _, err := s.GetUser(bg, "ALICE"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetUser(ALICE): %v, want ErrNotFound", err)
		}
		if _, err := s.UserByToken(bg, swapCase(upper.SubToken)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token in the wrong case: %v, want ErrNotFound", err)
		}
		use(t, s, "n1", "Alice", 100, 0)
		use(t, s, "n1", "alice", 7, 0)
		if u := getUser(t, s, "Alice"); u.UsedUp != 100 {
			t.Errorf("Alice used %d, want 100", u.UsedUp)
		}
		if u := getUser(t, s, lower.Name); u.UsedUp != 7 {
			t.Errorf("alice used %d, want 7", u.UsedUp)
		}
	})
}

func swapCase(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return r
	}, s)
}

func TestListUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "basic"}); err != nil {
			t.Fatal(err)
		}
		createUser(t, s, "anna", store.UserSpec{Groups: &[]string{"eu"}, Note: new("100% legit")})
		if _, err := s.CreateUser(bg, "admin", "bob_1", "basic", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		createUser(t, s, "bobx1", store.UserSpec{Groups: &[]string{"eu", "us"}})
		createUser(t, s, "carl", store.UserSpec{Groups: &[]string{"us"}, Note: new("Paid by Anna")})
		createUser(t, s, "dora", store.UserSpec{Groups: &[]string{"asia-eu", "eu-west"}})
		createUser(t, s, "emil", store.UserSpec{Groups: &[]string{"EU"}})
		createUser(t, s, "fred", store.UserSpec{})
		if _, err := s.SuspendUser(bg, "admin", "carl", "abuse"); err != nil {
			t.Fatal(err)
		}

		cases := []struct {
			name string
			f    store.UserFilter
			want []string
		}{
			{"all", store.UserFilter{}, []string{"anna", "bob_1", "bobx1", "carl", "dora", "emil", "fred"}},
			{"status", store.UserFilter{Status: store.StatusDisabled}, []string{"carl"}},
			{"group with users of no group", store.UserFilter{Group: "eu"}, []string{"anna", "bob_1", "bobx1", "fred"}},
			{"group last in list", store.UserFilter{Group: "us"}, []string{"bob_1", "bobx1", "carl", "fred"}},
			{"group is case-sensitive", store.UserFilter{Group: "EU"}, []string{"bob_1", "emil", "fred"}},
			{"plan", store.UserFilter{Plan: "basic"}, []string{"bob_1"}},
			{"search name", store.UserFilter{Search: "bob"}, []string{"bob_1", "bobx1"}},
			{"search underscore literally", store.UserFilter{Search: "b_"}, []string{"bob_1"}},
			{"search percent literally", store.UserFilter{Search: "0%"}, []string{"anna"}},
			{"search lone percent", store.UserFilter{Search: "%"}, []string{"anna"}},
			{"search escape char", store.UserFilter{Search: "!"}, nil},
			{"search backslash", store.UserFilter{Search: `\`}, nil},
			{"search note ignoring case", store.UserFilter{Search: "anna"}, []string{"anna", "carl"}},
			{"combined", store.UserFilter{Group: "us", Status: store.StatusActive, Search: "b"}, []string{"bob_1", "bobx1"}},
		}
		for _, c := range cases {
			us, total, err := s.ListUsers(bg, c.f)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := names(us); !slices.Equal(got, c.want) || total != len(c.want) {
				t.Errorf("%s: got %v (total %d), want %v", c.name, got, total, c.want)
			}
		}
	})
}

func TestListUsersPagination(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		var all []string
		for _, n := range []string{"u7", "u1", "u5", "u3", "u2", "u6", "u4"} {
			createUser(t, s, n, store.UserSpec{})
		}
		for off := 0; off < 9; off += 3 {
			us, total, err := s.ListUsers(bg, store.UserFilter{Limit: 3, Offset: off})
			if err != nil {
				t.Fatal(err)
			}
			if total != 7 {
				t.Errorf("offset %d: total %d, want 7", off, total)
			}
			all = append(all, names(us)...)
		}
		if want := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}; !slices.Equal(all, want) {
			t.Errorf("pages joined: %v, want %v", all, want)
		}
		us, total, err := s.ListUsers(bg, store.UserFilter{Limit: 3, Offset: 50})
		if err != nil || len(us) != 0 || total != 7 {
			t.Errorf("past the end: %v, total %d, %v", names(us), total, err)
		}
	})
}

func TestUpdateUserLiftsLimitedAndExpired(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		c := setClock(s, date(2025, 5, 1, 10, 0, 0))
		createUser(t, s, "lim", store.UserSpec{TrafficLimit: new(int64(1000))})
		createUser(t, s, "exp", store.UserSpec{ExpireAt: new(c.now().Add(time.Hour))})
		use(t, s, "n1", "lim", 700, 800)
		c.add(2 * time.Hour)
		sweep(t, s)
		if u := getUser(t, s, "lim"); u.Status != store.StatusLimited {
			t.Fatalf("over quota user is %s", u.Status)
		}
		if u := getUser(t, s, "exp"); u.Status != store.StatusExpired {
			t.Fatalf("expired user is %s", u.Status)
		}

		u, err := s.UpdateUser(bg, "admin", "lim", store.UserSpec{TrafficLimit: new(int64(1400))})
		if err != nil || u.Status != store.StatusLimited {
			t.Errorf("a limit still below usage lifted the limit: %v %v", u.Status, err)
		}
		u, err = s.UpdateUser(bg, "admin", "lim", store.UserSpec{TrafficLimit: new(int64(2000))})
		if err != nil || u.Status != store.StatusActive || u.Used() != 1500 {
			t.Errorf("raised limit: status %v, used %d, %v", u.Status, u.Used(), err)
		}

		u, err = s.UpdateUser(bg, "admin", "exp", store.UserSpec{ExpireAt: new(c.now().Add(24 * time.Hour))})
		if err != nil || u.Status != store.StatusActive {
			t.Errorf("new expiry: status %v, %v", u.Status, err)
		}
		u, err = s.UpdateUser(bg, "admin", "exp", store.UserSpec{ExpireAt: &time.Time{}})
		if err != nil || u.ExpireAt != nil || u.Status != store.StatusActive {
			t.Errorf("zero time must clear the expiry: %v %v %v", u.ExpireAt, u.Status, err)
		}
		u, err = s.UpdateUser(bg, "admin", "exp", store.UserSpec{ExpireAt: new(c.now().Add(-time.Minute))})
		if err != nil || u.Status != store.StatusExpired {
			t.Errorf("past expiry: status %v, %v", u.Status, err)
		}

		if _, err := s.UpdateUser(bg, "admin", "nobody", store.UserSpec{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown user: %v", err)
		}
	})
}

func TestUpdateUserResetStrategyStartsPeriod(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 5, 14, 10, 0, 0))
		createUser(t, s, "m", store.UserSpec{})
		u, err := s.UpdateUser(bg, "admin", "m", store.UserSpec{ResetStrategy: new("month")})
		if err != nil || !u.PeriodStart.Equal(date(2025, 5, 1, 0, 0, 0)) {
			t.Errorf("period start %v (%v), want 1 May", u.PeriodStart, err)
		}
	})
}

func TestSuspendResume(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		c := setClock(s, date(2025, 6, 1, 0, 0, 0))
		createUser(t, s, "a", store.UserSpec{TrafficLimit: new(int64(100))})
		createUser(t, s, "b", store.UserSpec{OnHoldSeconds: new(int64(3600))})
		createUser(t, s, "c", store.UserSpec{ExpireAt: new(c.now().Add(time.Hour))})
		createUser(t, s, "d", store.UserSpec{})
		use(t, s, "n1", "a", 60, 60)
		for _, n := range []string{"a", "b", "c", "d"} {
			u, err := s.SuspendUser(bg, "alert:UserAbuse", n, "alert UserAbuse")
			if err != nil || u.Status != store.StatusDisabled || u.StatusReason != "alert UserAbuse" {
				t.Fatalf("suspend %s: %+v %v", n, u, err)
			}
		}
		c.add(2 * time.Hour)
		// Neither the sweep nor an update lifts a suspension.
		sweep(t, s)
		if _, err := s.UpdateUser(bg, "admin", "a", store.UserSpec{TrafficLimit: new(int64(0))}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"a", "b", "c", "d"} {
			if u := getUser(t, s, n); u.Status != store.StatusDisabled {
				t.Errorf("%s is %s without a resume", n, u.Status)
			}
		}
		if _, err := s.UpdateUser(bg, "admin", "a", store.UserSpec{TrafficLimit: new(int64(100))}); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"a": store.StatusLimited, "b": store.StatusOnHold, "c": store.StatusExpired, "d": store.StatusActive}
		for n, st := range want {
			u, err := s.ResumeUser(bg, "admin", n)
			if err != nil || u.Status != st || u.StatusReason != "" {
				t.Errorf("resumed %s: status %q reason %q (%v), want %s", n, u.Status, u.StatusReason, err, st)
			}
		}
		if _, err := s.SuspendUser(bg, "admin", "nobody", ""); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("suspend unknown user: %v", err)
		}
	})
}

func TestRotateToken(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		old := createUser(t, s, "alice", store.UserSpec{})
		u, err := s.RotateToken(bg, "admin", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if u.SubToken == old.SubToken || u.SubToken == "" {
			t.Fatalf("token not rotated: %q", u.SubToken)
		}
		if u.Credentials != old.Credentials {
			t.Errorf("rotating the subscription token changed the proxy credentials")
		}
		if _, err := s.UserByToken(bg, old.SubToken); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old token still works: %v", err)
		}
		if got, err := s.UserByToken(bg, u.SubToken); err != nil || got.Name != "alice" {
			t.Errorf("new token: %v %v", got, err)
		}
		if _, err := s.UserByToken(bg, ""); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("empty token: %v", err)
		}
	})
}

func TestResetUsage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 6, 1, 0, 0, 0))
		createUser(t, s, "a", store.UserSpec{TrafficLimit: new(int64(100))})
		use(t, s, "n1", "a", 70, 80)
		sweep(t, s)
		u, err := s.ResetUsage(bg, "admin", "a")
		if err != nil || u.Used() != 0 || u.Status != store.StatusActive {
			t.Fatalf("after reset: used %d status %s (%v)", u.Used(), u.Status, err)
		}
		// The history stays; only the period counter restarts, and the
		// node's checkpoint is untouched so no traffic is counted twice.
		if up, down, _ := s.LedgerTotal(bg, "a"); up != 70 || down != 80 {
			t.Errorf("ledger after reset: %d/%d, want 70/80", up, down)
		}
		use(t, s, "n1", "a", 75, 80)
		if u := getUser(t, s, "a"); u.Used() != 5 {
			t.Errorf("used %d after 5 more bytes, want 5", u.Used())
		}
	})
}

func TestDeleteUser(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		old := createUser(t, s, "alice", store.UserSpec{})
		use(t, s, "n1", "alice", 10, 20)
		if err := s.DeleteUser(bg, "admin", "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUser(bg, "alice"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted user found: %v", err)
		}
		if _, err := s.UserByToken(bg, old.SubToken); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted user's token works: %v", err)
		}
		if err := s.DeleteUser(bg, "admin", "alice"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if up, down, _ := s.LedgerTotal(bg, "alice"); up != 10 || down != 20 {
			t.Errorf("ledger history lost on delete: %d/%d", up, down)
		}
		again := createUser(t, s, "alice", store.UserSpec{})
		if again.SubToken == old.SubToken || again.Credentials == old.Credentials {
			t.Errorf("a recreated user got the deleted user's secrets")
		}
	})
}

// A no_reset user's one period begins when the user is created (or last
// reset by hand), never at the Unix epoch.
func TestNoResetPeriodStartIsTrue(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		c := setClock(s, date(2025, 5, 14, 10, 0, 0))
		createUser(t, s, "n", store.UserSpec{})
		u := getUser(t, s, "n")
		if want := date(2025, 5, 14, 10, 0, 0); !u.PeriodStart.Equal(want) {
			t.Errorf("no_reset period starts %v, want creation %v", u.PeriodStart, want)
		}
		c.set(date(2025, 6, 2, 8, 0, 0))
		if _, err := s.ResetUsage(bg, "admin", "n"); err != nil {
			t.Fatal(err)
		}
		if u := getUser(t, s, "n"); !u.PeriodStart.Equal(date(2025, 6, 2, 8, 0, 0)) {
			t.Errorf("after a manual reset the period starts %v, want the reset", u.PeriodStart)
		}
		// month -> no_reset keeps the usage, so the period keeps its start.
		if _, err := s.UpdateUser(bg, "admin", "n", store.UserSpec{ResetStrategy: new("month")}); err != nil {
			t.Fatal(err)
		}
		c.set(date(2025, 6, 20, 8, 0, 0))
		u, err := s.UpdateUser(bg, "admin", "n", store.UserSpec{ResetStrategy: new("no_reset")})
		if err != nil || !u.PeriodStart.Equal(date(2025, 6, 1, 0, 0, 0)) {
			t.Errorf("month -> no_reset: period starts %v (%v), want 1 June (usage carries over)", u.PeriodStart, err)
		}
		// The sweep never resets a no_reset user.
		c.set(date(2026, 1, 1, 0, 0, 1))
		if _, err := s.Sweep(bg, "sweeper"); err != nil {
			t.Fatal(err)
		}
		if u := getUser(t, s, "n"); !u.PeriodStart.Equal(date(2025, 6, 1, 0, 0, 0)) {
			t.Errorf("after a sweep the no_reset period starts %v", u.PeriodStart)
		}
	})
}

// no_reset rows written before periods were dated hold 0: the API shows
// the user's creation instead of 1970.
func TestLegacyNoResetPeriodStartShowsCreation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 5, 14, 10, 0, 0))
		createUser(t, s, "old", store.UserSpec{})
		if _, err := s.DB().Exec(`UPDATE users SET period_start = 0 WHERE name = 'old'`); err != nil {
			t.Fatal(err)
		}
		if u := getUser(t, s, "old"); !u.PeriodStart.Equal(date(2025, 5, 14, 10, 0, 0)) {
			t.Errorf("legacy no_reset period starts %v, want creation", u.PeriodStart)
		}
	})
}

// Usage order across statuses is read as a merge of each status's index
// (ListUsers): every page, forward and reversed, with and without the
// "over 90 %" filter, must be the plain sort's.
func TestListUsersByUsageAcrossStatuses(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		type row struct {
			name     string
			used, id int64
			over90   bool
		}
		var rows []row
		for i := range 14 {
			name := fmt.Sprintf("u%02d", i)
			limit := int64(1000)
			createUser(t, s, name, store.UserSpec{TrafficLimit: &limit})
			used := int64(i*37%10) * 100 // ties, broken by id
			if used > 0 {
				if _, err := s.CommitNode(bg, "", "", "n1", 0, []store.Sample{{User: name, Direction: "upload", Value: used}}, s.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if i%3 == 0 {
				if _, err := s.SuspendUser(bg, "admin", name, "test"); err != nil {
					t.Fatal(err)
				}
			}
			rows = append(rows, row{name: name, used: used, id: int64(i), over90: used >= 900})
		}
		for _, sort := range []string{"used", "-used"} {
			for _, over90 := range []bool{false, true} {
				var want []string
				sorted := slices.Clone(rows)
				slices.SortFunc(sorted, func(a, b row) int {
					c := cmp.Or(cmp.Compare(a.used, b.used), cmp.Compare(a.id, b.id))
					if sort == "-used" {
						return -c
					}
					return c
				})
				for _, r := range sorted {
					if !over90 || r.over90 {
						want = append(want, r.name)
					}
				}
				var got []string
				for off := 0; off < len(rows); off += 4 {
					us, total, err := s.ListUsers(bg, store.UserFilter{Sort: sort, Over90: over90, Limit: 4, Offset: off})
					if err != nil {
						t.Fatal(err)
					}
					if total != len(want) {
						t.Errorf("sort %s over90 %v offset %d: total %d, want %d", sort, over90, off, total, len(want))
					}
					got = append(got, names(us)...)
				}
				if !slices.Equal(got, want) {
					t.Errorf("sort %s over90 %v: pages %v, want %v", sort, over90, got, want)
				}
			}
		}
	})
}

// searchMatches is the search's meaning on each back end, written out:
// a substring of the name or the note, case ignored. On MySQL every
// script's case is ignored (LOWER); SQLite's LIKE ignores ASCII case only
// (the search is lowered first, so a lower-case search still finds
// upper-case ASCII).
func searchMatches(backend, text, search string) bool {
	if backend == "mysql" {
		return strings.Contains(strings.ToLower(text), strings.ToLower(search))
	}
	asciiLower := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'A' && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, s)
	}
	return strings.Contains(asciiLower(text), asciiLower(strings.ToLower(search)))
}

// searchProbes are searches drawn from the users' names and notes: every
// run of two to five characters, some in swapped case, and a few that
// match nothing.
func searchProbes(us []*store.User) []string {
	seen := map[string]bool{}
	var out []string
	add := func(q string) {
		if q != "" && !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	for _, u := range us {
		for _, text := range []string{u.Name, u.Note} {
			rs := []rune(text)
			for n := 2; n <= 5; n++ {
				for i := 0; i+n <= len(rs); i++ {
					add(string(rs[i : i+n]))
					if i%3 == 0 {
						add(swapCase(string(rs[i : i+n])))
					}
				}
			}
		}
	}
	for _, q := range []string{"zzzz", "نامو", "我们的", "жжж", "%_%", "!!!"} {
		add(q)
	}
	return out
}

// checkSearches compares every probe's result, through s (whole fleet or
// a reseller's view), with searchMatches over the users s sees.
func checkSearches(t *testing.T, step string, s *store.Store) {
	t.Helper()
	all, _, err := s.ListUsers(bg, store.UserFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range searchProbes(all) {
		var want []string
		for _, u := range all {
			if searchMatches(s.Backend(), u.Name, q) || searchMatches(s.Backend(), u.Note, q) {
				want = append(want, u.Name)
			}
		}
		got, total, err := s.ListUsers(bg, store.UserFilter{Search: q})
		if err != nil {
			t.Fatalf("%s: search %q: %v", step, q, err)
		}
		if !slices.Equal(names(got), want) || total != len(want) {
			t.Errorf("%s: search %q: got %v (total %d), want %v", step, q, names(got), total, want)
		}
		// The bulk actions' "everything matching" reads the same filter.
		matching, err := s.UserNames(bg, store.UserFilter{Search: q})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(matching, want) {
			t.Errorf("%s: names matching %q: %v, want %v", step, q, matching, want)
		}
	}
}

// checkGramsExact fails when the indexes of the search and the group
// filter differ from ones built afresh from the users: a missing row would
// hide a user from a search or a group, an extra one is a leak the index
// never sheds.
func checkGramsExact(t *testing.T, step string, s *store.Store) {
	t.Helper()
	before := append(dumpTable(t, s, "user_grams"), dumpTable(t, s, "user_groups")...)
	if err := s.RebuildUserSearch(bg); err != nil {
		t.Fatal(err)
	}
	after := append(dumpTable(t, s, "user_grams"), dumpTable(t, s, "user_groups")...)
	if !slices.Equal(before, after) {
		var missing, extra []string
		for _, r := range after {
			if !slices.Contains(before, r) {
				missing = append(missing, r)
			}
		}
		for _, r := range before {
			if !slices.Contains(after, r) {
				extra = append(extra, r)
			}
		}
		t.Errorf("%s: search index out of step with the users: missing %v, extra %v", step, missing, extra)
	}
}

// The search finds what it found before the trigram index, in any
// script, after every kind of write: create, note edits, the bulk
// actions, deletes, through a reseller's view too.
func TestSearchFollowsWrites(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "basic", TrafficLimit: 10 << 30}); err != nil {
			t.Fatal(err)
		}
		createAdmin(t, s, "shop", store.RoleReseller, nil)
		shop := s.OwnedBy("shop")
		limit := int64(1 << 30)
		expire := s.Now().Add(48 * time.Hour)
		notes := map[string]string{
			"alice":  "Платит Наталья, VIP клиент",
			"bob":    "付款人 张伟 每月续费",
			"cyrus":  "پرداخت توسط علی، تمدید ماهانه",
			"Dmitri": "",
			"elena":  "MiXeD Case NOTE with ÄÖÜ",
			"x1":     "ab",
			"y_z":    "50%_off! deal",
		}
		for _, n := range []string{"alice", "bob", "cyrus", "Dmitri", "elena", "x1", "y_z"} {
			createUser(t, s, n, store.UserSpec{Note: new(notes[n]), TrafficLimit: &limit, ExpireAt: &expire})
		}
		if _, err := shop.CreateUser(bg, "admin", "shopper1", "", store.UserSpec{Note: new("наталья из магазина")}); err != nil {
			t.Fatal(err)
		}
		if _, err := shop.CreateUser(bg, "admin", "shopper2", "", store.UserSpec{Note: new("张伟的朋友")}); err != nil {
			t.Fatal(err)
		}
		step := func(name string) {
			t.Helper()
			checkSearches(t, name, s)
			checkSearches(t, name+" (reseller)", shop)
			checkGramsExact(t, name, s)
		}
		step("created")

		// The probes above are exact; these say in words what must hold.
		want := map[string][]string{"张伟": {"bob", "shopper2"}, "наталья": {"shopper1"}, "توسط علی": {"cyrus"}, "50%_o": {"y_z"}, "with äö": {}}
		if s.Backend() == "mysql" {
			// Every script's case; SQLite's LIKE ignores only ASCII's
			// (README: users list), and that is unchanged.
			want["наталья"] = []string{"alice", "shopper1"}
			want["with äö"] = []string{"elena"}
		}
		for q, w := range want {
			if got, _, err := s.ListUsers(bg, store.UserFilter{Search: q}); err != nil || !slices.Equal(names(got), w) && len(got)+len(w) > 0 {
				t.Errorf("search %q: %v (%v), want %v", q, names(got), err, w)
			}
		}
		if got, n, err := shop.ListUsers(bg, store.UserFilter{Search: "张伟"}); err != nil || !slices.Equal(names(got), []string{"shopper2"}) || n != 1 {
			t.Errorf("reseller's search: %v, total %d (%v); want only its own user", names(got), n, err)
		}

		// Note edits: the old text no longer matches, the new one does.
		if _, err := s.UpdateUser(bg, "admin", "alice", store.UserSpec{Note: new("Оплата: Сергей")}); err != nil {
			t.Fatal(err)
		}
		if _, err := shop.UpdateUser(bg, "admin", "shopper2", store.UserSpec{Note: new("")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateUser(bg, "admin", "Dmitri", store.UserSpec{Note: new("Новый клиент 张伟")}); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := s.ListUsers(bg, store.UserFilter{Search: "张伟"}); !slices.Equal(names(got), []string{"Dmitri", "bob"}) {
			t.Errorf("search after note edits: %v, want [Dmitri bob]", names(got))
		}
		step("notes edited")

		// The bulk actions and the other single-user changes rewrite the
		// row but not its name or note.
		for _, n := range []string{"alice", "bob", "cyrus", "elena"} {
			if _, err := s.ExtendUser(bg, "admin", n, 30); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AddTraffic(bg, "admin", n, 1<<20); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SetPlan(bg, "admin", n, "basic"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SuspendUser(bg, "admin", n, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ResumeUser(bg, "admin", n); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ResetUsage(bg, "admin", n); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RotateToken(bg, "admin", n); err != nil {
				t.Fatal(err)
			}
		}
		use(t, s, "n1", "elena", 1<<29, 1<<29)
		step("bulk actions")

		for _, n := range []string{"bob", "x1"} {
			if err := s.DeleteUser(bg, "admin", n); err != nil {
				t.Fatal(err)
			}
		}
		if err := shop.DeleteUser(bg, "admin", "shopper1"); err != nil {
			t.Fatal(err)
		}
		step("deleted")
		// A name freed by a delete, taken again with another note.
		createUser(t, s, "bob", store.UserSpec{Note: new("второй Боб")})
		step("name reused")

		// Paging a search: the total counts every match, not the page.
		for i := range 5 {
			createUser(t, s, fmt.Sprintf("page%d", i), store.UserSpec{Note: new("общая заметка")})
		}
		us, total, err := s.ListUsers(bg, store.UserFilter{Search: "щая зам", Limit: 2, Offset: 2, Sort: "-created"})
		if err != nil || !slices.Equal(names(us), []string{"page2", "page1"}) || total != 5 {
			t.Errorf("a page of a search: %v, total %d (%v); want [page2 page1], 5", names(us), total, err)
		}
	})
}

// The search reads the trigram index: an index missing a user's rows
// hides it, which is what checkGramsExact guards against, and
// RebuildUserSearch repairs it.
func TestSearchIndexIsReadAndRebuilt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		createUser(t, s, "alice", store.UserSpec{Note: new("платит Наталья")})
		createUser(t, s, "bob", store.UserSpec{Note: new("платит Борис")})
		search := func() []string {
			us, _, err := s.ListUsers(bg, store.UserFilter{Search: "платит"})
			if err != nil {
				t.Fatal(err)
			}
			return names(us)
		}
		if got := search(); !slices.Equal(got, []string{"alice", "bob"}) {
			t.Fatalf("search: %v", got)
		}
		if _, err := s.DB().Exec(`DELETE FROM user_grams WHERE user_id = (SELECT id FROM users WHERE name = 'bob')`); err != nil {
			t.Fatal(err)
		}
		if got := search(); !slices.Equal(got, []string{"alice"}) {
			t.Fatalf("with bob's trigrams gone the search still found %v: it does not read the index", got)
		}
		if err := s.RebuildUserSearch(bg); err != nil {
			t.Fatal(err)
		}
		if got := search(); !slices.Equal(got, []string{"alice", "bob"}) {
			t.Errorf("after the rebuild: %v", got)
		}
	})
}

// The migrations that add the indexes fill them from the users there are.
func TestSearchIndexMigrationFillsIt(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		createUser(t, s, "alice", store.UserSpec{Note: new("客户 王芳"), Groups: &[]string{"eu"}})
		createUser(t, s, "bob", store.UserSpec{Note: new("مشتری قدیمی")})
		v, err := s.SchemaVersion(bg)
		if err != nil {
			t.Fatal(err)
		}
		// As a database migrated before the indexes were filled: no
		// rows, the filling steps (54, 57) not run.
		for _, q := range []string{`DELETE FROM user_grams`, `DELETE FROM user_groups`, `DELETE FROM schema_migrations WHERE version IN (54, 57)`} {
			if _, err := s.DB().Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = db.Open(t)
		for q, want := range map[string]string{"户 王芳": "alice", "تری قدی": "bob", "ALICE": "alice"} {
			if us, _, err := s.ListUsers(bg, store.UserFilter{Search: q}); err != nil || !slices.Equal(names(us), []string{want}) {
				t.Errorf("search %q after the migration: %v (%v), want %s", q, names(us), err, want)
			}
		}
		if us, _, err := s.ListUsers(bg, store.UserFilter{Group: "us"}); err != nil || !slices.Equal(names(us), []string{"bob"}) {
			t.Errorf("group us after the migration: %v (%v), want [bob]", names(us), err)
		}
		checkGramsExact(t, "migrated", s)
		if got, _ := s.SchemaVersion(bg); got != v {
			t.Errorf("schema version %d after the migration, want %d", got, v)
		}
	})
}

// "Over 90 %" reads differently by usage on MySQL (the usage index with
// the limit, migration 49) than by other orders (the over90 column): both
// must keep the same users, to the byte at the boundary.
func TestOver90SameByEveryOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		// limit 1005: 90 % is 904.5 bytes; used 904 is under, 905 over.
		cases := []struct {
			name        string
			limit, used int64
			over        bool
		}{
			{"a", 1005, 904, false}, {"b", 1005, 905, true}, {"c", 1000, 899, false}, {"d", 1000, 900, true},
			{"e", 1000, 1500, true}, {"f", 0, 5000, false}, {"g", 10 << 30, 9 << 30, true}, {"h", 10 << 30, 9<<30 - 1, false},
		}
		var want []string
		for _, c := range cases {
			createUser(t, s, c.name, store.UserSpec{TrafficLimit: &c.limit})
			use(t, s, "n1", c.name, c.used, 0)
			if c.over {
				want = append(want, c.name)
			}
		}
		if _, err := s.SuspendUser(bg, "admin", "d", "test"); err != nil {
			t.Fatal(err)
		}
		for _, sort := range []string{"name", "used", "-used", "expire", "-limit"} {
			for _, limit := range []int{0, 2} {
				us, total, err := s.ListUsers(bg, store.UserFilter{Over90: true, Sort: sort, Limit: limit})
				if err != nil {
					t.Fatal(err)
				}
				got := names(us)
				if limit == 0 {
					slices.Sort(got)
					if !slices.Equal(got, want) {
						t.Errorf("over 90 %% by %s: %v, want %v", sort, got, want)
					}
				} else if len(got) != 2 {
					t.Errorf("over 90 %% by %s, a page of 2: %v", sort, got)
				}
				if total != len(want) {
					t.Errorf("over 90 %% by %s (limit %d): total %d, want %d", sort, limit, total, len(want))
				}
			}
		}
	})
}

// checkGroups compares the group filter, alone and with a status, through
// s, with MayUse over the users s sees; a page of one makes the total a
// count.
func checkGroups(t *testing.T, step string, s *store.Store) {
	t.Helper()
	all, _, err := s.ListUsers(bg, store.UserFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"eu", "EU", "us", "asia", "asia-eu", "nowhere", "eu,us"} {
		for _, status := range []string{"", store.StatusActive, store.StatusDisabled} {
			var want []string
			for _, u := range all {
				if u.MayUse(g) && (status == "" || u.Status == status) {
					want = append(want, u.Name)
				}
			}
			if g == "eu,us" {
				// Not a group name; the list's own test (INSTR of
				// ",eu,us,") matches users with those two in a row and
				// users with none.
				want = nil
				for _, u := range all {
					if (len(u.Groups) == 0 || strings.Contains(","+strings.Join(u.Groups, ",")+",", ",eu,us,")) && (status == "" || u.Status == status) {
						want = append(want, u.Name)
					}
				}
			}
			got, total, err := s.ListUsers(bg, store.UserFilter{Group: g, Status: status})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), want) || total != len(want) {
				t.Errorf("%s: group %q status %q: %v (total %d), want %v", step, g, status, names(got), total, want)
			}
			_, total, err = s.ListUsers(bg, store.UserFilter{Group: g, Status: status, Limit: 1, Sort: "-limit"})
			if err != nil {
				t.Fatal(err)
			}
			if total != len(want) {
				t.Errorf("%s: group %q status %q, a page of one: total %d, want %d", step, g, status, total, len(want))
			}
		}
	}
}

// The group filter keeps its meaning (a user with no group may use every
// group; names compare with case) after every write of a user's groups:
// create, edit, a plan's groups, a reseller's default groups, delete.
func TestGroupFilterFollowsWrites(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "asia", Groups: []string{"asia", "asia-eu"}}); err != nil {
			t.Fatal(err)
		}
		createAdmin(t, s, "shop", store.RoleReseller, &store.Limits{Groups: []string{"eu", "us"}})
		shop := s.OwnedBy("shop")
		createUser(t, s, "a", store.UserSpec{Groups: &[]string{"eu"}})
		createUser(t, s, "b", store.UserSpec{Groups: &[]string{"eu", "us"}})
		createUser(t, s, "c", store.UserSpec{Groups: &[]string{"EU"}})
		createUser(t, s, "d", store.UserSpec{})
		createUser(t, s, "e", store.UserSpec{Groups: &[]string{"asia-eu"}})
		if _, err := shop.CreateUser(bg, "admin", "s1", "", store.UserSpec{}); err != nil { // gets eu, us
			t.Fatal(err)
		}
		if _, err := s.SuspendUser(bg, "admin", "b", "test"); err != nil {
			t.Fatal(err)
		}
		step := func(name string) {
			t.Helper()
			checkGroups(t, name, s)
			checkGroups(t, name+" (reseller)", shop)
			checkGramsExact(t, name, s)
		}
		step("created")
		if _, err := s.UpdateUser(bg, "admin", "a", store.UserSpec{Groups: &[]string{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateUser(bg, "admin", "d", store.UserSpec{Groups: &[]string{"us"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetPlan(bg, "admin", "c", "asia"); err != nil {
			t.Fatal(err)
		}
		if _, err := shop.UpdateUser(bg, "admin", "s1", store.UserSpec{Groups: &[]string{"us"}}); err != nil {
			t.Fatal(err)
		}
		step("groups changed")
		if err := s.DeleteUser(bg, "admin", "e"); err != nil {
			t.Fatal(err)
		}
		createUser(t, s, "e", store.UserSpec{Groups: &[]string{"eu", "asia"}})
		step("deleted and created again")
	})
}
