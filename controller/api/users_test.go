package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
)

// Names that end up in metric labels, profile file names and URLs; each must
// be refused, and none may create anything.
var hostileNames = []string{
	"", "-lead", ".hidden", "_under", "a b", "a/b", "../etc/passwd", `a\b`, "a\nb", "a\x00b",
	"<script>", `a"b`, "a'b", "a;DROP TABLE users", "a,b", "a%41", "ünicode", "a{x}", "a}",
	strings.Repeat("x", 65),
}

func TestCreateUserRefusesBadNames(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		for _, name := range hostileNames {
			got := wantError(t, fmt.Sprintf("user %q", name), e.call("POST", "/api/v1/users", adminToken, map[string]string{"name": name}), http.StatusBadRequest, "invalid")
			if got.Field != "name" {
				t.Errorf("user %q: field %q, want name", name, got.Field)
			}
			wantError(t, fmt.Sprintf("node %q", name), e.call("POST", "/api/v1/nodes", adminToken, map[string]string{"name": name}), http.StatusBadRequest, "invalid")
			if name != "" && !strings.ContainsAny(name, "/\x00") {
				wantError(t, fmt.Sprintf("plan %q", name), e.call("PUT", "/api/v1/plans/"+url.PathEscape(name), adminToken, map[string]any{}), http.StatusBadRequest, "invalid")
			}
			wantError(t, fmt.Sprintf("group %q", name), e.call("POST", "/api/v1/users", adminToken, map[string]any{"name": "ok", "groups": []string{name}}), http.StatusBadRequest, "invalid")
		}
		// The longest and the most unusual good names still work.
		for _, name := range []string{strings.Repeat("x", 64), "a.b_c-d@e", "0"} {
			e.createUser(name, nil)
		}
		var page struct{ Total int }
		e.admin("GET", "/api/v1/users", nil, http.StatusOK, &page)
		if page.Total != 3 {
			t.Fatalf("%d users exist, want only the 3 valid ones", page.Total)
		}
		var plans struct{ Plans []any }
		if e.admin("GET", "/api/v1/plans", nil, http.StatusOK, &plans); len(plans.Plans) != 0 {
			t.Fatalf("refused plan names created plans: %v", plans.Plans)
		}
	})
}

