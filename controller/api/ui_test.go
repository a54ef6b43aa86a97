package api_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// eachRaw runs fn on SQLite and MySQL with a second connection to the same
// database, for setting what only the ledger writes (usage).
func eachRaw(t *testing.T, opt func(*api.Options, *store.Store), fn func(t *testing.T, e *env, raw *sql.DB)) {
	for _, backend := range []string{"sqlite", "mysql"} {
		t.Run(backend, func(t *testing.T) {
			db := newDB(t, backend)
			s := db.Open(t)
			var raw *sql.DB
			var err error
			if backend == "mysql" {
				raw, err = sql.Open("mysql", db.DSN)
			} else {
				raw, err = sql.Open("sqlite", "file:"+filepath.Join(db.Dir, "boxfleet.db")+"?_pragma=busy_timeout(10000)")
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { raw.Close() })
			var o func(*api.Options)
			if opt != nil {
				o = func(x *api.Options) { opt(x, s) }
			}
			fn(t, newEnvWith(t, s, o), raw)
		})
	}
}

func setUsed(t *testing.T, raw *sql.DB, name string, used int64) {
	t.Helper()
	if _, err := raw.Exec(`UPDATE users SET used_up = ?, used_down = ? WHERE name = ?`, used/2, used-used/2, name); err != nil {
		t.Fatal(err)
	}
}

type listed struct {
	Users []struct {
		store.User
		Online   bool    `json:"online"`
		RateUp   float64 `json:"rate_up"`
		RateDown float64 `json:"rate_down"`
		Devices  *int64  `json:"devices"`
	} `json:"users"`
	Total int  `json:"total"`
	Live  bool `json:"live"`
}

func (l listed) names() []string {
	var out []string
	for _, u := range l.Users {
		out = append(out, u.Name)
	}
	return out
}

// fiveUsers makes users whose numbers put each on a known side of every
// filter and at a known place in every sort.
func fiveUsers(t *testing.T, e *env, raw *sql.DB) {
	t.Helper()
	day := 24 * time.Hour
	e.createUser("alice", map[string]any{"traffic_limit_bytes": 100, "expire_at": time.Now().Add(2 * day), "device_limit": 1})
	e.createUser("bob", map[string]any{"traffic_limit_bytes": 100, "expire_at": time.Now().Add(10 * day), "note": "reseller shop"})
	e.createUser("carol", map[string]any{"note": "VIP Carol"})
	e.createUser("dave", map[string]any{"traffic_limit_bytes": 1000, "expire_at": time.Now().Add(-day)})
	e.createUser("erin", map[string]any{"traffic_limit_bytes": 1000})
	setUsed(t, raw, "alice", 95)  // 95 %: over 90
	setUsed(t, raw, "bob", 50)    // 50 %
	setUsed(t, raw, "carol", 500) // unlimited: never over 90
	setUsed(t, raw, "dave", 900)  // exactly 90 %: over 90
	setUsed(t, raw, "erin", 899)  // just under 90 %
}

