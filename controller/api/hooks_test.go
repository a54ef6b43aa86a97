package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/boxfleet/boxfleet/controller/store"
)

const hookSecret = "api-hook-secret-0123456789"

func TestHooksAPI(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		body := map[string]any{"url": "https://hooks.example/in", "secret": hookSecret, "events": []string{"user.suspend", "node.*"}}
		var h store.Hook
		r := e.admin("PUT", "/api/v1/hooks/ops", body, http.StatusOK, &h)
		if h.Name != "ops" || h.URL != "https://hooks.example/in" || !h.SecretSet || len(h.Events) != 2 {
			t.Fatalf("put answered %s", r.body)
		}
		// An update without the secret keeps it.
		e.admin("PUT", "/api/v1/hooks/ops", map[string]any{"url": "https://hooks.example/v2", "events": []string{"user.suspend"}}, http.StatusOK, &h)
		if h.URL != "https://hooks.example/v2" || !h.SecretSet {
			t.Fatalf("update without a secret: %+v", h)
		}
		var list struct{ Hooks []store.Hook }
		e.admin("GET", "/api/v1/hooks", nil, http.StatusOK, &list)
		if len(list.Hooks) != 1 || list.Hooks[0].Name != "ops" {
			t.Fatalf("list %+v", list)
		}
		e.admin("GET", "/api/v1/hooks/ops", nil, http.StatusOK, &h)

		e.createUser("alice", nil)
		e.admin("POST", "/api/v1/users/alice/suspend", map[string]string{"reason": "abuse"}, http.StatusOK, nil)
		var ds struct{ Deliveries []store.Delivery }
		e.admin("GET", "/api/v1/hooks/ops/deliveries", nil, http.StatusOK, &ds)
		if len(ds.Deliveries) != 1 || ds.Deliveries[0].Action != "user.suspend" || ds.Deliveries[0].Status != "pending" {
			t.Fatalf("deliveries %+v", ds)
		}
		wantError(t, "limit=0", e.call("GET", "/api/v1/hooks/ops/deliveries?limit=0", adminToken, nil), http.StatusBadRequest, "invalid")
		wantError(t, "deliveries of nobody", e.call("GET", "/api/v1/hooks/nobody/deliveries", adminToken, nil), http.StatusNotFound, "not_found")

		// The secret is write-only: no answer, event or log line has it.
		for _, path := range []string{"/api/v1/hooks", "/api/v1/hooks/ops", "/api/v1/hooks/ops/deliveries", "/api/v1/events?limit=1000"} {
			if r := e.admin("GET", path, nil, http.StatusOK, nil); strings.Contains(string(r.body), hookSecret) {
				t.Errorf("GET %s shows the hook secret", path)
			}
		}
		var evs struct{ Events []store.Event }
		e.admin("GET", "/api/v1/events?object_type=hook", nil, http.StatusOK, &evs)
		if len(evs.Events) != 2 || evs.Events[0].Actor != "admin:test" || evs.Events[0].Action != "hook.put" {
			t.Errorf("hook events %+v", evs.Events)
		}

		e.admin("DELETE", "/api/v1/hooks/ops", nil, http.StatusNoContent, nil)
		wantError(t, "get deleted", e.call("GET", "/api/v1/hooks/ops", adminToken, nil), http.StatusNotFound, "not_found")
		wantError(t, "delete twice", e.call("DELETE", "/api/v1/hooks/ops", adminToken, nil), http.StatusNotFound, "not_found")
		if strings.Contains(e.logs.String(), hookSecret) {
			t.Error("the hook secret is in the log")
		}
	})
}

func TestHooksAPIValidation(t *testing.T) {
	e := sqliteEnv(t)
	good := func() map[string]any {
		return map[string]any{"url": "https://hooks.example/in", "secret": hookSecret, "events": []string{"user.suspend"}}
	}
	for _, c := range []struct {
		what  string
		key   string
		value any
		field string
	}{
		{"file URL", "url", "file:///etc/passwd", "url"},
		{"ftp URL", "url", "ftp://hooks.example/in", "url"},
		{"relative URL", "url", "/in", "url"},
		{"short secret", "secret", "too-short", "secret"},
		{"no secret on create", "secret", "", "secret"},
		{"no events", "events", []string{}, "events"},
		{"bad event", "events", []string{"user suspend"}, "events"},
	} {
		b := good()
		b[c.key] = c.value
		got := wantError(t, c.what, e.call("PUT", "/api/v1/hooks/h", adminToken, b), http.StatusBadRequest, "invalid")
		if got.Field != c.field {
			t.Errorf("%s: field %q, want %q", c.what, got.Field, c.field)
		}
	}
	b := good()
	b["secrett"] = "typo"
	wantError(t, "unknown field", e.call("PUT", "/api/v1/hooks/h", adminToken, b), http.StatusBadRequest, "bad_request")
	wantError(t, "bad name", e.call("PUT", "/api/v1/hooks/-h", adminToken, good()), http.StatusBadRequest, "invalid")
	wantError(t, "no token", e.call("PUT", "/api/v1/hooks/h", "", good()), http.StatusUnauthorized, "unauthorized")
	nodeToken := e.createNode("n1", nil)
	wantError(t, "node token", e.call("GET", "/api/v1/hooks", nodeToken, nil), http.StatusForbidden, "forbidden")
	var list struct{ Hooks []store.Hook }
	if e.admin("GET", "/api/v1/hooks", nil, http.StatusOK, &list); len(list.Hooks) != 0 {
		t.Fatalf("refused hooks were stored: %+v", list.Hooks)
	}
	if strings.Contains(string(e.call("GET", "/api/v1/hooks", adminToken, nil).body), "null") {
		t.Error("an empty list is null, not []")
	}
}