func TestBodyValidation(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("alice", nil)
		cases := []struct {
			what, method, path string
			body               any
			status             int
			code, field        string
		}{
			{"negative limit", "POST", "/api/v1/users", `{"name":"x","traffic_limit_bytes":-1}`, 400, "invalid", "traffic_limit_bytes"},
			{"negative devices", "POST", "/api/v1/users", `{"name":"x","device_limit":-1}`, 400, "invalid", "device_limit"},
			{"negative on hold", "POST", "/api/v1/users", `{"name":"x","on_hold_seconds":-5}`, 400, "invalid", "on_hold_seconds"},
			{"bad reset strategy", "POST", "/api/v1/users", `{"name":"x","reset_strategy":"monthly"}`, 400, "invalid", "reset_strategy"},
			{"unknown plan", "POST", "/api/v1/users", `{"name":"x","plan":"gold"}`, 400, "invalid", "plan"},
			{"note too long", "POST", "/api/v1/users", map[string]any{"name": "x", "note": strings.Repeat("n", 1025)}, 400, "invalid", "note"},
			{"unknown field", "POST", "/api/v1/users", `{"name":"x","traffic_limit":5}`, 400, "bad_request", ""},
			{"malformed JSON", "POST", "/api/v1/users", `{"name":"x"`, 400, "bad_request", ""},
			{"wrong type", "POST", "/api/v1/users", `{"name":5}`, 400, "bad_request", ""},
			{"empty body", "POST", "/api/v1/users", ``, 400, "bad_request", ""},
			{"not an object", "POST", "/api/v1/users", `["x"]`, 400, "bad_request", ""},
			{"trailing garbage", "POST", "/api/v1/users", `{"name":"x"} garbage`, 400, "bad_request", ""},
			{"second object", "POST", "/api/v1/users", `{"name":"x"}{"name":"y"}`, 400, "bad_request", ""},
			{"trailing brace", "POST", "/api/v1/users", `{"name":"x"}}`, 400, "bad_request", ""},
			{"trailing bracket", "POST", "/api/v1/users", `{"name":"x"}]`, 400, "bad_request", ""},
			{"patch unknown field", "PATCH", "/api/v1/users/alice", `{"name":"bob"}`, 400, "bad_request", ""},
			{"patch bad reset", "PATCH", "/api/v1/users/alice", `{"reset_strategy":""}`, 400, "invalid", "reset_strategy"},
			{"patch bad expiry", "PATCH", "/api/v1/users/alice", `{"expire_at":"tomorrow"}`, 400, "bad_request", ""},
			{"suspend reason too long", "POST", "/api/v1/users/alice/suspend", map[string]string{"reason": strings.Repeat("r", 256)}, 400, "invalid", "reason"},
			{"suspend unknown field", "POST", "/api/v1/users/alice/suspend", `{"why":"x"}`, 400, "bad_request", ""},
			{"plan bad reset", "PUT", "/api/v1/plans/gold", `{"reset_strategy":"fortnight"}`, 400, "invalid", "reset_strategy"},
			{"plan negative limit", "PUT", "/api/v1/plans/gold", `{"traffic_limit_bytes":-1}`, 400, "invalid", "traffic_limit_bytes"},
			{"plan negative duration", "PUT", "/api/v1/plans/gold", `{"duration_seconds":-1}`, 400, "invalid", ""},
			{"node label node", "POST", "/api/v1/nodes", `{"name":"n","labels":{"node":"x"}}`, 400, "invalid", "labels"},
			{"node label reserved", "POST", "/api/v1/nodes", `{"name":"n","labels":{"__address__":"x"}}`, 400, "invalid", "labels"},
			{"node label bad name", "POST", "/api/v1/nodes", `{"name":"n","labels":{"a-b":"x"}}`, 400, "invalid", "labels"},
			{"negative list limit", "GET", "/api/v1/users?limit=-1", nil, 400, "invalid", "limit"},
			{"zero list limit", "GET", "/api/v1/users?limit=0", nil, 400, "invalid", "limit"},
			{"word list limit", "GET", "/api/v1/users?limit=ten", nil, 400, "invalid", "limit"},
			{"negative offset", "GET", "/api/v1/users?offset=-1", nil, 400, "invalid", "offset"},
			{"unknown status", "GET", "/api/v1/users?status=banned", nil, 400, "invalid", "status"},
			{"zero events limit", "GET", "/api/v1/events?limit=0", nil, 400, "invalid", "limit"},
			{"bad usage date", "GET", "/api/v1/users/alice/usage?from=yesterday", nil, 400, "invalid", "from"},
		}
		for _, c := range cases {
			got := wantError(t, c.what, e.call(c.method, c.path, adminToken, c.body), c.status, c.code)
			if c.field != "" && got.Field != c.field {
				t.Errorf("%s: field %q, want %q", c.what, got.Field, c.field)
			}
		}
		var page struct{ Total int }
		e.admin("GET", "/api/v1/users", nil, http.StatusOK, &page)
		if page.Total != 1 {
			t.Fatalf("refused requests left %d users, want 1", page.Total)
		}
		// White space after the body is not garbage (curl -d @file adds a
		// newline).
		e.admin("POST", "/api/v1/users", "{\"name\":\"nl\"}\n\t \r\n", http.StatusCreated, nil)
		u, err := e.store.GetUser(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if u.Status != store.StatusActive || u.ResetStrategy != "no_reset" {
			t.Fatalf("refused PATCH or suspend changed alice: %+v", u)
		}
		if _, err := e.store.GetPlan(t.Context(), "gold"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("refused plan PUTs stored a plan: %v", err)
		}
	})
}

