package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

const hookSecret = "hook-secret-0123456789"

func putHook(t *testing.T, s *store.Store, name string, events ...string) *store.Hook {
	t.Helper()
	h, err := s.PutHook(bg, "admin", name, store.HookSpec{URL: "https://hooks.example/" + name, Secret: hookSecret, Events: events})
	if err != nil {
		t.Fatalf("put hook %s: %v", name, err)
	}
	return h
}

func deliveries(t *testing.T, s *store.Store, hook string) []*store.Delivery {
	t.Helper()
	ds, err := s.HookDeliveries(bg, hook, 0)
	if err != nil {
		t.Fatalf("deliveries of %s: %v", hook, err)
	}
	return ds
}

func actions(ds []*store.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Action)
	}
	return out
}

func TestHookDeliveriesQueuedWithEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		now := date(2025, 6, 1, 10, 0, 0)
		setClock(s, now)
		alice := createUser(t, s, "alice", store.UserSpec{})
		if _, _, err := s.CreateNode(bg, "admin", "n1", nil); err != nil {
			t.Fatal(err)
		}
		putHook(t, s, "ops", "user.suspend", "node.*")
		putHook(t, s, "all", "*")

		if _, err := s.SuspendUser(bg, "admin", "alice", "abuse"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ResumeUser(bg, "admin", "alice"); err != nil {
			t.Fatal(err)
		}
		for _, drained := range []bool{true, false} {
			if _, _, err := s.SetDrained(bg, "admin", "n1", drained, "maintenance"); err != nil {
				t.Fatal(err)
			}
		}

		ops := deliveries(t, s, "ops")
		if got := actions(ops); !slices.Equal(got, []string{"node.undrain", "node.drain", "user.suspend"}) {
			t.Fatalf("ops deliveries (newest first) %v", got)
		}
		for _, d := range ops {
			if d.Status != store.DeliveryPending || d.Attempts != 0 || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(now) {
				t.Errorf("new delivery %+v: want pending, no attempts, due now", d)
			}
		}
		// "*" hears everything after it was made, its own creation included.
		if got := actions(deliveries(t, s, "all")); !slices.Equal(got, []string{"node.undrain", "node.drain", "user.resume", "user.suspend", "hook.put"}) {
			t.Fatalf("* deliveries %v", got)
		}

		out, err := s.ClaimDeliveries(bg, 100, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 8 {
			t.Fatalf("claimed %d deliveries, want 8", len(out))
		}
		suspend := events(t, s, store.EventFilter{Action: "user.suspend"})[0]
		var o *store.Outgoing
		for _, c := range out {
			if c.Hook == "ops" && c.Action == "user.suspend" {
				o = c
			}
		}
		if o == nil || o.URL != "https://hooks.example/ops" || o.Secret != hookSecret {
			t.Fatalf("claimed ops delivery %+v", o)
		}
		var body store.Event
		if err := json.Unmarshal([]byte(o.Body), &body); err != nil {
			t.Fatalf("body %s: %v", o.Body, err)
		}
		var after store.User
		if err := json.Unmarshal(body.After, &after); err != nil {
			t.Fatal(err)
		}
		if body.ID != suspend.ID || body.ObjectName != "alice" || body.Detail != "abuse" || !body.At.Equal(now) ||
			body.Actor != "admin" || after.Status != store.StatusDisabled {
			t.Errorf("body %s does not describe the suspension (event %d)", o.Body, suspend.ID)
		}
		for _, secret := range []string{alice.Credentials.UUID, alice.Credentials.Password, alice.Credentials.SSKey32, alice.SubToken} {
			if strings.Contains(o.Body, secret) {
				t.Errorf("body carries a credential of alice: %s", o.Body)
			}
		}
	})
}

func TestRolledBackChangeQueuesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		putHook(t, s, "all", "*")
		before := len(deliveries(t, s, "all"))
		if err := s.FailAfterChange(bg, "admin", "user.suspend", "user", "ghost"); !errors.Is(err, store.ErrRolledBack) {
			t.Fatalf("got %v", err)
		}
		if got := len(deliveries(t, s, "all")); got != before {
			t.Errorf("a rolled-back change left %d deliveries", got-before)
		}
		if ev := events(t, s, store.EventFilter{ObjectName: "ghost"}); len(ev) != 0 {
			t.Errorf("a rolled-back change left events %v", ev)
		}
	})
}

func TestHookValidation(t *testing.T) {
	s := storetest.SQLite(t)
	good := store.HookSpec{URL: "https://example.com/hook", Secret: hookSecret, Events: []string{"user.suspend"}}
	for _, c := range []struct {
		name  string
		edit  func(*store.HookSpec)
		field string
	}{
		{"ftp scheme", func(sp *store.HookSpec) { sp.URL = "ftp://example.com/x" }, "url"},
		{"no scheme", func(sp *store.HookSpec) { sp.URL = "example.com/hook" }, "url"},
		{"no host", func(sp *store.HookSpec) { sp.URL = "http:///hook" }, "url"},
		{"javascript", func(sp *store.HookSpec) { sp.URL = "javascript:alert(1)" }, "url"},
		{"user info", func(sp *store.HookSpec) { sp.URL = "https://u:p@example.com/" }, "url"},
		{"short secret", func(sp *store.HookSpec) { sp.Secret = "0123456789abcde" }, "secret"},
		{"no secret", func(sp *store.HookSpec) { sp.Secret = "" }, "secret"},
		{"padded secret", func(sp *store.HookSpec) { sp.Secret = " " + hookSecret }, "secret"},
		{"no events", func(sp *store.HookSpec) { sp.Events = nil }, "events"},
		{"bad event", func(sp *store.HookSpec) { sp.Events = []string{"user suspend"} }, "events"},
		{"empty event", func(sp *store.HookSpec) { sp.Events = []string{""} }, "events"},
		{"inner wildcard", func(sp *store.HookSpec) { sp.Events = []string{"*.suspend"} }, "events"},
	} {
		sp := good
		c.edit(&sp)
		_, err := s.PutHook(bg, "admin", "h", sp)
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%s: got %v, want a validation error on %s", c.name, err, c.field)
		}
	}
	if _, err := s.PutHook(bg, "admin", "bad name", good); err == nil {
		t.Error("a hook named with a space was accepted")
	}
	if hs, _ := s.ListHooks(bg); len(hs) != 0 {
		t.Fatalf("refused hooks were stored: %v", hs)
	}

	for _, ev := range []string{"*", "node.*", "user.rotate_token", "suspend_user.refused"} {
		if _, err := s.PutHook(bg, "admin", "h", store.HookSpec{URL: "http://127.0.0.1:9/x?y=1", Secret: hookSecret, Events: []string{ev}}); err != nil {
			t.Errorf("event pattern %q refused: %v", ev, err)
		}
	}
	// An update may leave the secret out: the stored one stays.
	h, err := s.PutHook(bg, "admin", "h", store.HookSpec{URL: "https://example.com/b", Events: []string{"user.suspend", "node.drain", "user.suspend"}})
	if err != nil {
		t.Fatal(err)
	}
	if !h.SecretSet || h.URL != "https://example.com/b" || !slices.Equal(h.Events, []string{"node.drain", "user.suspend"}) {
		t.Fatalf("updated hook %+v", h)
	}
	var secret string
	if err := s.DB().Get(&secret, `SELECT secret FROM hooks WHERE name = 'h'`); err != nil || secret != hookSecret {
		t.Fatalf("secret after an update without one: %q, %v", secret, err)
	}
}