func TestUsersListSortsAndFilters(t *testing.T) {
	eachRaw(t, nil, func(t *testing.T, e *env, raw *sql.DB) {
		fiveUsers(t, e, raw)
		for _, c := range []struct {
			query string
			want  []string
			total int
		}{
			{"sort=-used", []string{"dave", "erin", "carol", "alice", "bob"}, 5},
			{"sort=used", []string{"bob", "alice", "carol", "erin", "dave"}, 5},
			// Never expiring sorts last ascending, first descending.
			{"sort=expire", []string{"dave", "alice", "bob", "carol", "erin"}, 5},
			{"sort=-expire", []string{"erin", "carol", "bob", "alice", "dave"}, 5},
			// Unlimited is the largest limit; equal limits by creation.
			{"sort=limit", []string{"alice", "bob", "dave", "erin", "carol"}, 5},
			{"sort=-created", []string{"erin", "dave", "carol", "bob", "alice"}, 5},
			{"sort=-name", []string{"erin", "dave", "carol", "bob", "alice"}, 5},
			{"filter=over90&sort=name", []string{"alice", "dave"}, 2},
			{"filter=expiring3d", []string{"alice"}, 1},
			{"filter=over90,expiring3d", []string{"alice"}, 1},
			// Search is in name and note, without case.
			{"search=vip", []string{"carol"}, 1},
			{"search=SHOP", []string{"bob"}, 1},
			{"search=a&sort=-used", []string{"dave", "carol", "alice"}, 3},
			// A page of a sorted list, with the total of the whole list.
			{"sort=-used&limit=2&offset=2", []string{"carol", "alice"}, 5},
			{"sort=-used&limit=2&offset=4", []string{"bob"}, 5},
			{"search=a&sort=-used&limit=2&offset=2", []string{"alice"}, 3},
			{"search=a&limit=2&offset=5", nil, 3},
			{"status=expired&sort=-used", []string{"dave"}, 1},
		} {
			var l listed
			e.admin("GET", "/api/v1/users?"+c.query, nil, http.StatusOK, &l)
			if !slices.Equal(l.names(), c.want) || l.Total != c.total {
				t.Errorf("%s: %v (total %d), want %v (total %d)", c.query, l.names(), l.Total, c.want, c.total)
			}
		}
		// Without Prometheus the live fields say unknown.
		var l listed
		e.admin("GET", "/api/v1/users", nil, http.StatusOK, &l)
		if l.Live || l.Users[0].Devices != nil || l.Users[0].Online {
			t.Errorf("live numbers without Prometheus: live %v, devices %v", l.Live, l.Users[0].Devices)
		}
		for _, bad := range []string{"sort=size", "filter=over80", "filter=over90,,nope"} {
			wantError(t, bad, e.call("GET", "/api/v1/users?"+bad, adminToken, nil), http.StatusBadRequest, "invalid")
		}
	})
}

func TestUsersListViewerSeesNoCredentials(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("alice", nil)
		c := newCast(t, e)
		for _, path := range []string{"/api/v1/users", "/api/v1/users/alice"} {
			r := e.call("GET", path, c.tokens[store.RoleViewer], nil)
			if r.code != http.StatusOK {
				t.Fatalf("%s: %d %s", path, r.code, r.body)
			}
			if strings.Contains(string(r.body), `"uuid": "`) && !strings.Contains(string(r.body), `"uuid": ""`) ||
				!strings.Contains(string(r.body), `"subscription_token": ""`) {
				t.Errorf("%s shows a viewer credentials: %s", path, r.body)
			}
		}
		// An operator sees them.
		r := e.call("GET", "/api/v1/users", c.tokens[store.RoleOperator], nil)
		if strings.Contains(string(r.body), `"subscription_token": ""`) {
			t.Errorf("operator sees no token: %s", r.body)
		}
	})
}

type bulkAnswer struct {
	Matched int `json:"matched"`
	Done    int `json:"done"`
	Failed  []struct {
		Name  string `json:"name"`
		Error string `json:"error"`
	} `json:"failed"`
}

func (e *env) bulk(tok string, body map[string]any, want int) bulkAnswer {
	e.t.Helper()
	r := e.call("POST", "/api/v1/users/bulk", tok, body)
	if r.code != want {
		e.t.Fatalf("bulk %v: %d %s", body, r.code, r.body)
	}
	var out bulkAnswer
	json.Unmarshal(r.body, &out)
	return out
}

