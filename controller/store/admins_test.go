package store_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/totp"
)

func TestPasswordHashing(t *testing.T) {
	h := store.HashPassword("correct horse battery")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not name argon2id with OWASP's parameters", h)
	}
	if h2 := store.HashPassword("correct horse battery"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	if !store.CheckPassword(h, "correct horse battery") {
		t.Error("the right password is refused")
	}
	for _, wrong := range []string{"correct horse batterY", "", "correct horse battery "} {
		if store.CheckPassword(h, wrong) {
			t.Errorf("%q accepted", wrong)
		}
	}
	// A hash whose parameters are tampered with to be cheap matches nothing.
	if store.CheckPassword(strings.Replace(h, "$argon2id$", "$argon2i$", 1), "correct horse battery") {
		t.Error("an argon2i hash was accepted")
	}
}

func TestPasswordRules(t *testing.T) {
	for pw, ok := range map[string]bool{
		"short-pass1":             false, // 11 characters
		"twelve-chars":            true,
		"Password123456":          false, // common, whatever the case
		"qwertyuiop123":           false,
		"ünïcödé-pässwörd":        true,
		strings.Repeat("x", 2000): false,
	} {
		err := store.CheckPasswordRules(pw)
		if (err == nil) != ok {
			t.Errorf("%.20q: %v, want ok=%v", pw, err, ok)
		}
	}
}

func createAdmin(t *testing.T, s *store.Store, name, role string, l *store.Limits) *store.Admin {
	t.Helper()
	a, err := s.CreateAdmin(bg, "admin:root", name, "a-long-password-"+name, store.AdminSpec{Role: &role, Limits: l})
	if err != nil {
		t.Fatalf("create admin %s: %v", name, err)
	}
	return a
}

func TestAdmins(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		createAdmin(t, s, "root", store.RoleOwner, nil)
		op := createAdmin(t, s, "op", store.RoleOperator, nil)
		if op.Role != store.RoleOperator || op.Disabled || op.TOTP || op.Limits != nil {
			t.Errorf("created %+v", op)
		}
		role := store.RoleOwner
		if _, err := s.CreateAdmin(bg, "x", "op", "another-long-password", store.AdminSpec{Role: &role}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate name: %v", err)
		}
		bad := "god"
		if _, err := s.CreateAdmin(bg, "x", "eve", "another-long-password", store.AdminSpec{Role: &bad}); err == nil {
			t.Error("unknown role accepted")
		}
		if _, err := s.CreateAdmin(bg, "x", "eve", "123456789012", store.AdminSpec{Role: &role}); err == nil {
			t.Error("a common password accepted")
		}
		l, err := s.AdminLogin(bg, "op")
		if err != nil || !store.CheckPassword(l.PasswordHash, "a-long-password-op") {
			t.Fatalf("login of op: %+v %v", l, err)
		}
		// Nothing a reader of the database could log in with is stored
		// in the clear.
		for _, row := range dumpTable(t, s, "admins") {
			if strings.Contains(row, "a-long-password") {
				t.Errorf("password stored in the clear: %s", row)
			}
		}

		// The last enabled owner can be neither demoted, disabled nor
		// deleted; once there is a second one, it can.
		yes := true
		if _, err := s.UpdateAdmin(bg, "x", "root", store.AdminSpec{Disabled: &yes}); err == nil {
			t.Error("the last owner was disabled")
		}
		if err := s.DeleteAdmin(bg, "x", "root"); err == nil {
			t.Error("the last owner was deleted")
		}
		createAdmin(t, s, "root2", store.RoleOwner, nil)
		if err := s.DeleteAdmin(bg, "x", "root"); err != nil {
			t.Errorf("deleting one of two owners: %v", err)
		}

		// A password change ends the account's sessions.
		tok, err := s.CreateSession(bg, "op", "192.0.2.1", "test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if se, err := s.SessionFor(bg, tok, time.Hour); err != nil || se == nil || se.Role != store.RoleOperator {
			t.Fatalf("fresh session: %+v %v", se, err)
		}
		if err := s.SetAdminPassword(bg, "admin:root2", "op", "a-brand-new-password"); err != nil {
			t.Fatal(err)
		}
		if se, _ := s.SessionFor(bg, tok, time.Hour); se != nil {
			t.Error("a session outlived its account's password change")
		}
		evs, err := s.Events(bg, store.EventFilter{ObjectType: "admin", ObjectName: "op"})
		if err != nil || len(evs) != 2 || evs[0].Action != "admin.password" || evs[0].Actor != "admin:root2" {
			t.Errorf("events of op: %v %v", evs, err)
		}
	})
}