func TestNotFoundConflictAndMethod(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("alice", nil)
		e.createNode("n1", nil)
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/v1/users/bob"},
			{"PATCH", "/api/v1/users/bob"},
			{"DELETE", "/api/v1/users/bob"},
			{"POST", "/api/v1/users/bob/suspend"},
			{"POST", "/api/v1/users/bob/resume"},
			{"POST", "/api/v1/users/bob/reset"},
			{"POST", "/api/v1/users/bob/rotate-token"},
			{"GET", "/api/v1/users/bob/usage"},
			{"GET", "/api/v1/plans/gold"},
			{"DELETE", "/api/v1/plans/gold"},
			{"GET", "/api/v1/nodes/n2"},
			{"DELETE", "/api/v1/nodes/n2"},
			{"POST", "/api/v1/nodes/n2/drain"},
			{"POST", "/api/v1/nodes/n2/undrain"},
			{"GET", "/api/v1/nope"},
			{"GET", "/api/v2/users"},
			{"GET", "/api/v1/users/alice/nope"},
		} {
			body := any(nil)
			if c.method == "PATCH" {
				body = `{"note":"x"}`
			}
			wantError(t, c.method+" "+c.path, e.call(c.method, c.path, adminToken, body), http.StatusNotFound, "not_found")
		}
		wantError(t, "duplicate user", e.call("POST", "/api/v1/users", adminToken, map[string]string{"name": "alice"}), http.StatusConflict, "conflict")
		wantError(t, "duplicate node", e.call("POST", "/api/v1/nodes", adminToken, map[string]string{"name": "n1"}), http.StatusConflict, "conflict")
		// A 405 says what the path does allow (RFC 9110).
		for _, c := range []struct{ method, path, allow string }{
			{"DELETE", "/api/v1/users", "GET, POST"},
			{"PUT", "/api/v1/users/alice", "GET, PATCH, DELETE"},
			{"GET", "/api/v1/users/alice/suspend", "POST"},
			{"POST", "/api/v1/plans", "GET"},
			{"PATCH", "/api/v1/nodes/n1", "GET, PUT, DELETE"},
			{"POST", "/api/v1/sd", "GET"},
			{"POST", "/metrics", "GET"},
		} {
			r := e.call(c.method, c.path, adminToken, nil)
			wantError(t, c.method+" "+c.path, r, http.StatusMethodNotAllowed, "")
			if got := r.header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
			}
		}
	})
}

func TestOversizedBody(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", nil)
		// Just over the limit, so that the server reads it all and the
		// answer is never lost to a reset connection.
		big := `{"name":"x","note":"` + strings.Repeat("a", 1<<20) + `"}`
		wantError(t, "big user", e.call("POST", "/api/v1/users", adminToken, big), http.StatusRequestEntityTooLarge, "too_large")
		wantError(t, "big patch", e.call("PATCH", "/api/v1/users/x", adminToken, big), http.StatusRequestEntityTooLarge, "too_large")
		wantError(t, "big plan", e.call("PUT", "/api/v1/plans/p", adminToken, `{"note":"`+strings.Repeat("a", 1<<20)+`"}`), http.StatusRequestEntityTooLarge, "too_large")
		reg := `{"address":"` + strings.Repeat("a", 1<<20) + `"}`
		wantError(t, "big registration", e.call("PUT", "/api/v1/nodes/n1", tok, reg), http.StatusRequestEntityTooLarge, "too_large")
		wantError(t, "big reason", e.call("POST", "/api/v1/nodes/n1/drain", adminToken, `{"reason":"`+strings.Repeat("a", 1<<20)+`"}`), http.StatusRequestEntityTooLarge, "too_large")
		// Just under the limit is a validation question, not a size one.
		fits := `{"name":"x","note":"` + strings.Repeat("a", 1<<20-40) + `"}`
		wantError(t, "large note", e.call("POST", "/api/v1/users", adminToken, fits), http.StatusBadRequest, "invalid")
	})
}

