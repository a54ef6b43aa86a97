package actions_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

const (
	webhookAlerts = "boxfleet_webhook_alerts_total"
	actionsTotal  = "boxfleet_actions_total"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestSuspendFiringRepeatResolve(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, nil, nil, actions.Config{})
		f.addUser("alice")
		f.addUser("bob")
		fire := suspendAlert("firing", "alice", start)

		sum := f.mustPost(http.StatusOK, fire)
		if sum.Alerts != 1 || sum.Results["applied"] != 1 {
			t.Errorf("summary %+v, want one applied", sum)
		}
		u := f.wantStatus("alice", store.StatusDisabled)
		if !strings.HasPrefix(u.StatusReason, "alert:UserOverQuota/"+fire.Fingerprint+"@") {
			t.Errorf("reason %q does not name the alert episode", u.StatusReason)
		}
		f.wantStatus("bob", store.StatusActive)

		// Alertmanager repeats (repeat_interval) and duplicates (several
		// Alertmanagers in a cluster, a regrouped notification).
		f.mustPost(http.StatusOK, fire)
		f.mustPost(http.StatusOK, fire, fire)
		if n := f.events("user", "alice", "user.suspend"); n != 1 {
			t.Errorf("%d suspend events after repeats, want 1", n)
		}
		f.wantMetric(actionsTotal, 1, "action", "suspend_user", "result", "applied")
		f.wantMetric(webhookAlerts, 1, "status", "firing", "result", "applied")
		f.wantMetric(webhookAlerts, 3, "status", "firing", "result", "noop")

		resolved := suspendAlert("resolved", "alice", start)
		f.mustPost(http.StatusOK, resolved)
		u = f.wantStatus("alice", store.StatusActive)
		if u.StatusReason != "" {
			t.Errorf("resumed user keeps reason %q", u.StatusReason)
		}
		f.mustPost(http.StatusOK, resolved, resolved)
		if n := f.events("user", "alice", "user.resume"); n != 1 {
			t.Errorf("%d resume events after repeated resolution, want 1", n)
		}
		f.wantMetric(actionsTotal, 1, "action", "resume_user", "result", "applied")
		f.wantMetric(webhookAlerts, 1, "status", "resolved", "result", "applied")
		f.wantMetric(webhookAlerts, 2, "status", "resolved", "result", "noop")

		// The same firing delivered after its resolution (a retry that
		// crossed it) does not suspend again.
		f.mustPost(http.StatusOK, fire)
		f.wantStatus("alice", store.StatusActive)

		// A new episode of the same alert is a new decision.
		fire2 := suspendAlert("firing", "alice", start.Add(time.Hour))
		f.mustPost(http.StatusOK, fire2)
		f.wantStatus("alice", store.StatusDisabled)
		f.mustPost(http.StatusOK, suspendAlert("resolved", "alice", start.Add(time.Hour)))
		f.wantStatus("alice", store.StatusActive)
		f.wantMetric(actionsTotal, 2, "action", "suspend_user", "result", "applied")
	})
}

// A user over quota whose alert resolves (usage reset, limit raised) comes
// back as what the numbers say, not blindly active.
func TestResumeDerivesStatus(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, nil, nil, actions.Config{})
		f.addUser("carol")
		f.mustPost(http.StatusOK, suspendAlert("firing", "carol", start))
		past := time.Now().Add(-time.Hour)
		if _, err := st.UpdateUser(ctx, "admin:test", "carol", store.UserSpec{ExpireAt: &past}); err != nil {
			t.Fatal(err)
		}
		f.wantStatus("carol", store.StatusDisabled)
		f.mustPost(http.StatusOK, suspendAlert("resolved", "carol", start))
		f.wantStatus("carol", store.StatusExpired)
	})
}

