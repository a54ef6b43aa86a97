package store_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// Every change leaves an event naming who did it, with the object before
// and after, and the log never holds a secret that would let its reader
// impersonate a user or a node.
func TestEventsAuditEveryChange(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		setClock(s, date(2025, 10, 1, 0, 0, 0))
		var secrets []string
		keep := func(u *store.User, err error) *store.User {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			c := u.Credentials
			secrets = append(secrets, c.UUID, c.Password, c.SSKey16, c.SSKey32, u.SubToken)
			return u
		}
		keep(s.CreateUser(bg, "admin", "alice", "", store.UserSpec{}))
		keep(s.UpdateUser(bg, "bob-admin", "alice", store.UserSpec{TrafficLimit: new(int64(5))}))
		keep(s.SuspendUser(bg, "alert:Abuse", "alice", "alert Abuse fired"))
		keep(s.ResumeUser(bg, "alert:Abuse", "alice"))
		keep(s.RotateToken(bg, "admin", "alice"))
		keep(s.ResetUsage(bg, "admin", "alice"))
		if err := s.DeleteUser(bg, "admin", "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutPlan(bg, "admin", store.Plan{Name: "p"}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePlan(bg, "admin", "p"); err != nil {
			t.Fatal(err)
		}
		_, nodeToken, err := s.CreateNode(bg, "admin", "n1", nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, nodeToken)
		if _, err := s.RegisterNode(bg, "n1", registration("eu")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.SetDrained(bg, "alert:NodeDown", "n1", true, "down"); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordEvent(bg, "alert:Abuse", "user.suspend.refused", "user", "bob", "dry run"); err != nil {
			t.Fatal(err)
		}

		want := []struct {
			actor, action, name string
			before, after       bool
		}{
			{"admin", "user.create", "alice", false, true},
			{"bob-admin", "user.update", "alice", true, true},
			{"alert:Abuse", "user.suspend", "alice", true, true},
			{"alert:Abuse", "user.resume", "alice", true, true},
			{"admin", "user.rotate_token", "alice", true, true},
			{"admin", "user.reset", "alice", true, true},
			{"admin", "user.delete", "alice", true, false},
			{"admin", "plan.put", "p", false, true},
			{"admin", "plan.delete", "p", true, false},
			{"admin", "node.create", "n1", false, true},
			{"node:n1", "node.register", "n1", true, true},
			{"alert:NodeDown", "node.drain", "n1", true, true},
			{"alert:Abuse", "user.suspend.refused", "bob", false, false},
		}
		evs := events(t, s, store.EventFilter{})
		slices.Reverse(evs)
		if len(evs) != len(want) {
			t.Fatalf("%d events, want %d", len(evs), len(want))
		}
		for i, w := range want {
			e := evs[i]
			if e.Actor != w.actor || e.Action != w.action || e.ObjectName != w.name ||
				(e.Before != nil) != w.before || (e.After != nil) != w.after || e.At.IsZero() {
				t.Errorf("event %d: %s %s %s before=%v after=%v, want %+v", i, e.Actor, e.Action, e.ObjectName, e.Before != nil, e.After != nil, w)
			}
			for _, raw := range []json.RawMessage{e.Before, e.After} {
				if raw != nil && !json.Valid(raw) {
					t.Errorf("event %d: invalid JSON %s", i, raw)
				}
			}
		}
		var suspend struct{ Status string }
		json.Unmarshal(evs[2].After, &suspend)
		if suspend.Status != store.StatusDisabled || evs[2].Detail != "alert Abuse fired" {
			t.Errorf("suspend event after=%s detail=%q", evs[2].After, evs[2].Detail)
		}
		// alice is deleted, so none of her secrets, current or rotated
		// out, may be left anywhere; the node token is stored hashed.
		assertNotStored(t, s, "secret", secrets...)
	})
}

func TestEventsFilterAndPage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for _, n := range []string{"a", "b", "c"} {
			createUser(t, s, n, store.UserSpec{})
			if _, err := s.SuspendUser(bg, "ops", n, ""); err != nil {
				t.Fatal(err)
			}
		}
		if ev := events(t, s, store.EventFilter{ObjectType: "user", ObjectName: "b"}); len(ev) != 2 || ev[0].Action != "user.suspend" {
			t.Errorf("events of b: %d, newest %v", len(ev), ev[0].Action)
		}
		if ev := events(t, s, store.EventFilter{Actor: "ops"}); len(ev) != 3 {
			t.Errorf("events by ops: %d, want 3", len(ev))
		}
		var seen []int64
		for before := int64(0); ; {
			page := events(t, s, store.EventFilter{Limit: 4, Before: before})
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				seen = append(seen, e.ID)
			}
			before = page[len(page)-1].ID
		}
		if len(seen) != 6 || !slices.IsSortedFunc(seen, func(a, b int64) int { return int(b - a) }) {
			t.Errorf("paging newest first saw ids %v", seen)
		}
	})
}

func TestUsersRevisionMovesOnUserChanges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 10, 1, 0, 0, 0))
		steps := []struct {
			what string
			do   func() error
		}{
			{"create", func() error {
				_, err := s.CreateUser(bg, "a", "u", "", store.UserSpec{ExpireAt: new(clk.now().Add(time.Hour))})
				return err
			}},
			{"update", func() error { _, err := s.UpdateUser(bg, "a", "u", store.UserSpec{Note: new("x")}); return err }},
			{"suspend", func() error { _, err := s.SuspendUser(bg, "a", "u", ""); return err }},
			{"resume", func() error { _, err := s.ResumeUser(bg, "a", "u"); return err }},
			{"rotate", func() error { _, err := s.RotateToken(bg, "a", "u"); return err }},
			{"reset", func() error { _, err := s.ResetUsage(bg, "a", "u"); return err }},
			{"sweep to expired", func() error { clk.add(2 * time.Hour); _, err := s.Sweep(bg, "sweep"); return err }},
			{"delete", func() error { return s.DeleteUser(bg, "a", "u") }},
		}
		rev := revision(t, s)
		for _, st := range steps {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.what, err)
			}
			next := revision(t, s)
			if next <= rev {
				t.Errorf("%s left the users revision at %d", st.what, next)
			}
			rev = next
		}
		if _, err := s.Sweep(bg, "sweep"); err != nil {
			t.Fatal(err)
		}
		if revision(t, s) != rev {
			t.Errorf("a sweep that changed nothing moved the revision")
		}
	})
}