func TestSessionExpiry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		c := setClock(s, date(2026, 1, 1, 0, 0, 0))
		createAdmin(t, s, "root", store.RoleOwner, nil)
		idle := 10 * time.Minute
		tok, err := s.CreateSession(bg, "root", "192.0.2.1", "ua", 2*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Each use within the idle timeout keeps the session alive...
		for range 13 { // to 117 minutes
			c.add(9 * time.Minute)
			if se, err := s.SessionFor(bg, tok, idle); err != nil || se == nil {
				t.Fatalf("at %v the session ended early: %v", c.now(), err)
			}
		}
		// ...but not past its absolute end (2 h).
		c.add(9 * time.Minute)
		if se, _ := s.SessionFor(bg, tok, idle); se != nil {
			t.Fatal("session alive 126 minutes after creation, past its 2h maximum")
		}

		tok2, _ := s.CreateSession(bg, "root", "192.0.2.1", "ua", 2*time.Hour)
		c.add(idle + time.Second)
		if se, _ := s.SessionFor(bg, tok2, idle); se != nil {
			t.Error("an idle session still works")
		}
		if rows := dumpTable(t, s, "sessions"); len(rows) != 0 {
			t.Errorf("expired sessions kept: %v", rows)
		}
		for _, row := range append(dumpTable(t, s, "sessions"), dumpTable(t, s, "events")...) {
			if strings.Contains(row, tok) || strings.Contains(row, tok2) {
				t.Errorf("a session secret is stored: %s", row)
			}
		}
	})
}

func TestAPITokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		c := setClock(s, date(2026, 1, 1, 0, 0, 0))
		exp := c.now().Add(24 * time.Hour)
		tk, secret, err := s.CreateAPIToken(bg, "admin:root", "ci", store.APITokenSpec{Role: store.RoleViewer, ExpiresAt: &exp})
		if err != nil || tk.Role != store.RoleViewer || len(secret) < 32 {
			t.Fatalf("create: %+v %q %v", tk, secret, err)
		}
		if got, err := s.APITokenFor(bg, secret); err != nil || got == nil || got.Name != "ci" {
			t.Fatalf("lookup: %+v %v", got, err)
		}
		c.add(24 * time.Hour)
		if got, _ := s.APITokenFor(bg, secret); got != nil {
			t.Error("an expired token still works")
		}
		if _, _, err := s.CreateAPIToken(bg, "x", "r", store.APITokenSpec{Role: store.RoleReseller}); err == nil {
			t.Error("a reseller token without an account was issued")
		}
		createAdmin(t, s, "shop", store.RoleReseller, &store.Limits{MaxUsers: 1})
		_, rsecret, err := s.CreateAPIToken(bg, "x", "shop-bot", store.APITokenSpec{Role: store.RoleReseller, Admin: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		yes := true
		if _, err := s.UpdateAdmin(bg, "x", "shop", store.AdminSpec{Disabled: &yes}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.APITokenFor(bg, rsecret); got != nil {
			t.Error("the token of a disabled reseller still works")
		}
		if err := s.DeleteAPIToken(bg, "x", "ci"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAPIToken(bg, "x", "ci"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
	})
}

func TestSecondFactor(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		c := setClock(s, date(2026, 1, 1, 0, 0, 0))
		createAdmin(t, s, "root", store.RoleOwner, nil)
		enr, err := s.BeginTOTP(bg, "admin:root", "root")
		if err != nil || !strings.HasPrefix(enr.URI, "otpauth://totp/boxfleet:root?") {
			t.Fatalf("enrolment %+v %v", enr, err)
		}
		if a, _ := s.GetAdmin(bg, "root"); a.TOTP {
			t.Fatal("TOTP on before a code confirmed it")
		}
		if _, err := s.ConfirmTOTP(bg, "admin:root", "root", "000000"); err == nil {
			t.Fatal("a wrong confirmation code enabled TOTP")
		}
		code, _ := totp.Code(enr.Secret, c.now())
		recovery, err := s.ConfirmTOTP(bg, "admin:root", "root", code)
		if err != nil || len(recovery) != 10 {
			t.Fatalf("confirm: %v %v", recovery, err)
		}
		// The confirming code is spent: replaying it fails.
		if ok, _, _ := s.CheckSecondFactor(bg, "root", code); ok {
			t.Error("the confirmation code was accepted again")
		}
		c.add(totp.Step)
		code, _ = totp.Code(enr.Secret, c.now())
		if ok, _, _ := s.CheckSecondFactor(bg, "root", code); !ok {
			t.Error("a fresh code refused")
		}
		if ok, _, _ := s.CheckSecondFactor(bg, "root", code); ok {
			t.Error("a code was accepted twice")
		}
		ok, left, err := s.CheckSecondFactor(bg, "root", strings.ToLower(recovery[3]))
		if !ok || left != 9 || err != nil {
			t.Errorf("recovery code: ok=%v left=%d %v", ok, left, err)
		}
		if ok, _, _ := s.CheckSecondFactor(bg, "root", recovery[3]); ok {
			t.Error("a recovery code worked twice")
		}
		for _, row := range dumpTable(t, s, "admins") {
			if strings.Contains(row, recovery[0]) {
				t.Error("recovery codes stored in the clear")
			}
		}
		if _, err := s.DisableTOTP(bg, "admin:root", "root"); err != nil {
			t.Fatal(err)
		}
		if ok, _, _ := s.CheckSecondFactor(bg, "root", recovery[0]); ok {
			t.Error("a recovery code outlived TOTP")
		}
	})
}