func TestBulkDryRunMatchesRun(t *testing.T) {
	eachRaw(t, nil, func(t *testing.T, e *env, raw *sql.DB) {
		fiveUsers(t, e, raw)
		for _, c := range []struct {
			body  map[string]any
			check func(u store.User) bool
			n     int
		}{
			{map[string]any{"action": "suspend", "filter": map[string]any{"filter": "over90"}},
				func(u store.User) bool { return u.Status == store.StatusDisabled }, 2},
			{map[string]any{"action": "resume", "names": []string{"alice", "dave"}},
				func(u store.User) bool { return u.Status != store.StatusDisabled }, 2},
			{map[string]any{"action": "add_traffic", "bytes": 1000, "filter": map[string]any{"search": "shop"}},
				func(u store.User) bool { return u.TrafficLimit == 1100 }, 1},
		} {
			dry := map[string]any{"dry_run": true}
			maps.Copy(dry, c.body)
			d := e.bulk(adminToken, dry, http.StatusOK)
			got := e.bulk(adminToken, c.body, http.StatusOK)
			if d.Matched != c.n || got.Matched != d.Matched || got.Done != c.n || len(got.Failed) != 0 || d.Done != 0 {
				t.Fatalf("%v: dry run %+v, run %+v, want %d matched", c.body, d, got, c.n)
			}
		}
		if u := e.user("GET", "/api/v1/users/bob", nil); u.TrafficLimit != 1100 {
			t.Errorf("bob's limit %d after adding 1000", u.TrafficLimit)
		}
		// Extend: from the old expiry when it is ahead, from now when it
		// passed; a user that never expires fails by name.
		before := e.user("GET", "/api/v1/users/bob", nil)
		got := e.bulk(adminToken, map[string]any{"action": "extend", "days": 30, "names": []string{"bob", "dave", "carol", "ghost"}}, http.StatusOK)
		if got.Matched != 3 || got.Done != 2 || len(got.Failed) != 2 {
			t.Fatalf("extend: %+v", got)
		}
		if after := e.user("GET", "/api/v1/users/bob", nil); after.ExpireAt.Sub(*before.ExpireAt) != 30*24*time.Hour {
			t.Errorf("bob's expiry moved from %v to %v", before.ExpireAt, after.ExpireAt)
		}
		dave := e.user("GET", "/api/v1/users/dave", nil)
		if d := time.Until(*dave.ExpireAt); d < 29*24*time.Hour || d > 30*24*time.Hour || dave.Status == store.StatusExpired {
			t.Errorf("dave (expired) extended to %v, status %s", dave.ExpireAt, dave.Status)
		}
		// Every change is audited per user, as the single actions are.
		evs, err := e.store.Events(t.Context(), store.EventFilter{ObjectName: "dave"})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, ev := range evs {
			actions = append(actions, ev.Action)
		}
		if !slices.Contains(actions, "user.extend") || !slices.Contains(actions, "user.suspend") || !slices.Contains(actions, "user.resume") {
			t.Errorf("dave's audit log: %v", actions)
		}
		e.admin("PUT", "/api/v1/plans/gold", map[string]any{"traffic_limit_bytes": 5000, "reset_strategy": "month", "device_limit": 3}, http.StatusOK, nil)
		e.bulk(adminToken, map[string]any{"action": "set_plan", "plan": "gold", "names": []string{"erin"}}, http.StatusOK)
		if u := e.user("GET", "/api/v1/users/erin", nil); u.Plan != "gold" || u.TrafficLimit != 5000 || u.DeviceLimit != 3 || u.ResetStrategy != "month" {
			t.Errorf("erin after set_plan: %+v", u)
		}
		oldTok := e.user("GET", "/api/v1/users/bob", nil).SubToken
		e.bulk(adminToken, map[string]any{"action": "rotate_token", "names": []string{"bob"}}, http.StatusOK)
		e.bulk(adminToken, map[string]any{"action": "set_groups", "groups": []string{"eu", "asia"}, "names": []string{"bob"}}, http.StatusOK)
		if u := e.user("GET", "/api/v1/users/bob", nil); u.SubToken == oldTok || u.SubToken == "" || !slices.Equal(u.Groups, []string{"asia", "eu"}) {
			t.Errorf("bob after rotate_token and set_groups: token changed %v, groups %v", u.SubToken != oldTok, u.Groups)
		}
		e.bulk(adminToken, map[string]any{"action": "delete", "filter": map[string]any{"status": "active", "search": "erin"}}, http.StatusOK)
		wantError(t, "deleted erin", e.call("GET", "/api/v1/users/erin", adminToken, nil), http.StatusNotFound, "not_found")
		for _, bad := range []map[string]any{
			{"action": "explode", "names": []string{"bob"}},
			{"action": "suspend"},
			{"action": "suspend", "names": []string{"bob"}, "filter": map[string]any{}},
			{"action": "extend", "names": []string{"bob"}},
			{"action": "set_plan", "plan": "nope", "names": []string{"bob"}, "dry_run": false},
		} {
			if r := e.call("POST", "/api/v1/users/bulk", adminToken, bad); r.code == http.StatusOK {
				var a bulkAnswer
				json.Unmarshal(r.body, &a)
				if a.Done != 0 {
					t.Errorf("%v did something: %s", bad, r.body)
				}
			}
		}
	})
}