func TestListUsersPagination(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		for i := range 250 {
			if _, err := e.store.CreateUser(ctx, "test", fmt.Sprintf("user%03d", i), "", store.UserSpec{}); err != nil {
				t.Fatal(err)
			}
		}
		type page struct {
			Users                []store.User
			Total, Limit, Offset int
		}
		seen := map[string]bool{}
		var names []string
		for offset := 0; offset < 300; offset += 100 {
			var p page
			e.admin("GET", fmt.Sprintf("/api/v1/users?limit=100&offset=%d", offset), nil, http.StatusOK, &p)
			want := min(100, max(0, 250-offset))
			if len(p.Users) != want || p.Total != 250 || p.Limit != 100 || p.Offset != offset {
				t.Fatalf("offset %d: %d users, total %d, limit %d, offset %d; want %d users of 250", offset, len(p.Users), p.Total, p.Limit, p.Offset, want)
			}
			for _, u := range p.Users {
				if seen[u.Name] {
					t.Fatalf("%s on two pages", u.Name)
				}
				seen[u.Name] = true
				names = append(names, u.Name)
			}
		}
		for i, n := range names {
			if want := fmt.Sprintf("user%03d", i); n != want {
				t.Fatalf("user %d is %s, want %s (pages not ordered by name)", i, n, want)
			}
		}
		var p page
		e.admin("GET", "/api/v1/users", nil, http.StatusOK, &p)
		if len(p.Users) != 100 || p.Limit != 100 {
			t.Fatalf("default page: %d users, limit %d; want 100", len(p.Users), p.Limit)
		}
		e.admin("GET", "/api/v1/users?limit=5000", nil, http.StatusOK, &p)
		if len(p.Users) != 250 || p.Limit != 1000 {
			t.Fatalf("limit 5000: %d users, limit %d; want 250 and a cap of 1000", len(p.Users), p.Limit)
		}
		e.admin("GET", "/api/v1/users?offset=1000", nil, http.StatusOK, &p)
		if len(p.Users) != 0 || p.Total != 250 || p.Users == nil {
			t.Fatalf("offset past the end: %d users (nil %v), total %d", len(p.Users), p.Users == nil, p.Total)
		}
		r := e.admin("GET", "/api/v1/users?offset=1000", nil, http.StatusOK, nil)
		if !strings.Contains(string(r.body), `"users": []`) {
			t.Errorf("an empty page must be [], not null: %s", r.body)
		}
	})
}

func TestListUsersFilters(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.admin("PUT", "/api/v1/plans/gold", map[string]any{"traffic_limit_bytes": 1 << 30}, http.StatusOK, nil)
		e.createUser("alice", map[string]any{"groups": []string{"eu"}, "note": "Paid in Cash"})
		e.createUser("bob", map[string]any{"groups": []string{"us"}, "plan": "gold"})
		e.createUser("carol", nil) // no groups: every group
		e.createUser("dave", map[string]any{"groups": []string{"EU"}})
		e.createUser("erin_1", nil)
		e.createUser("erin21", nil)
		e.admin("POST", "/api/v1/users/bob/suspend", nil, http.StatusOK, nil)

		for _, c := range []struct {
			query string
			want  string
		}{
			{"status=disabled", "bob"},
			{"status=active", "alice,carol,dave,erin21,erin_1"},
			{"status=expired", ""},
			{"group=eu", "alice,carol,erin21,erin_1"},
			{"group=us", "bob,carol,erin21,erin_1"},
			{"group=EU", "carol,dave,erin21,erin_1"},
			{"plan=gold", "bob"},
			{"search=cash", "alice"},
			{"search=CAR", "carol"},
			{"search=_", "erin_1"}, // a literal underscore, not LIKE's wildcard
			{"search=%25", ""},
			{"search=eri&group=us&status=active", "erin21,erin_1"},
		} {
			var p struct {
				Users []store.User
				Total int
			}
			e.admin("GET", "/api/v1/users?"+c.query, nil, http.StatusOK, &p)
			var got []string
			for _, u := range p.Users {
				got = append(got, u.Name)
			}
			if strings.Join(got, ",") != c.want || p.Total != len(got) {
				t.Errorf("%s: got %v (total %d), want %s", c.query, got, p.Total, c.want)
			}
		}
	})
}