func TestHookSecretStaysOutOfTheAuditLog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, err := s.PutHook(bg, "admin", "h", store.HookSpec{URL: "https://example.com/in?token=querytoken", Secret: hookSecret, Events: []string{"*"}}); err != nil {
			t.Fatal(err)
		}
		rotated := "rotated-secret-9876543210"
		if _, err := s.PutHook(bg, "admin", "h", store.HookSpec{URL: "https://example.com/in?token=querytoken", Secret: rotated, Events: []string{"*"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteHook(bg, "admin", "h"); err != nil {
			t.Fatal(err)
		}
		evs := events(t, s, store.EventFilter{ObjectType: "hook"})
		if got := []string{evs[0].Action, evs[1].Action, evs[2].Action}; !slices.Equal(got, []string{"hook.delete", "hook.put", "hook.put"}) {
			t.Fatalf("hook events %v", got)
		}
		if evs[1].Detail != "secret changed" {
			t.Errorf("a secret change is not recorded as such: %q", evs[1].Detail)
		}
		for _, row := range dumpTable(t, s, "events") {
			for _, secret := range []string{hookSecret, rotated, "querytoken"} {
				if strings.Contains(row, secret) {
					t.Errorf("audit log keeps %q: %s", secret, row)
				}
			}
		}
	})
}

func TestDeleteHook(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		putHook(t, s, "a", "*")
		putHook(t, s, "b", "*")
		if err := s.DeleteHook(bg, "admin", "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.HookDeliveries(bg, "a", 10); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deliveries of a deleted hook: %v", err)
		}
		var left []string
		if err := s.DB().Select(&left, `SELECT hook_name FROM hook_deliveries`); err != nil {
			t.Fatal(err)
		}
		// b heard of its own creation and of a's deletion; a's queue went.
		if !slices.Equal(left, []string{"b", "b"}) {
			t.Errorf("deliveries left after deleting a: %v", left)
		}
		if err := s.DeleteHook(bg, "admin", "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleting twice: %v", err)
		}
	})
}

func TestClaimRecordAndPrune(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 6, 1, 10, 0, 0))
		putHook(t, s, "h", "user.create")
		for _, n := range []string{"u1", "u2", "u3"} {
			createUser(t, s, n, store.UserSpec{})
		}
		claim := func(limit int) []int64 {
			t.Helper()
			out, err := s.ClaimDeliveries(bg, limit, 2*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, o := range out {
				ids = append(ids, o.ID)
			}
			return ids
		}
		first := claim(2)
		if len(first) != 2 {
			t.Fatalf("claimed %v with limit 2", first)
		}
		rest := claim(10)
		if len(rest) != 1 || slices.Contains(first, rest[0]) {
			t.Fatalf("second claim %v overlaps the held %v", rest, first)
		}
		if again := claim(10); len(again) != 0 {
			t.Fatalf("held deliveries claimed again: %v", again)
		}
		// A claim nobody records lapses: its controller died mid-send.
		clk.add(2*time.Minute + time.Second)
		if lapsed := claim(10); len(lapsed) != 3 {
			t.Fatalf("after the hold %v", lapsed)
		}

		if err := s.DeliveryFailed(bg, first[0], 1, 503, "receiver answered 503", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := s.DeliverySucceeded(bg, first[1], 1, 204); err != nil {
			t.Fatal(err)
		}
		if err := s.DeliveryFailed(bg, rest[0], 10, 0, strings.Repeat("é", 300), -1); err != nil {
			t.Fatal(err)
		}
		byID := map[int64]*store.Delivery{}
		for _, d := range deliveries(t, s, "h") {
			byID[d.ID] = d
		}
		retry, done, failed := byID[first[0]], byID[first[1]], byID[rest[0]]
		if retry.Status != store.DeliveryPending || retry.Attempts != 1 || retry.LastStatus != 503 ||
			!retry.NextAttemptAt.Equal(clk.now().Add(10*time.Second)) {
			t.Errorf("retried delivery %+v", retry)
		}
		if done.Status != store.DeliveryDelivered || done.LastStatus != 204 || done.NextAttemptAt != nil {
			t.Errorf("delivered %+v", done)
		}
		if failed.Status != store.DeliveryFailed || len([]rune(failed.LastError)) != 200 {
			t.Errorf("failed %+v", failed)
		}
		clk.add(9 * time.Second)
		if got := claim(10); len(got) != 0 {
			t.Fatalf("claimed %v before the backoff ended", got)
		}
		clk.add(time.Second)
		got := claim(10)
		if !slices.Equal(got, first[:1]) {
			t.Fatalf("after the backoff claimed %v, want %v", got, first[:1])
		}
		if err := s.ReleaseDeliveries(bg, got); err != nil {
			t.Fatal(err)
		}
		if again := claim(10); !slices.Equal(again, got) {
			t.Fatalf("a released delivery is not due at once: %v", again)
		}

		clk.add(8 * 24 * time.Hour)
		n, err := s.PruneDeliveries(bg, 7*24*time.Hour)
		if err != nil || n != 2 {
			t.Fatalf("pruned %d (%v), want the delivered and the failed one", n, err)
		}
		if left := deliveries(t, s, "h"); len(left) != 1 || left[0].ID != first[0] {
			t.Errorf("prune took a pending delivery: %v", left)
		}
	})
}