func TestBulkResellerReachesOnlyItsUsers(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("staff1", nil)
		e.createUser("staff2", nil)
		c := newCast(t, e)
		tok := c.tokens[store.RoleReseller]
		for _, n := range []string{"mine1", "mine2"} {
			if r := e.call("POST", "/api/v1/users", tok, map[string]any{"name": n}); r.code != http.StatusCreated {
				t.Fatalf("reseller create: %d %s", r.code, r.body)
			}
		}
		// By filter: everything "matching" is its own users only.
		dry := e.bulk(tok, map[string]any{"action": "suspend", "filter": map[string]any{}, "dry_run": true}, http.StatusOK)
		got := e.bulk(tok, map[string]any{"action": "suspend", "filter": map[string]any{}}, http.StatusOK)
		if dry.Matched != 2 || got.Done != 2 {
			t.Fatalf("reseller suspend all: dry %+v, run %+v", dry, got)
		}
		// By name: another's user fails as if it did not exist.
		got = e.bulk(tok, map[string]any{"action": "delete", "names": []string{"staff1", "mine1"}}, http.StatusOK)
		if got.Matched != 1 || got.Done != 1 || len(got.Failed) != 1 || got.Failed[0].Name != "staff1" || got.Failed[0].Error != "no such user" {
			t.Fatalf("reseller delete: %+v", got)
		}
		for _, n := range []string{"staff1", "staff2"} {
			if u := e.user("GET", "/api/v1/users/"+n, nil); u.Status != store.StatusActive {
				t.Errorf("%s is %s after a reseller's bulk actions", n, u.Status)
			}
		}
		wantError(t, "reseller bulk reset", e.call("POST", "/api/v1/users/bulk", tok, map[string]any{"action": "reset", "names": []string{"mine2"}}),
			http.StatusForbidden, "forbidden")
		wantError(t, "viewer bulk", e.call("POST", "/api/v1/users/bulk", c.tokens[store.RoleViewer], map[string]any{"action": "suspend", "names": []string{"staff1"}}),
			http.StatusForbidden, "forbidden")
	})
}

type whyAnswer struct {
	store.User
	Why *struct {
		Kind      string            `json:"kind"`
		Alert     string            `json:"alert"`
		Labels    map[string]string `json:"labels"`
		Rule      string            `json:"rule"`
		Threshold string            `json:"threshold"`
		Since     *time.Time        `json:"since"`
		By        string            `json:"by"`
		LiftsAt   *time.Time        `json:"lifts_at"`
		LiftsWhen string            `json:"lifts_when"`
	} `json:"why"`
}

type timelineAnswer struct {
	Items []struct {
		At      time.Time      `json:"at"`
		Kind    string         `json:"kind"`
		Actor   string         `json:"actor"`
		Summary string         `json:"summary"`
		Details map[string]any `json:"details"`
	} `json:"items"`
}