func TestAdminSuspensionIsNeverLiftedByAnAlert(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, nil, nil, actions.Config{})

		// Suspended by the alert, then by an admin: the admin's reason
		// stands when the alert resolves.
		f.addUser("dave")
		f.mustPost(http.StatusOK, suspendAlert("firing", "dave", start))
		if _, err := st.SuspendUser(ctx, "admin:root", "dave", "admin: abuse report"); err != nil {
			t.Fatal(err)
		}
		f.mustPost(http.StatusOK, suspendAlert("resolved", "dave", start))
		if u := f.wantStatus("dave", store.StatusDisabled); u.StatusReason != "admin: abuse report" {
			t.Errorf("reason %q, want the admin's", u.StatusReason)
		}

		// Suspended by an admin before the alert fired: the alert finds
		// nothing to do and its resolution must not resume.
		f.addUser("erin")
		if _, err := st.SuspendUser(ctx, "admin:root", "erin", "admin: unpaid"); err != nil {
			t.Fatal(err)
		}
		sum := f.mustPost(http.StatusOK, suspendAlert("firing", "erin", start))
		if sum.Results["noop"] != 1 {
			t.Errorf("alert on an admin-suspended user: %+v, want noop", sum)
		}
		f.mustPost(http.StatusOK, suspendAlert("resolved", "erin", start))
		if u := f.wantStatus("erin", store.StatusDisabled); u.StatusReason != "admin: unpaid" {
			t.Errorf("reason %q, want the admin's", u.StatusReason)
		}
		// Nor does another alert's resolution with the same user.
		f.mustPost(http.StatusOK, suspendAlert("resolved", "erin", start.Add(-time.Hour)))
		f.wantStatus("erin", store.StatusDisabled)
		f.wantMetric(actionsTotal, 1, "action", "resume_user", "result", "noop")
		f.wantMetric(actionsTotal, 0, "action", "resume_user", "result", "applied")
	})
}

func TestResolvedBeforeFiring(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, nil, nil, actions.Config{})
		f.addUser("frank")
		f.mustPost(http.StatusOK, suspendAlert("resolved", "frank", start))
		f.mustPost(http.StatusOK, suspendAlert("firing", "frank", start))
		f.wantStatus("frank", store.StatusActive)
		if n := f.events("user", "frank", "user.suspend"); n != 0 {
			t.Errorf("late firing suspended: %d events", n)
		}
		// Both in one notification, resolved first.
		f.mustPost(http.StatusOK, suspendAlert("resolved", "frank", start.Add(time.Minute)), suspendAlert("firing", "frank", start.Add(time.Minute)))
		f.wantStatus("frank", store.StatusActive)
		// The next episode acts.
		f.mustPost(http.StatusOK, suspendAlert("firing", "frank", start.Add(time.Hour)))
		f.wantStatus("frank", store.StatusDisabled)
	})
}

// A resolution delivered while its own firing is still being handled (a
// retried delivery, or another controller) must leave the user active: the
// final state follows the episode's latest state, whichever handler
// finishes last. The resolution is handled completely at each step of the
// firing in turn.
func TestResolvedWhileFiringIsHandled(t *testing.T) {
	for _, step := range []string{"apply", "finish"} {
		t.Run(step, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, st *store.Store) {
				f := newFixture(t, st, nil, nil, actions.Config{})
				f.addUser("gina")
				f.addUser("hugo")
				once := true
				f.actor.SetStep(func(name string) {
					if name == step && once {
						once = false
						f.mustPost(http.StatusOK, suspendAlert("resolved", "gina", start))
					}
				})
				f.mustPost(http.StatusOK, suspendAlert("firing", "gina", start))
				if once {
					t.Fatal("the resolution was never delivered mid-firing")
				}
				f.wantStatus("gina", store.StatusActive)
				// Repeats of either change nothing afterwards.
				f.mustPost(http.StatusOK, suspendAlert("firing", "gina", start))
				f.mustPost(http.StatusOK, suspendAlert("resolved", "gina", start))
				f.wantStatus("gina", store.StatusActive)
				if n := f.events("user", "gina", "user.resume"); n != 1 {
					t.Errorf("%d resume events, want 1", n)
				}

				// Without a race: the firing suspends, the resolution resumes.
				f.actor.SetStep(nil)
				f.mustPost(http.StatusOK, suspendAlert("firing", "hugo", start))
				f.wantStatus("hugo", store.StatusDisabled)
				f.mustPost(http.StatusOK, suspendAlert("resolved", "hugo", start))
				f.wantStatus("hugo", store.StatusActive)
			})
		})
	}
}

func TestUnknownTargetsAndActions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, nil, nil, actions.Config{})
		f.addUser("grace")
		before := f.events("", "", "")

		sum := f.mustPost(http.StatusOK,
			suspendAlert("firing", "nobody", start),
			alert("firing", start, map[string]string{"alertname": "X", actions.ActionLabel: "reboot_node", "node": "n1", "user": "grace"}),
			alert("firing", start, map[string]string{"alertname": "Y", actions.ActionLabel: actions.SuspendUser}),
			alert("firing", start, map[string]string{"alertname": "Z", actions.ActionLabel: actions.DrainNode, "user": "grace"}),
			alert("firing", start, map[string]string{"alertname": "UserNearQuota", "user": "grace"}),
		)
		if sum.Alerts != 5 || sum.Results["ignored"] != 4 || sum.Results["unknown_target"] != 1 {
			t.Errorf("summary %+v, want 4 ignored and 1 unknown_target", sum)
		}
		f.wantStatus("grace", store.StatusActive)
		if _, err := st.GetUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown user: %v, want ErrNotFound", err)
		}
		if after := f.events("", "", ""); after != before {
			t.Errorf("ignored alerts wrote %d audit events", after-before)
		}
		f.mustPost(http.StatusOK, suspendAlert("resolved", "nobody", start))
		f.wantMetric(webhookAlerts, 4, "status", "firing", "result", "ignored")
		f.wantMetric(actionsTotal, 1, "action", "suspend_user", "result", "noop")
	})
}

func TestDryRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := newFixture(t, st, nil, nil, actions.Config{DryRun: true})
		f.addUser("heidi")
		sum := f.mustPost(http.StatusOK, suspendAlert("firing", "heidi", start))
		if sum.Results["dry_run"] != 1 {
			t.Errorf("summary %+v, want dry_run", sum)
		}
		f.wantStatus("heidi", store.StatusActive)
		if n := f.events("user", "heidi", "suspend_user.dry_run"); n != 1 {
			t.Errorf("%d dry-run events, want 1", n)
		}
		f.mustPost(http.StatusOK, suspendAlert("firing", "heidi", start))
		if n := f.events("user", "heidi", "suspend_user.dry_run"); n != 1 {
			t.Errorf("repeat recorded again: %d dry-run events", n)
		}
		f.mustPost(http.StatusOK, suspendAlert("resolved", "heidi", start))
		f.wantStatus("heidi", store.StatusActive)
		f.wantMetric(actionsTotal, 1, "action", "suspend_user", "result", "dry_run")
		f.wantMetric(actionsTotal, 0, "action", "resume_user", "result", "applied")
	})
}

// Rate limits refuse with 503 so that Alertmanager retries, and release the
// claim so that the retry acts once the window has passed. Each case waits
// out a window, so they run in parallel.
func TestRateLimits(t *testing.T) {
	const window = 3 * time.Second
	for _, tc := range []struct {
		name string
		cfg  actions.Config
	}{
		{"global", actions.Config{Rate: actions.Rate{N: 1, Window: window}}},
		{"per action", actions.Config{Rate: actions.Rate{N: 10, Window: window}, SuspendRate: actions.Rate{N: 1, Window: window}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, st *store.Store) {
				t.Parallel()
				f := newFixture(t, st, nil, nil, tc.cfg)
				f.addUser("ivan")
				f.addUser("judy")
				t0 := time.Now()
				f.mustPost(http.StatusOK, suspendAlert("firing", "ivan", start))
				second := suspendAlert("firing", "judy", start)
				code, sum := f.post(second)
				if time.Since(t0) >= window {
					t.Skip("the machine took longer than the rate window; nothing to check")
				}
				if code != http.StatusServiceUnavailable || sum.Results["refused"] != 1 {
					t.Fatalf("second suspension within the window: %d %+v, want 503 refused", code, sum)
				}
				f.wantStatus("judy", store.StatusActive)
				f.wantReleased(second)
				if n := f.events("user", "judy", "suspend_user.refused"); n != 1 {
					t.Errorf("%d refusal events, want 1", n)
				}
				time.Sleep(window - time.Since(t0) + 100*time.Millisecond)
				f.mustPost(http.StatusOK, second)
				f.wantStatus("judy", store.StatusDisabled)
				f.wantMetric(actionsTotal, 2, "action", "suspend_user", "result", "applied")
				f.wantMetric(actionsTotal, 1, "action", "suspend_user", "result", "refused")
			})
		})
	}
}

func TestDatabaseOutage(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		st := db.Open(t)
		f := newFixture(t, st, nil, nil, actions.Config{})
		f.addUser("ken")
		f.mustPost(http.StatusOK, suspendAlert("firing", "ken", start))
		st.Close()
		if code, _ := f.post(suspendAlert("resolved", "ken", start)); code != http.StatusServiceUnavailable {
			t.Errorf("resolution with the database down: %d, want 503", code)
		}
		if code, _ := f.post(suspendAlert("firing", "ken", start.Add(time.Hour))); code != http.StatusServiceUnavailable {
			t.Errorf("firing with the database down: %d, want 503", code)
		}
		f.wantMetric(webhookAlerts, 1, "status", "resolved", "result", "error")
		f.wantMetric(webhookAlerts, 1, "status", "firing", "result", "error")

		// The retry after the outage does what the lost delivery would have.
		f = newFixture(t, db.Open(t), nil, nil, actions.Config{})
		f.mustPost(http.StatusOK, suspendAlert("resolved", "ken", start))
		f.wantStatus("ken", store.StatusActive)
	})
}
