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