// TestWhyNamesTheAlert suspends a user through the real webhook (the
// actions package behind POST /api/v1/alerts) and reads why from the user
// and its timeline; the resolution lifts it and shows on the timeline.
func TestWhyNamesTheAlert(t *testing.T) {
	withActor := func(o *api.Options, s *store.Store) {
		log := logrus.New()
		log.SetOutput(io.Discard)
		o.Alerts = actions.New(s, nil, nil, log, actions.Config{
			Rate: actions.Rate{N: 100, Window: time.Minute}, SuspendRate: actions.Rate{N: 100, Window: time.Minute},
			DrainRate: actions.Rate{N: 100, Window: time.Minute}}, prometheus.NewRegistry())
	}
	eachRaw(t, withActor, func(t *testing.T, e *env, raw *sql.DB) {
		e.createUser("alice", map[string]any{"traffic_limit_bytes": 100, "reset_strategy": "month"})
		setUsed(t, raw, "alice", 150)
		start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		alert := func(status string) string {
			return fmt.Sprintf(`{"receiver":"boxfleet","status":%q,"alerts":[{"status":%q,
			  "labels":{"alertname":"UserOverQuota","boxfleet_action":"suspend_user","user":"alice","severity":"warning"},
			  "annotations":{},"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z",
			  "generatorURL":"http://p/graph","fingerprint":"0a1b2c3d4e5f6071"}],
			  "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am",
			  "version":"4","groupKey":"{}:{alertname=\"UserOverQuota\"}","truncatedAlerts":0}`, status, status, start.Format(time.RFC3339))
		}
		e.admin("POST", "/api/v1/alerts", alert("firing"), http.StatusOK, nil)
		var u whyAnswer
		e.admin("GET", "/api/v1/users/alice", nil, http.StatusOK, &u)
		if u.Status != store.StatusDisabled || u.Why == nil {
			t.Fatalf("after the alert: %s, why %+v", u.Status, u.Why)
		}
		w := u.Why
		if w.Kind != "alert" || w.Alert != "UserOverQuota" || w.Labels["user"] != "alice" || w.Labels["boxfleet_action"] != "suspend_user" ||
			!strings.HasPrefix(w.By, "alert:UserOverQuota/0a1b2c3d4e5f6071@") || w.Since == nil || time.Since(*w.Since) > time.Minute ||
			!strings.Contains(w.Threshold, "100 bytes") || w.LiftsAt == nil || w.LiftsAt.Day() != 1 || w.LiftsWhen == "" {
			t.Errorf("why: %+v", *w)
		}
		var al struct {
			Episodes []struct {
				Alert, Target, State, Result string
			} `json:"episodes"`
		}
		e.admin("GET", "/api/v1/alerts", nil, http.StatusOK, &al)
		if len(al.Episodes) != 1 || al.Episodes[0].Alert != "UserOverQuota" || al.Episodes[0].Target != "alice" ||
			al.Episodes[0].State != "firing" || al.Episodes[0].Result != "applied" {
			t.Errorf("acting alerts: %+v", al.Episodes)
		}
		var tl timelineAnswer
		e.admin("GET", "/api/v1/users/alice/timeline", nil, http.StatusOK, &tl)
		kinds := map[string]bool{}
		for _, it := range tl.Items {
			kinds[it.Kind] = true
		}
		if !kinds["alert_fired"] || !kinds["action"] || !kinds["event"] {
			t.Errorf("timeline kinds %v: %+v", kinds, tl.Items)
		}

		e.admin("POST", "/api/v1/alerts", alert("resolved"), http.StatusOK, nil)
		u = whyAnswer{}
		e.admin("GET", "/api/v1/users/alice", nil, http.StatusOK, &u)
		// Usage is still over the limit: the user comes back as limited,
		// and why says so.
		if u.Status != store.StatusLimited || u.Why == nil || u.Why.Kind != "limited" {
			t.Errorf("after resolution: %s, why %+v", u.Status, u.Why)
		}
		tl = timelineAnswer{}
		e.admin("GET", "/api/v1/users/alice/timeline", nil, http.StatusOK, &tl)
		if tl.Items[0].Kind != "alert_resolved" && tl.Items[0].Kind != "action" {
			t.Errorf("newest timeline item %+v", tl.Items[0])
		}
		for i := 1; i < len(tl.Items); i++ {
			if tl.Items[i].At.After(tl.Items[i-1].At) {
				t.Errorf("timeline not newest first at %d", i)
			}
		}

		// An admin's suspension says who and that only an admin lifts it.
		e.admin("POST", "/api/v1/users/alice/suspend", map[string]string{"reason": "abuse"}, http.StatusOK, nil)
		u = whyAnswer{}
		e.admin("GET", "/api/v1/users/alice", nil, http.StatusOK, &u)
		if u.Why == nil || u.Why.Kind != "admin" || u.Why.By != "admin:test" || u.Why.LiftsAt != nil {
			t.Errorf("admin suspension why: %+v", u.Why)
		}
		// Created past its expiry: expired, by whoever created it.
		e.createUser("old", map[string]any{"expire_at": time.Now().Add(-time.Hour)})
		u = whyAnswer{}
		e.admin("GET", "/api/v1/users/old", nil, http.StatusOK, &u)
		if u.Status != store.StatusExpired || u.Why == nil || u.Why.Kind != "expired" || u.Why.By != "admin:test" || !strings.Contains(u.Why.LiftsWhen, "expiry") {
			t.Errorf("expired why: %s %+v", u.Status, u.Why)
		}
		// Active users carry no why.
		e.createUser("bob", nil)
		r := e.admin("GET", "/api/v1/users/bob", nil, http.StatusOK, nil)
		if strings.Contains(string(r.body), `"why"`) {
			t.Errorf("active user with why: %s", r.body)
		}
	})
}

