package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

type route struct {
	name, method, template string
}

// routes walks the router, so that a route added later is covered by the
// auth matrix and the OpenAPI comparison without editing the tests.
func routes(t *testing.T, e *env) []route {
	t.Helper()
	var out []route
	err := e.api.Router().Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := r.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := r.GetMethods()
		if err != nil {
			return err
		}
		for _, m := range methods {
			out = append(out, route{name: r.GetName(), method: m, template: tpl})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("walked only %d routes: %v", len(out), out)
	}
	return out
}

// access is what the contract says about a route: who may call it.
func access(r route) string {
	switch {
	case r.template == "/-/healthy" || r.template == "/-/ready" || strings.HasPrefix(r.template, "/sub/"):
		return "public"
	case r.method == http.MethodPut && r.template == "/api/v1/nodes/{name}",
		r.method == http.MethodGet && r.template == "/api/v1/nodes/{name}/users":
		return "node"
	}
	return "admin"
}

func (r route) path(name string) string {
	return strings.ReplaceAll(r.template, "{name}", name)
}

func TestAuthMatrix(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tokA := e.createNode("node-a", map[string]string{"group": "eu"})
		tokB := e.createNode("node-b", nil)
		e.createUser("alice", nil)
		u, err := e.store.GetUser(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}

		for _, r := range routes(t, e) {
			what := r.method + " " + r.template
			kind := access(r)
			t.Run(what, func(t *testing.T) {
				if kind == "public" {
					path := strings.ReplaceAll(r.path("node-a"), "{token}", u.SubToken)
					if got := e.call(r.method, path, "", nil); got.code != http.StatusOK {
						t.Errorf("public route answered %d without a token: %s", got.code, got.body)
					}
					return
				}
				for _, tok := range []string{"", "not-a-token", u.SubToken, adminToken + "x"} {
					got := e.call(r.method, r.path("node-a"), tok, nil)
					wantError(t, what+" with token "+tok, got, http.StatusUnauthorized, "unauthorized")
					if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("401 without a Bearer challenge: %q", got.header.Get("WWW-Authenticate"))
					}
				}
				// A credential that is not a bearer token at all.
				req := e.call(r.method, r.path("node-a"), "", nil, "Authorization", "Basic "+adminToken)
				wantError(t, what+" with basic auth", req, http.StatusUnauthorized, "unauthorized")

				switch kind {
				case "admin":
					got := e.call(r.method, r.path("node-a"), tokA, nil)
					wantError(t, what+" with a node token", got, http.StatusForbidden, "forbidden")
					if got := e.call(r.method, r.path("no-such-node"), adminToken, nil); got.code == 401 || got.code == 403 {
						t.Errorf("admin token refused: %d %s", got.code, got.body)
					}
				case "node":
					wantError(t, what+" with the admin token", e.call(r.method, r.path("node-a"), adminToken, nil), http.StatusForbidden, "forbidden")
					wantError(t, what+" with another node's token", e.call(r.method, r.path("node-a"), tokB, nil), http.StatusForbidden, "forbidden")
					wantError(t, what+" for a node that does not exist", e.call(r.method, r.path("node-c"), tokA, nil), http.StatusForbidden, "forbidden")
					if got := e.call(r.method, r.path("node-a"), tokA, nil); got.code == 401 || got.code == 403 {
						t.Errorf("node's own token refused: %d %s", got.code, got.body)
					}
				}
			})
		}
	})
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	e := sqliteEnv(t)
	r := e.call("GET", "/api/v1/users", "", nil, "Authorization", "bearer  "+adminToken+" ")
	if r.code != http.StatusOK {
		t.Fatalf("lower-case scheme with extra spaces: %d %s", r.code, r.body)
	}
}

func TestDeletedNodeTokenStopsWorking(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("gone", nil)
		if r := e.call("GET", "/api/v1/nodes/gone/users", tok, nil); r.code != http.StatusOK {
			t.Fatalf("before delete: %d %s", r.code, r.body)
		}
		e.admin("DELETE", "/api/v1/nodes/gone", nil, http.StatusNoContent, nil)
		wantError(t, "deleted node's token", e.call("GET", "/api/v1/nodes/gone/users", tok, nil), http.StatusUnauthorized, "unauthorized")
		// Re-creating the name issues a new token; the old one stays dead.
		tok2 := e.createNode("gone", nil)
		if tok2 == tok {
			t.Fatal("re-created node got the old token")
		}
		wantError(t, "old token of a re-created node", e.call("PUT", "/api/v1/nodes/gone", tok, `{"address":"x"}`), http.StatusUnauthorized, "unauthorized")
	})
}

func TestSecondAdminTokenIsAudited(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		if err := e.store.EnsureAdminToken(t.Context(), "ops", "second-admin-token-abcdefghijkl"); err != nil {
			t.Fatal(err)
		}
		r := e.call("POST", "/api/v1/users", "second-admin-token-abcdefghijkl", map[string]string{"name": "bob"})
		if r.code != http.StatusCreated {
			t.Fatalf("second admin token: %d %s", r.code, r.body)
		}
		var evs struct {
			Events []struct{ Actor, Action string }
		}
		e.admin("GET", "/api/v1/events?object=bob", nil, http.StatusOK, &evs)
		if len(evs.Events) != 1 || evs.Events[0].Actor != "admin:ops" || evs.Events[0].Action != "user.create" {
			t.Fatalf("events for bob: %+v", evs.Events)
		}
	})
}
