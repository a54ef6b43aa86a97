package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
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

var roleOrder = []string{store.RoleOwner, store.RoleOperator, store.RoleViewer, store.RoleReseller}

// contract is what each route promises, written here independently of the
// router: "public", "node", or one letter per role in roleOrder — a(llow),
// d(eny), o(wn: a reseller, limited to its own users). A route that is not
// in this table fails the matrix, so a new route cannot ship without a
// decision for every role.
var contract = map[string]string{
	"healthy": "public", "ready": "public", "sub": "public", "sub.head": "public", "session.login": "public",
	"nodes.register": "node", "nodes.users": "node",
	"install.script": "public", "install.flags": "public", "install.unit": "public", "install.binary": "public",

	"metrics": "aaad", "openapi": "aaaa", "debug.pprof": "addd",
	"users.list": "aaao", "users.get": "aaao", "users.usage": "aaao",
	"users.create": "aado", "users.update": "aado", "users.delete": "aado", "users.suspend": "aado",
	"users.resume": "aado", "users.rotate_token": "aado", "users.reset": "aadd",
	"users.timeline": "aaao", "users.live": "aaao", "users.bulk": "aado",
	"stats.overview": "aaao", "stats.series": "aaao", "stats.top_users": "aaao",
	"plans.list": "aaao", "plans.get": "aaao", "plans.put": "aadd", "plans.delete": "aadd",
	"nodes.list": "aaao", "nodes.get": "aaao", "nodes.create": "aadd", "nodes.delete": "aadd",
	"nodes.drain": "aadd", "nodes.undrain": "aadd",
	"hooks.list": "aaad", "hooks.get": "aaad", "hooks.deliveries": "aaad", "hooks.put": "aadd", "hooks.delete": "aadd",
	"hooks.redeliver": "aadd", "alerts.list": "aaad",
	"events.list": "aaao", "sd.exporters": "aaad", "sd.probes": "aaad", "alerts.webhook": "aadd",
	"session.get": "aaaa", "session.logout": "aaaa", "session.password": "aaaa", "session.totp_begin": "aaaa", "session.totp_confirm": "aaaa", "session.totp_disable": "aaaa", "sessions.list": "addd", "sessions.revoke": "addd",
	"admins.list": "addd", "admins.create": "addd", "admins.get": "addd", "admins.update": "addd", "admins.delete": "addd",
	"admins.password": "addd", "admins.totp_begin": "addd", "admins.totp_confirm": "addd", "admins.totp_disable": "addd",
	"tokens.list": "addd", "tokens.create": "addd", "tokens.delete": "addd",
}

// access is the contract's word for a route: public, node or role.
func access(r route) string {
	switch c := contract[r.name]; c {
	case "public", "node":
		return c
	}
	return "role"
}

func grant(r route, role string) byte {
	for i, x := range roleOrder {
		if x == role {
			return contract[r.name][i]
		}
	}
	panic(role)
}

func (r route) path(name string) string {
	p := strings.ReplaceAll(r.template, "{name}", name)
	return strings.ReplaceAll(p, "{id}", "999999")
}

// cast is one admin of every role, with a named bearer token and a way to
// mint session cookies; the reseller owns "r-user", staff made "alice".
type cast struct {
	tokens map[string]string // role -> bearer token
	accts  map[string]string // role -> account name
}

func newCast(t *testing.T, e *env) *cast {
	t.Helper()
	c := &cast{tokens: map[string]string{}, accts: map[string]string{}}
	for _, role := range roleOrder {
		name := "acct-" + role
		var l *store.Limits
		if role == store.RoleReseller {
			l = &store.Limits{MaxUsers: 100}
		}
		if _, err := e.store.CreateAdmin(t.Context(), "test", name, "a-long-password-"+role, store.AdminSpec{Role: &role, Limits: l}); err != nil {
			t.Fatal(err)
		}
		sp := store.APITokenSpec{Role: role}
		if role == store.RoleReseller {
			sp.Admin = name
		}
		_, tok, err := e.store.CreateAPIToken(t.Context(), "test", "tok-"+role, sp)
		if err != nil {
			t.Fatal(err)
		}
		c.tokens[role], c.accts[role] = tok, name
	}
	return c
}