func TestNodesViewAndInstall(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		var created struct {
			Token          string `json:"token"`
			InstallCommand string `json:"install_command"`
		}
		e.admin("POST", "/api/v1/nodes", map[string]any{"name": "fra-1"}, http.StatusCreated, &created)
		want := "curl -fsSL " + e.url + "/install/node.sh | sudo sh -s -- --controller " + e.url + " --name fra-1 --token " + created.Token
		if created.InstallCommand != want {
			t.Errorf("install command %q, want %q", created.InstallCommand, want)
		}
		e.admin("POST", "/api/v1/nodes/fra-1/drain", map[string]string{"reason": "maintenance"}, http.StatusOK, nil)
		var n struct {
			RevisionWanted int64      `json:"revision_wanted"`
			DrainedBy      *string    `json:"drained_by"`
			DrainedSince   *time.Time `json:"drained_since"`
			Live           bool       `json:"live"`
			RateUp         *float64   `json:"rate_up"`
			Health         struct {
				Score *float64 `json:"score"`
			} `json:"health"`
		}
		e.admin("GET", "/api/v1/nodes/fra-1", nil, http.StatusOK, &n)
		rev, _ := e.store.UsersRevision(t.Context())
		if n.RevisionWanted != rev || n.DrainedBy == nil || *n.DrainedBy != "admin:test" || n.DrainedSince == nil ||
			time.Since(*n.DrainedSince) > time.Minute || n.Live || n.RateUp != nil || n.Health.Score != nil {
			t.Errorf("node view: %+v", n)
		}
		r := e.call("GET", "/install/node.sh", "", nil)
		if r.code != http.StatusOK || !strings.HasPrefix(string(r.body), "#!/bin/sh") {
			t.Errorf("install script: %d %.40s", r.code, r.body)
		}
		wantError(t, "binary without --install.dir", e.call("GET", "/install/singbox_exporter-linux-amd64", "", nil), http.StatusNotFound, "not_found")
		wantError(t, "unknown arch", e.call("GET", "/install/singbox_exporter-linux-mips", "", nil), http.StatusNotFound, "not_found")
	})
}