func TestResellerLimits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, err := s.PutPlan(bg, "x", store.Plan{Name: "basic", TrafficLimit: 10 << 30, ResetStrategy: "month"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutPlan(bg, "x", store.Plan{Name: "vip", ResetStrategy: "month"}); err != nil {
			t.Fatal(err)
		}
		createAdmin(t, s, "shop", store.RoleReseller, &store.Limits{MaxUsers: 3, MaxTraffic: 25 << 30, Plans: []string{"basic"}, Groups: []string{"eu"}})
		createAdmin(t, s, "other", store.RoleReseller, nil)
		createUser(t, s, "staff-user", store.UserSpec{})
		shop := s.OwnedBy("shop")

		u, err := shop.CreateUser(bg, "admin:shop", "s1", "basic", store.UserSpec{})
		if err != nil {
			t.Fatal(err)
		}
		if u.OwnerAdmin != "shop" || strings.Join(u.Groups, ",") != "eu" {
			t.Errorf("reseller's user: owner %q groups %v (want the account's groups)", u.OwnerAdmin, u.Groups)
		}
		var le *store.LimitError
		for what, try := range map[string]func() error{
			"a plan not allowed": func() error { _, err := shop.CreateUser(bg, "a", "s2", "vip", store.UserSpec{}); return err },
			"no plan":            func() error { _, err := shop.CreateUser(bg, "a", "s2", "", store.UserSpec{}); return err },
			"a foreign group": func() error {
				_, err := shop.CreateUser(bg, "a", "s2", "basic", store.UserSpec{Groups: &[]string{"us"}})
				return err
			},
			"unlimited traffic": func() error {
				_, err := shop.UpdateUser(bg, "a", "s1", store.UserSpec{TrafficLimit: new(int64(0))})
				return err
			},
			"more traffic than left": func() error {
				_, err := shop.UpdateUser(bg, "a", "s1", store.UserSpec{TrafficLimit: new(int64(26 << 30))})
				return err
			},
		} {
			if err := try(); !errors.As(err, &le) {
				t.Errorf("%s: %v, want a limit error", what, err)
			}
		}
		if _, err := shop.CreateUser(bg, "a", "s2", "basic", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		// 20 GiB handed out; a third user of 10 GiB would make 30 > 25.
		if _, err := shop.CreateUser(bg, "a", "s3", "basic", store.UserSpec{}); !errors.As(err, &le) {
			t.Errorf("past the traffic total: %v", err)
		}
		if _, err := shop.CreateUser(bg, "a", "s3", "basic", store.UserSpec{TrafficLimit: new(int64(5 << 30))}); err != nil {
			t.Fatal(err)
		}
		if _, err := shop.CreateUser(bg, "a", "s4", "basic", store.UserSpec{TrafficLimit: new(int64(1))}); !errors.As(err, &le) {
			t.Errorf("past the user count: %v", err)
		}

		// Others' users do not exist for the reseller.
		for _, name := range []string{"staff-user"} {
			if _, err := shop.GetUser(bg, name); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("get %s: %v", name, err)
			}
			if _, err := shop.SuspendUser(bg, "a", name, "x"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("suspend %s: %v", name, err)
			}
			if err := shop.DeleteUser(bg, "a", name); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("delete %s: %v", name, err)
			}
		}
		us, total, err := shop.ListUsers(bg, store.UserFilter{})
		if err != nil || total != 3 || len(us) != 3 {
			t.Errorf("list: %d users (total %d) %v", len(us), total, err)
		}
		if _, n, _ := s.OwnedBy("other").ListUsers(bg, store.UserFilter{}); n != 0 {
			t.Errorf("another reseller sees %d users", n)
		}
		evs, err := shop.Events(bg, store.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.ObjectType != "user" || !strings.HasPrefix(e.ObjectName, "s") {
				t.Errorf("the reseller sees the event %s %s/%s", e.Action, e.ObjectType, e.ObjectName)
			}
		}
		if len(evs) != 3 {
			t.Errorf("%d events for the reseller's users, want 3 creates", len(evs))
		}
	})
}

// TestResellerLimitIsAtomic races creates past a one-user limit: the check
// and the insert share a transaction, so exactly one may win.
func TestResellerLimitIsAtomic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		createAdmin(t, s, "shop", store.RoleReseller, &store.Limits{MaxUsers: 1})
		shop := s.OwnedBy("shop")
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = shop.CreateUser(bg, "a", "u"+string(rune('a'+i)), "", store.UserSpec{})
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			}
		}
		if _, n, _ := shop.ListUsers(bg, store.UserFilter{}); won != 1 || n != 1 {
			t.Errorf("%d creates succeeded, %d users exist; want 1 (%v)", won, n, errs)
		}
	})
}

// A reseller lifts only the suspensions it made itself: one by staff or an
// alert is not its to undo.
func TestResellerResume(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		createAdmin(t, s, "shop", store.RoleReseller, nil)
		shop := s.OwnedBy("shop")
		if _, err := shop.CreateUser(bg, "a", "c1", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		u, err := shop.SuspendUser(bg, "a", "c1", "admin: unpaid")
		if err != nil || u.StatusReason != "admin: [shop] unpaid" {
			t.Fatalf("reseller's suspension: %+v %v", u, err)
		}
		if u, err := shop.ResumeUser(bg, "a", "c1"); err != nil || u.Status != store.StatusActive {
			t.Fatalf("resuming its own suspension: %+v %v", u, err)
		}
		if _, err := s.SuspendUser(bg, "admin:root", "c1", "admin: abuse report"); err != nil {
			t.Fatal(err)
		}
		var le *store.LimitError
		if _, err := shop.ResumeUser(bg, "a", "c1"); !errors.As(err, &le) {
			t.Errorf("reseller lifted a staff suspension: %v", err)
		}
		if u := getUser(t, s, "c1"); u.Status != store.StatusDisabled {
			t.Errorf("c1 is %s", u.Status)
		}
	})
}