// cookie starts a fresh session for role's account and returns the Cookie
// header: fresh each time, so that a logout in the matrix ends only its own.
func (c *cast) cookie(t *testing.T, e *env, role string) string {
	t.Helper()
	tok, err := e.store.CreateSession(t.Context(), c.accts[role], "127.0.0.1", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return "boxfleet_session=" + tok
}

// refused reports whether the answer is an authorisation refusal (not a
// 404 or a validation error that the handler gave after letting it in).
func refused(r response) bool {
	if r.code == http.StatusUnauthorized {
		return true
	}
	if r.code != http.StatusForbidden {
		return false
	}
	var b struct{ Error apiErr }
	json.Unmarshal(r.body, &b)
	return b.Error.Code == "forbidden"
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
		c := newCast(t, e)
		expired := time.Now().Add(time.Hour)
		_, expTok, err := e.store.CreateAPIToken(t.Context(), "test", "short-lived", store.APITokenSpec{Role: store.RoleOwner, ExpiresAt: &expired})
		if err != nil {
			t.Fatal(err)
		}
		e.store.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		defer func() { e.store.Now = time.Now }()
		reseller := e.store.OwnedBy(c.accts[store.RoleReseller])

		for _, r := range routes(t, e) {
			what := r.method + " " + r.template
			t.Run(what, func(t *testing.T) {
				kind, ok := contract[r.name]
				if !ok {
					t.Fatalf("route %s (%s) has no entry in the contract: decide what each role may do", r.name, what)
				}
				if kind == "public" {
					path := strings.ReplaceAll(r.path("node-a"), "{token}", u.SubToken)
					got := e.call(r.method, path, "", nil)
					if refused(got) || got.code >= 500 {
						t.Errorf("public route answered %d without a credential: %s", got.code, got.body)
					}
					return
				}
				for _, tok := range []string{"", "not-a-token", u.SubToken, adminToken + "x", expTok} {
					got := e.call(r.method, r.path("node-a"), tok, nil)
					wantError(t, what+" with token "+tok, got, http.StatusUnauthorized, "unauthorized")
					if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("401 without a Bearer challenge: %q", got.header.Get("WWW-Authenticate"))
					}
				}
				wantError(t, what+" with basic auth", e.call(r.method, r.path("node-a"), "", nil, "Authorization", "Basic "+adminToken),
					http.StatusUnauthorized, "unauthorized")
				wantError(t, what+" with an unknown cookie", e.call(r.method, r.path("node-a"), "", nil, "Cookie", "boxfleet_session=forged"),
					http.StatusUnauthorized, "unauthorized")

				if kind == "node" {
					wantError(t, what+" with the admin token", e.call(r.method, r.path("node-a"), adminToken, nil), http.StatusForbidden, "forbidden")
					wantError(t, what+" with an owner's session", e.call(r.method, r.path("node-a"), "", nil, "Cookie", c.cookie(t, e, store.RoleOwner)), http.StatusForbidden, "forbidden")
					for _, role := range roleOrder {
						wantError(t, what+" with a "+role+" token", e.call(r.method, r.path("node-a"), c.tokens[role], nil), http.StatusForbidden, "forbidden")
					}
					wantError(t, what+" with another node's token", e.call(r.method, r.path("node-a"), tokB, nil), http.StatusForbidden, "forbidden")
					wantError(t, what+" for a node that does not exist", e.call(r.method, r.path("node-c"), tokA, nil), http.StatusForbidden, "forbidden")
					if got := e.call(r.method, r.path("node-a"), tokA, nil); refused(got) {
						t.Errorf("node's own token refused: %d %s", got.code, got.body)
					}
					return
				}

				if got := e.call(r.method, r.path("no-such-thing"), adminToken, nil); refused(got) {
					t.Errorf("the admin token file (owner) refused: %d %s", got.code, got.body)
				}
				wantError(t, what+" with a node token", e.call(r.method, r.path("node-a"), tokA, nil), http.StatusForbidden, "forbidden")
				for _, role := range roleOrder {
					for _, via := range []string{"bearer", "cookie"} {
						// An empty change, so that a handler that decodes
						// before it looks the user up still gets to the lookup.
						var body any
						if r.method == http.MethodPatch {
							body = "{}"
						}
						call := func(path string) response {
							if via == "bearer" {
								return e.call(r.method, path, c.tokens[role], body)
							}
							return e.call(r.method, path, "", body, "Cookie", c.cookie(t, e, role))
						}
						who := role + " via " + via
						switch g := grant(r, role); g {
						case 'd':
							wantError(t, what+" as "+who, call(r.path("node-a")), http.StatusForbidden, "forbidden")
						case 'a':
							// A name that does not exist: the call must get past
							// authorisation, and must not delete what later
							// calls use.
							if got := call(r.path("no-such-thing")); refused(got) {
								t.Errorf("%s refused %s: %d %s", what, who, got.code, got.body)
							}
						case 'o':
							if !strings.Contains(r.template, "/users/{name}") {
								if got := call(r.path("no-such-thing")); refused(got) {
									t.Errorf("%s refused %s: %d %s", what, who, got.code, got.body)
								}
								break
							}
							// Its own user is reachable; a staff user does not exist for it.
							if _, err := reseller.GetUser(t.Context(), "r-user"); err != nil {
								if _, err := reseller.CreateUser(t.Context(), "test", "r-user", "", store.UserSpec{}); err != nil {
									t.Fatal(err)
								}
							}
							if got := call(r.path("r-user")); refused(got) || got.code == http.StatusNotFound {
								t.Errorf("%s on its own user refused %s: %d %s", what, who, got.code, got.body)
							}
							wantError(t, what+" on another's user as "+who, call(r.path("alice")), http.StatusNotFound, "not_found")
						default:
							t.Fatalf("contract letter %q", g)
						}
					}
				}
			})
		}
		if _, err := e.store.GetUser(t.Context(), "alice"); err != nil {
			t.Errorf("a reseller's calls reached alice: %v", err)
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

// TestActorsNameAccountOrToken checks that the audit log names who acted:
// the account behind a session, the named token behind a bearer.
func TestActorsNameAccountOrToken(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		c := newCast(t, e)
		if r := e.call("POST", "/api/v1/users", "", map[string]string{"name": "via-cookie"}, "Cookie", c.cookie(t, e, store.RoleOperator)); r.code != http.StatusCreated {
			t.Fatalf("create with a session: %d %s", r.code, r.body)
		}
		if r := e.call("POST", "/api/v1/users", c.tokens[store.RoleOperator], map[string]string{"name": "via-token"}); r.code != http.StatusCreated {
			t.Fatalf("create with a named token: %d %s", r.code, r.body)
		}
		for user, actor := range map[string]string{"via-cookie": "admin:acct-operator", "via-token": "token:tok-operator"} {
			evs, err := e.store.Events(t.Context(), store.EventFilter{ObjectName: user})
			if err != nil || len(evs) != 1 || evs[0].Actor != actor {
				t.Errorf("events of %s: %+v %v, want actor %s", user, evs, err, actor)
			}
		}
	})
}