func TestUserActions(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		alice := e.createUser("alice", map[string]any{"traffic_limit_bytes": 1000, "reset_strategy": "month"})
		if alice.SubToken == "" || alice.Credentials.UUID == "" || alice.Credentials.Password == "" {
			t.Fatalf("new user lacks credentials: %+v", alice)
		}

		var u store.User
		u = e.user("POST", "/api/v1/users/alice/suspend", map[string]string{"reason": "abuse report #12"})
		if u.Status != store.StatusDisabled || u.StatusReason != "admin: abuse report #12" {
			t.Fatalf("after suspend: status %q reason %q", u.Status, u.StatusReason)
		}
		u = e.user("POST", "/api/v1/users/alice/suspend", nil)
		if !strings.HasPrefix(u.StatusReason, "admin:") {
			t.Fatalf("suspension without a reason is not marked as an admin's: %q", u.StatusReason)
		}
		var evs struct {
			Events []store.Event
		}
		e.admin("GET", "/api/v1/events?object=alice&action=user.suspend", nil, http.StatusOK, &evs)
		if len(evs.Events) != 2 || evs.Events[1].Detail != "admin: abuse report #12" || evs.Events[0].Actor != "admin:test" {
			t.Fatalf("suspend events: %+v", evs.Events)
		}

		u = e.user("POST", "/api/v1/users/alice/resume", nil)
		if u.Status != store.StatusActive || u.StatusReason != "" {
			t.Fatalf("after resume: %q %q", u.Status, u.StatusReason)
		}

		// Usage over the limit makes the user limited; reset brings it back.
		if _, err := e.store.CommitNode(ctx, "", "", "n1", 0, []store.Sample{{User: "alice", Direction: "download", Value: 1500}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Sweep(ctx, "test"); err != nil {
			t.Fatal(err)
		}
		u = e.user("GET", "/api/v1/users/alice", nil)
		if u.UsedDown != 1500 || u.Status != store.StatusLimited {
			t.Fatalf("after 1500 bytes of a 1000 limit: used %d, status %q", u.UsedDown, u.Status)
		}
		var usage struct {
			User  string
			Usage []store.UsageRow
		}
		e.admin("GET", "/api/v1/users/alice/usage", nil, http.StatusOK, &usage)
		if len(usage.Usage) != 1 || usage.Usage[0].Download != 1500 || usage.Usage[0].Node != "n1" {
			t.Fatalf("usage: %+v", usage)
		}
		u = e.user("POST", "/api/v1/users/alice/reset", nil)
		if u.Used() != 0 || u.Status != store.StatusActive {
			t.Fatalf("after reset: used %d, status %q", u.Used(), u.Status)
		}
		// The ledger keeps the history; only the period's counter is reset.
		e.admin("GET", "/api/v1/users/alice/usage", nil, http.StatusOK, &usage)
		if len(usage.Usage) != 1 {
			t.Fatalf("reset erased the ledger: %+v", usage)
		}

		u = e.user("POST", "/api/v1/users/alice/rotate-token", nil)
		if u.SubToken == "" || u.SubToken == alice.SubToken {
			t.Fatalf("rotate kept the token %q", u.SubToken)
		}
		if _, err := e.store.UserByToken(ctx, alice.SubToken); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old token still finds a user: %v", err)
		}
		if got, err := e.store.UserByToken(ctx, u.SubToken); err != nil || got.Name != "alice" {
			t.Fatalf("new token: %v %v", got, err)
		}
		if u.Credentials != alice.Credentials {
			t.Fatal("rotating the subscription token changed the proxy credentials")
		}

		e.admin("DELETE", "/api/v1/users/alice", nil, http.StatusNoContent, nil)
		wantError(t, "deleted user", e.call("GET", "/api/v1/users/alice", adminToken, nil), http.StatusNotFound, "not_found")
		wantError(t, "delete twice", e.call("DELETE", "/api/v1/users/alice", adminToken, nil), http.StatusNotFound, "not_found")
	})
}