func TestOverviewCountsOwnUsers(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("a1", nil)
		e.createUser("a2", nil)
		e.admin("POST", "/api/v1/users/a2/suspend", nil, http.StatusOK, nil)
		c := newCast(t, e)
		if r := e.call("POST", "/api/v1/users", c.tokens[store.RoleReseller], map[string]any{"name": "r1"}); r.code != http.StatusCreated {
			t.Fatal(r.code)
		}
		var o struct {
			UsersByStatus map[string]int `json:"users_by_status"`
			Live          bool           `json:"live"`
			Online        *int           `json:"online"`
			Traffic       map[string]struct{ Up, Down int64 }
			RecentActions []struct {
				ObjectName string `json:"object_name"`
			} `json:"recent_actions"`
		}
		e.admin("GET", "/api/v1/stats/overview", nil, http.StatusOK, &o)
		if o.UsersByStatus["active"] != 2 || o.UsersByStatus["disabled"] != 1 || o.Live || o.Online != nil || len(o.Traffic) != 3 || len(o.RecentActions) == 0 {
			t.Errorf("staff overview: %+v", o)
		}
		r := e.call("GET", "/api/v1/stats/overview", c.tokens[store.RoleReseller], nil)
		o.UsersByStatus, o.RecentActions = nil, nil
		json.Unmarshal(r.body, &o)
		if o.UsersByStatus["active"] != 1 || o.UsersByStatus["disabled"] != 0 {
			t.Errorf("reseller overview counts: %v", o.UsersByStatus)
		}
		for _, ev := range o.RecentActions {
			if ev.ObjectName != "r1" {
				t.Errorf("reseller sees an event about %s", ev.ObjectName)
			}
		}
		wantError(t, "reseller node series", e.call("GET", "/api/v1/stats/series?metric=node_rate", c.tokens[store.RoleReseller], nil), http.StatusForbidden, "forbidden")
		wantError(t, "reseller's series of another's user", e.call("GET", "/api/v1/stats/series?metric=user_rate&user=a1", c.tokens[store.RoleReseller], nil), http.StatusNotFound, "not_found")
		wantError(t, "unknown range", e.call("GET", "/api/v1/stats/series?metric=node_rate&range=2y", adminToken, nil), http.StatusBadRequest, "invalid")
	})
}

func TestRedeliver(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.admin("PUT", "/api/v1/hooks/ops", map[string]any{"url": "https://hooks.example/in", "secret": hookSecret, "events": []string{"user.suspend"}}, http.StatusOK, nil)
		e.createUser("alice", nil)
		e.admin("POST", "/api/v1/users/alice/suspend", nil, http.StatusOK, nil)
		var ds struct{ Deliveries []store.Delivery }
		e.admin("GET", "/api/v1/hooks/ops/deliveries", nil, http.StatusOK, &ds)
		id := ds.Deliveries[0].ID
		// The receiver refused it for good.
		if err := e.store.DeliveryFailed(t.Context(), id, 5, 500, "boom", -1); err != nil {
			t.Fatal(err)
		}
		var d store.Delivery
		e.admin("POST", fmt.Sprintf("/api/v1/hooks/ops/deliveries/%d/redeliver", id), nil, http.StatusOK, &d)
		if d.ID != id || d.Status != store.DeliveryPending || d.Attempts != 0 || d.NextAttemptAt == nil || time.Until(*d.NextAttemptAt) > time.Second {
			t.Errorf("redelivered: %+v", d)
		}
		// The deliverer takes it at once.
		out, err := e.store.ClaimDeliveries(t.Context(), 10, time.Minute)
		if err != nil || len(out) != 1 || out[0].ID != id {
			t.Errorf("claimed %v %v", out, err)
		}
		evs, _ := e.store.Events(t.Context(), store.EventFilter{Action: "hook.redeliver"})
		if len(evs) != 1 || evs[0].Actor != "admin:test" || evs[0].ObjectName != "ops" {
			t.Errorf("audit: %+v", evs)
		}
		e.admin("PUT", "/api/v1/hooks/other", map[string]any{"url": "https://hooks.example/2", "secret": hookSecret, "events": []string{"user.*"}}, http.StatusOK, nil)
		wantError(t, "another hook's delivery", e.call("POST", fmt.Sprintf("/api/v1/hooks/other/deliveries/%d/redeliver", id), adminToken, nil), http.StatusNotFound, "not_found")
		wantError(t, "bad id", e.call("POST", "/api/v1/hooks/ops/deliveries/x/redeliver", adminToken, nil), http.StatusBadRequest, "invalid")
	})
}

func TestInstallBinaryFromDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "singbox_exporter-linux-arm64"), []byte("arm64 build"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, storetest.SQLite(t), func(o *api.Options) {
		o.Install = api.InstallOptions{Dir: dir, ExternalURL: "https://ctl.example/"}
	})
	r := e.call("GET", "/install/singbox_exporter-linux-arm64", "", nil)
	if r.code != http.StatusOK || string(r.body) != "arm64 build" || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("arm64: %d %q %s", r.code, r.body, r.header.Get("Content-Type"))
	}
	wantError(t, "amd64 missing from the directory", e.call("GET", "/install/singbox_exporter-linux-amd64", "", nil), http.StatusNotFound, "not_found")
	wantError(t, "a path out of the directory", e.call("GET", "/install/singbox_exporter-linux-..%2f..%2fetc%2fpasswd", "", nil), http.StatusNotFound, "")
	var created struct {
		InstallCommand string `json:"install_command"`
		Token          string `json:"token"`
	}
	e.admin("POST", "/api/v1/nodes", map[string]any{"name": "n1"}, http.StatusCreated, &created)
	if want := "curl -fsSL https://ctl.example/install/node.sh | sudo sh -s -- --controller https://ctl.example --name n1 --token " + created.Token; created.InstallCommand != want {
		t.Errorf("install command %q, want %q", created.InstallCommand, want)
	}
	for _, f := range []string{"singbox_exporter.flags", "singbox_exporter.service"} {
		if r := e.call("GET", "/install/"+f, "", nil); r.code != http.StatusOK || len(r.body) < 50 {
			t.Errorf("%s: %d", f, r.code)
		}
	}
}

// TestOverviewTrafficFromLedger: today, 7 d and 30 d are sums of the daily
// ledger, and a reseller's are its users' only.
func TestOverviewTrafficFromLedger(t *testing.T) {
	eachRaw(t, nil, func(t *testing.T, e *env, raw *sql.DB) {
		c := newCast(t, e)
		e.createUser("staffs", nil)
		if r := e.call("POST", "/api/v1/users", c.tokens[store.RoleReseller], map[string]any{"name": "mine"}); r.code != http.StatusCreated {
			t.Fatal(r.code)
		}
		day := func(back int) int {
			y, m, d := time.Now().UTC().AddDate(0, 0, -back).Date()
			return y*10000 + int(m)*100 + d
		}
		for _, r := range []struct {
			user     string
			back     int
			up, down int64
		}{
			{"mine", 0, 1, 10}, {"mine", 5, 100, 1000}, {"mine", 20, 10000, 100000}, {"mine", 40, 1 << 20, 1 << 20},
			{"staffs", 0, 2, 20}, {"staffs", 29, 200, 2000}, {"staffs", 30, 1 << 20, 1 << 20},
		} {
			if _, err := raw.Exec(`INSERT INTO usage_days (user_name, node, day, upload, download) VALUES (?, 'n1', ?, ?, ?)`,
				r.user, day(r.back), r.up, r.down); err != nil {
				t.Fatal(err)
			}
		}
		type ud struct{ Up, Down int64 }
		var o struct {
			Traffic map[string]ud `json:"traffic"`
		}
		e.admin("GET", "/api/v1/stats/overview", nil, http.StatusOK, &o)
		if want := map[string]ud{"today": {3, 30}, "7d": {103, 1030}, "30d": {10303, 103030}}; fmt.Sprint(o.Traffic) != fmt.Sprint(want) {
			t.Errorf("staff traffic %v, want %v", o.Traffic, want)
		}
		r := e.call("GET", "/api/v1/stats/overview", c.tokens[store.RoleReseller], nil)
		o.Traffic = nil
		json.Unmarshal(r.body, &o)
		if want := map[string]ud{"today": {1, 10}, "7d": {101, 1010}, "30d": {10101, 101010}}; fmt.Sprint(o.Traffic) != fmt.Sprint(want) {
			t.Errorf("reseller traffic %v, want %v", o.Traffic, want)
		}
	})
}