// Two controllers claiming together (a leader losing the lease while the
// next starts) never both get one delivery.
func TestConcurrentClaimsAreDisjoint(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		a, b := db.Open(t), db.Open(t)
		putHook(t, a, "h", "user.create")
		for i := range 40 {
			createUser(t, a, "u"+string(rune('a'+i%26))+string(rune('a'+i/26)), store.UserSpec{})
		}
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for _, s := range []*store.Store{a, b, a, b} {
			wg.Go(func() {
				for {
					out, err := s.ClaimDeliveries(bg, 3, time.Hour)
					if err != nil {
						t.Error(err)
						return
					}
					if len(out) == 0 {
						return
					}
					mu.Lock()
					for _, o := range out {
						seen[o.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != 40 {
			t.Errorf("claimed %d distinct deliveries, want 40", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("delivery %d claimed %d times", id, n)
			}
		}
	})
}

// BenchmarkSuspendWithHooks prices the hooks' part of every change: one
// read of the hooks table, and an insert per matching hook.
func BenchmarkSuspendWithHooks(b *testing.B) {
	for _, n := range []int{0, 3} {
		b.Run(fmt.Sprintf("hooks=%d", n), func(b *testing.B) {
			s := storetest.SQLite(b)
			if _, err := s.CreateUser(bg, "admin", "alice", "", store.UserSpec{}); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if _, err := s.PutHook(bg, "admin", fmt.Sprint("h", i), store.HookSpec{URL: "https://example.com/", Secret: hookSecret, Events: []string{"user.*"}}); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if _, err := s.SuspendUser(bg, "admin", "alice", "bench"); err != nil {
					b.Fatal(err)
				}
				if _, err := s.ResumeUser(bg, "admin", "alice"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// "*" leaves out the high-volume events (node.register, period resets,
// logins); a hook hears them only when it names them or their family.
func TestStarLeavesOutHighVolumeEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 6, 1, 10, 0, 0))
		putHook(t, s, "all", "*")
		putHook(t, s, "nodes", "node.*")
		putHook(t, s, "reg", "node.register", "session.login_failed")
		if _, _, err := s.CreateNode(bg, "admin", "n1", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RegisterNode(bg, "n1", registration("eu")); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordLoginFailure(bg, "root", "203.0.113.9", "bad password"); err != nil {
			t.Fatal(err)
		}
		if got := actions(deliveries(t, s, "all")); !slices.Equal(got, []string{"node.create", "hook.put", "hook.put", "hook.put"}) {
			t.Errorf("* deliveries %v, want no node.register or session.login_failed", got)
		}
		if got := actions(deliveries(t, s, "nodes")); !slices.Equal(got, []string{"node.register", "node.create"}) {
			t.Errorf("node.* deliveries %v", got)
		}
		if got := actions(deliveries(t, s, "reg")); !slices.Equal(got, []string{"session.login_failed", "node.register"}) {
			t.Errorf("explicit deliveries %v", got)
		}
	})
}