func TestPatchSemantics(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		exp := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
		orig := e.createUser("alice", map[string]any{
			"traffic_limit_bytes": 100 << 30, "reset_strategy": "month", "expire_at": exp,
			"device_limit": 3, "groups": []string{"us", "eu"}, "note": "first",
		})
		if orig.ExpireAt == nil || !orig.ExpireAt.Equal(exp) || strings.Join(orig.Groups, ",") != "eu,us" {
			t.Fatalf("created: expire %v groups %v", orig.ExpireAt, orig.Groups)
		}
		var u store.User
		u = e.user("PATCH", "/api/v1/users/alice", map[string]string{"note": "second"})
		if u.Note != "second" || u.TrafficLimit != 100<<30 || u.ResetStrategy != "month" || u.ExpireAt == nil ||
			!u.ExpireAt.Equal(exp) || u.DeviceLimit != 3 || strings.Join(u.Groups, ",") != "eu,us" {
			t.Fatalf("a note-only PATCH changed other fields: %+v", u)
		}
		if !u.PeriodStart.Equal(orig.PeriodStart) || u.SubToken != orig.SubToken {
			t.Fatalf("a note-only PATCH moved the period or the token")
		}
		u = e.user("PATCH", "/api/v1/users/alice", `{"expire_at":"0001-01-01T00:00:00Z","groups":[],"device_limit":0}`)
		if u.ExpireAt != nil || len(u.Groups) != 0 || u.DeviceLimit != 0 || u.Note != "second" || u.TrafficLimit != 100<<30 {
			t.Fatalf("clearing expiry, groups and devices: %+v", u)
		}
		// An expiry in the past expires the user; a new one in the future
		// brings it back.
		u = e.user("PATCH", "/api/v1/users/alice", map[string]any{"expire_at": time.Now().Add(-time.Hour)})
		if u.Status != store.StatusExpired {
			t.Fatalf("past expiry: status %q", u.Status)
		}
		u = e.user("PATCH", "/api/v1/users/alice", map[string]any{"expire_at": exp})
		if u.Status != store.StatusActive {
			t.Fatalf("new expiry: status %q", u.Status)
		}
		// An empty PATCH changes nothing but is not an error.
		again := e.user("PATCH", "/api/v1/users/alice", `{}`)
		if again.Note != u.Note || again.TrafficLimit != u.TrafficLimit || !again.ExpireAt.Equal(*u.ExpireAt) {
			t.Fatalf("empty PATCH changed alice: %+v", again)
		}
	})
}

func TestPlans(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		var p store.Plan
		e.admin("PUT", "/api/v1/plans/gold", map[string]any{
			"traffic_limit_bytes": 100 << 30, "reset_strategy": "month", "duration_seconds": 30 * 86400,
			"device_limit": 2, "groups": []string{"eu"},
		}, http.StatusOK, &p)
		if p.Name != "gold" || p.TrafficLimit != 100<<30 || p.ResetStrategy != "month" {
			t.Fatalf("put: %+v", p)
		}
		u := e.createUser("alice", map[string]any{"plan": "gold", "device_limit": 5})
		if u.Plan != "gold" || u.TrafficLimit != 100<<30 || u.DeviceLimit != 5 || u.ExpireAt == nil ||
			time.Until(*u.ExpireAt) < 29*24*time.Hour || strings.Join(u.Groups, ",") != "eu" {
			t.Fatalf("user from plan with an override: %+v", u)
		}
		// Replacing keeps the creation time; empty reset means no_reset.
		var p2 store.Plan
		e.admin("PUT", "/api/v1/plans/gold", map[string]any{"traffic_limit_bytes": 1}, http.StatusOK, &p2)
		if p2.TrafficLimit != 1 || p2.ResetStrategy != "no_reset" || !p2.CreatedAt.Equal(p.CreatedAt) || len(p2.Groups) != 0 {
			t.Fatalf("replace: %+v", p2)
		}
		var list struct{ Plans []store.Plan }
		e.admin("GET", "/api/v1/plans", nil, http.StatusOK, &list)
		if len(list.Plans) != 1 || list.Plans[0].TrafficLimit != 1 {
			t.Fatalf("list: %+v", list)
		}
		e.admin("DELETE", "/api/v1/plans/gold", nil, http.StatusNoContent, nil)
		got := e.user("GET", "/api/v1/users/alice", nil)
		if got.TrafficLimit != 100<<30 {
			t.Fatalf("deleting or replacing the plan changed its user: %+v", got)
		}
		r := e.admin("GET", "/api/v1/plans", nil, http.StatusOK, nil)
		if !strings.Contains(string(r.body), `"plans": []`) {
			t.Errorf("no plans must be [], not null: %s", r.body)
		}
	})
}

func TestEventsNewestFirstWithoutSecrets(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		var secrets []string
		remember := func(u *store.User) {
			secrets = append(secrets, u.SubToken, u.Credentials.UUID, u.Credentials.Password, u.Credentials.SSKey16, u.Credentials.SSKey32)
		}
		remember(e.createUser("alice", nil))
		remember(e.createUser("bob", map[string]any{"note": "x"}))
		u := e.user("POST", "/api/v1/users/alice/rotate-token", nil)
		remember(&u)
		e.admin("PATCH", "/api/v1/users/bob", map[string]any{"traffic_limit_bytes": 5}, http.StatusOK, nil)
		e.admin("POST", "/api/v1/users/bob/suspend", nil, http.StatusOK, nil)
		tok := e.createNode("n1", map[string]string{"group": "eu"})
		secrets = append(secrets, tok, adminToken)
		e.call("PUT", "/api/v1/nodes/n1", tok, map[string]any{"address": "203.0.113.1", "exporter": "203.0.113.1:9550"})
		e.admin("POST", "/api/v1/nodes/n1/drain", map[string]string{"reason": "maintenance"}, http.StatusOK, nil)
		e.admin("PUT", "/api/v1/plans/gold", map[string]any{}, http.StatusOK, nil)
		e.admin("DELETE", "/api/v1/users/alice", nil, http.StatusNoContent, nil)

		r := e.admin("GET", "/api/v1/events?limit=1000", nil, http.StatusOK, nil)
		for _, s := range secrets {
			if s != "" && strings.Contains(string(r.body), s) {
				t.Errorf("the audit log shows a secret %q", s)
			}
		}
		var evs struct{ Events []store.Event }
		e.admin("GET", "/api/v1/events", nil, http.StatusOK, &evs)
		var actions []string
		for i, ev := range evs.Events {
			if i > 0 && ev.ID >= evs.Events[i-1].ID {
				t.Fatalf("events not newest first: %d after %d", ev.ID, evs.Events[i-1].ID)
			}
			actions = append(actions, ev.Action)
		}
		want := "user.delete,plan.put,node.drain,node.register,node.create,user.suspend,user.update,user.rotate_token,user.create,user.create"
		if strings.Join(actions, ",") != want {
			t.Fatalf("actions %v, want %s", actions, want)
		}
		// Paging backwards from an id, and filters.
		e.admin("GET", fmt.Sprintf("/api/v1/events?before=%d&limit=2", evs.Events[2].ID), nil, http.StatusOK, &evs)
		if len(evs.Events) != 2 || evs.Events[0].Action != "node.register" || evs.Events[1].Action != "node.create" {
			t.Fatalf("page before the drain: %+v", evs.Events)
		}
		e.admin("GET", "/api/v1/events?object_type=node&actor=node:n1", nil, http.StatusOK, &evs)
		if len(evs.Events) != 1 || evs.Events[0].Action != "node.register" {
			t.Fatalf("node events by the node: %+v", evs.Events)
		}
	})
}

func TestUnexpectedErrorsHideInternals(t *testing.T) {
	s := sqliteEnv(t)
	r := s.call("GET", "/-/ready", "", nil)
	if r.code != 200 {
		t.Fatalf("ready: %d", r.code)
	}
	s.admin("GET", "/api/v1/users", nil, http.StatusOK, nil) // the token is now remembered
	if err := s.store.Close(); err != nil {
		t.Fatal(err)
	}
	wantError(t, "ready with the database closed", s.call("GET", "/-/ready", "", nil), http.StatusServiceUnavailable, "unavailable")
	// A token the database vouched for before the outage still passes
	// (the token memory); the handler's own failure is a 500 that hides
	// its cause from the caller and logs it.
	r = s.call("GET", "/api/v1/users", adminToken, nil)
	wantError(t, "list with the database closed", r, http.StatusInternalServerError, "internal")
	if strings.Contains(string(r.body), "sql") {
		t.Errorf("500 shows internals: %s", r.body)
	}
	if !strings.Contains(s.logs.String(), "request failed") {
		t.Errorf("the cause of a 500 is not logged: %q", s.logs.String())
	}
	// A token that cannot be checked is a 503, not a 401 that would send
	// an operator hunting for a token problem.
	r = s.call("GET", "/api/v1/users", "a-token-never-seen-0123456789", nil)
	wantError(t, "an unknown token with the database closed", r, http.StatusServiceUnavailable, "unavailable")
	if strings.Contains(string(r.body), "sql") {
		t.Errorf("503 shows internals: %s", r.body)
	}
}
