package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/clientaddr"
	"github.com/boxfleet/boxfleet/internal/totp"
)

// movable is a clock tests push forward instead of sleeping.
type movable struct {
	mu sync.Mutex
	t  time.Time
}

func (m *movable) Now() time.Time { m.mu.Lock(); defer m.mu.Unlock(); return m.t }
func (m *movable) add(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = m.t.Add(d)
}

// sessionEnv is an API that trusts 10.0.0.0/8 as proxies, with one clock
// for the store (sessions) and the login limiter.
func sessionEnv(t *testing.T, s *store.Store) (*env, *movable) {
	t.Helper()
	clk := &movable{t: time.Now()}
	s.Now = clk.Now
	res, err := clientaddr.New([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, s, func(o *api.Options) {
		o.ClientAddr, o.Now = res, clk.Now
		o.Sessions = api.SessionOptions{Idle: 10 * time.Minute, MaxAge: time.Hour}
	})
	return e, clk
}

func addAdmin(t *testing.T, s *store.Store, name, role, pw string) {
	t.Helper()
	if _, err := s.CreateAdmin(t.Context(), "test", name, pw, store.AdminSpec{Role: &role}); err != nil {
		t.Fatal(err)
	}
}

// serve sends a request straight to the handler with a chosen peer
// address, to play clients and proxies.
func (e *env) serve(method, path, from, body string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = from
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)
	return w
}

func loginBody(name, pw, code string) string {
	b, _ := json.Marshal(map[string]string{"name": name, "password": pw, "totp": code})
	return string(b)
}

func sessionCookieOf(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if strings.HasSuffix(c.Name, "boxfleet_session") && c.Value != "" {
			return c
		}
	}
	t.Fatalf("no session cookie in %d %v: %s", w.Code, w.Header(), w.Body)
	return nil
}

func TestLoginCookieAndLogout(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e, clk := sessionEnv(t, e.store)
		addAdmin(t, e.store, "ann", store.RoleOperator, "ann-long-password")

		w := e.serve("POST", "/api/v1/session", "192.0.2.10:5000", loginBody("ann", "ann-long-password", ""))
		if w.Code != http.StatusOK {
			t.Fatalf("login: %d %s", w.Code, w.Body)
		}
		c := sessionCookieOf(t, w)
		if c.Name != "boxfleet_session" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" || c.MaxAge != 3600 {
			t.Errorf("plain-HTTP cookie %+v: want boxfleet_session, HttpOnly, SameSite=Strict, not Secure, Path=/, Max-Age=3600", c)
		}
		cookie := "boxfleet_session=" + c.Value

		w = e.serve("GET", "/api/v1/session", "192.0.2.10:5000", "", "Cookie", cookie)
		var who struct{ Actor, Name, Role, Via string }
		json.Unmarshal(w.Body.Bytes(), &who)
		if w.Code != 200 || who.Actor != "admin:ann" || who.Role != "operator" || who.Via != "session" {
			t.Errorf("whoami: %d %s", w.Code, w.Body)
		}

		// Idle expiry: the store's clock moves past the idle timeout.
		clk.add(9 * time.Minute)
		if w := e.serve("GET", "/api/v1/users", "192.0.2.10:5000", "", "Cookie", cookie); w.Code != 200 {
			t.Fatalf("within the idle timeout: %d", w.Code)
		}
		clk.add(10*time.Minute + time.Second)
		if w := e.serve("GET", "/api/v1/users", "192.0.2.10:5000", "", "Cookie", cookie); w.Code != http.StatusUnauthorized {
			t.Errorf("after the idle timeout: %d, want 401", w.Code)
		}

		// Logout ends the session on the server, not just in the browser.
		c = sessionCookieOf(t, e.serve("POST", "/api/v1/session", "192.0.2.10:5000", loginBody("ann", "ann-long-password", "")))
		cookie = "boxfleet_session=" + c.Value
		w = e.serve("DELETE", "/api/v1/session", "192.0.2.10:5000", "", "Cookie", cookie)
		if w.Code != http.StatusNoContent {
			t.Fatalf("logout: %d %s", w.Code, w.Body)
		}
		if cleared := w.Result().Cookies(); len(cleared) != 1 || cleared[0].MaxAge >= 0 {
			t.Errorf("logout did not clear the cookie: %v", cleared)
		}
		if w := e.serve("GET", "/api/v1/session", "192.0.2.10:5000", "", "Cookie", cookie); w.Code != http.StatusUnauthorized {
			t.Errorf("the logged-out cookie still works: %d", w.Code)
		}
		evs, _ := e.store.Events(t.Context(), store.EventFilter{ObjectType: "admin", ObjectName: "ann"})
		var actions []string
		for _, ev := range evs {
			actions = append(actions, ev.Action+" "+ev.Detail)
		}
		if !slices.Contains(actions, "session.login from 192.0.2.10") || !slices.Contains(actions, "session.logout ") {
			t.Errorf("audit of ann: %q", actions)
		}
	})
}

func TestSecureCookieBehindTrustedProxy(t *testing.T) {
	e, _ := sessionEnv(t, storetest.SQLite(t))
	addAdmin(t, e.store, "ann", store.RoleOwner, "ann-long-password")
	body := loginBody("ann", "ann-long-password", "")
	c := sessionCookieOf(t, e.serve("POST", "/api/v1/session", "10.1.1.1:443", body, "X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.4"))
	if c.Name != "__Host-boxfleet_session" || !c.Secure {
		t.Errorf("behind a trusted TLS proxy: cookie %s secure=%v, want __Host-boxfleet_session, Secure", c.Name, c.Secure)
	}
	// The cookie works under its __Host- name.
	if w := e.serve("GET", "/api/v1/session", "10.1.1.1:443", "", "Cookie", c.Name+"="+c.Value); w.Code != 200 {
		t.Errorf("__Host- cookie refused: %d", w.Code)
	}
	// An untrusted peer claiming TLS is not believed.
	c = sessionCookieOf(t, e.serve("POST", "/api/v1/session", "192.0.2.1:80", body, "X-Forwarded-Proto", "https"))
	if c.Secure {
		t.Error("an untrusted X-Forwarded-Proto made the cookie Secure")
	}
	evs, _ := e.store.Events(t.Context(), store.EventFilter{Action: "session.login"})
	if len(evs) != 2 || evs[1].Detail != "from 198.51.100.4" || evs[0].Detail != "from 192.0.2.1" {
		t.Errorf("login audit addresses: %+v", evs)
	}
}

func TestCrossSiteRequestsWithCookieRefused(t *testing.T) {
	e, _ := sessionEnv(t, storetest.SQLite(t))
	addAdmin(t, e.store, "ann", store.RoleOwner, "ann-long-password")
	c := sessionCookieOf(t, e.serve("POST", "/api/v1/session", "192.0.2.1:1", loginBody("ann", "ann-long-password", "")))
	cookie := "boxfleet_session=" + c.Value
	forged := []string{"Cookie", cookie, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	w := e.serve("POST", "/api/v1/users", "192.0.2.1:1", `{"name":"mallory"}`, forged...)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "cross-origin") {
		t.Errorf("forged cross-site POST: %d %s", w.Code, w.Body)
	}
	// Older browsers send no Sec-Fetch-Site; the Origin alone must do.
	w = e.serve("POST", "/api/v1/users", "192.0.2.1:1", `{"name":"mallory"}`, "Cookie", cookie, "Origin", "https://evil.example")
	if w.Code != http.StatusForbidden {
		t.Errorf("cross-origin POST by Origin only: %d %s", w.Code, w.Body)
	}
	if _, err := e.store.GetUser(t.Context(), "mallory"); err == nil {
		t.Fatal("a forged request created a user")
	}
	// A cross-site read is harmless and allowed; the same page's POST works.
	if w := e.serve("GET", "/api/v1/users", "192.0.2.1:1", "", forged...); w.Code != 200 {
		t.Errorf("cross-site GET: %d", w.Code)
	}
	if w := e.serve("POST", "/api/v1/users", "192.0.2.1:1", `{"name":"ok"}`, "Cookie", cookie, "Sec-Fetch-Site", "same-origin"); w.Code != http.StatusCreated {
		t.Errorf("same-origin POST: %d %s", w.Code, w.Body)
	}
	// Bearer tokens are not a browser's ambient credential: unaffected.
	if w := e.serve("POST", "/api/v1/users", "192.0.2.1:1", `{"name":"scripted"}`, "Authorization", "Bearer "+adminToken,
		"Sec-Fetch-Site", "cross-site"); w.Code != http.StatusCreated {
		t.Errorf("bearer POST with cross-site headers: %d %s", w.Code, w.Body)
	}
	// A login form posted from another site is refused too.
	if w := e.serve("POST", "/api/v1/session", "192.0.2.1:1", loginBody("ann", "ann-long-password", ""), "Sec-Fetch-Site", "cross-site"); w.Code != http.StatusForbidden {
		t.Errorf("cross-site login: %d", w.Code)
	}
}

func TestLoginLockout(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e, clk := sessionEnv(t, e.store)
		addAdmin(t, e.store, "ann", store.RoleOwner, "ann-long-password")
		addAdmin(t, e.store, "bob", store.RoleOwner, "bob-long-password")
		// Through a trusted proxy, so each guess can come from a new
		// address: the account's own count must still lock it.
		from := func(i int) []string { return []string{"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i)} }
		for i := range 5 {
			w := e.serve("POST", "/api/v1/session", "10.0.0.1:1", loginBody("ann", "wrong-password-"+fmt.Sprint(i), ""), from(i)...)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s", i, w.Code, w.Body)
			}
		}
		w := e.serve("POST", "/api/v1/session", "10.0.0.1:1", loginBody("ann", "ann-long-password", ""), from(99)...)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "try again after") {
			t.Fatalf("right password while locked: %d %v %s", w.Code, w.Header(), w.Body)
		}
		// Another account from a fresh address is not locked.
		if w := e.serve("POST", "/api/v1/session", "10.0.0.1:1", loginBody("bob", "bob-long-password", ""), from(100)...); w.Code != 200 {
			t.Errorf("bob: %d %s", w.Code, w.Body)
		}
		// One address trying many names is locked as an address.
		for i := range 5 {
			e.serve("POST", "/api/v1/session", "10.0.0.1:1", loginBody(fmt.Sprintf("guess%d", i), "nope-nope-nope", ""), from(200)...)
		}
		if w := e.serve("POST", "/api/v1/session", "10.0.0.1:1", loginBody("bob", "bob-long-password", ""), from(200)...); w.Code != http.StatusTooManyRequests {
			t.Errorf("a locked address logged in: %d", w.Code)
		}
		clk.add(15*time.Minute + time.Second)
		if w := e.serve("POST", "/api/v1/session", "10.0.0.1:1", loginBody("ann", "ann-long-password", ""), from(1)...); w.Code != 200 {
			t.Errorf("after the lock: %d %s", w.Code, w.Body)
		}
		evs, _ := e.store.Events(t.Context(), store.EventFilter{Action: "session.login_failed", ObjectName: "ann"})
		if len(evs) != 5 || evs[0].Detail != "wrong password from 198.51.100.4" {
			t.Errorf("failed-login audit: %d events, newest %+v", len(evs), evs)
		}
	})
}

// TestLoginTimingHidesAccounts: a name that does not exist costs the same
// argon2id check as a wrong password for one that does.
func TestLoginTimingHidesAccounts(t *testing.T) {
	e, _ := sessionEnv(t, storetest.SQLite(t))
	addAdmin(t, e.store, "ann", store.RoleOwner, "ann-long-password")
	attempt := 0
	login := func(name string) time.Duration {
		attempt++ // a new address each time: the lockout must not answer instead
		start := time.Now()
		w := e.serve("POST", "/api/v1/session", fmt.Sprintf("192.0.2.%d:1", attempt%250+1), loginBody(name, "wrong-password-x", ""))
		d := time.Since(start)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("%s: %d", name, w.Code)
		}
		return d
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	// The two names alternate, so that a burst of load on a shared
	// machine slows both; a round whose medians differ more than twofold
	// is measured again, and only three such rounds in a row fail: a
	// leak (an unknown name answered without hashing) shows in every one.
	var rounds []string
	for range 3 {
		var known, unknown []time.Duration
		for range 5 {
			known = append(known, login("ann"))
			unknown = append(unknown, login("nobody-here"))
		}
		k, u := median(known), median(unknown)
		if u < 5*time.Millisecond {
			t.Fatalf("an unknown name answered in %v: no password check was done", u)
		}
		if ratio := float64(u) / float64(k); ratio >= 0.5 && ratio <= 2 {
			return
		}
		rounds = append(rounds, fmt.Sprintf("unknown %v, known %v", u, k))
	}
	t.Errorf("login for an unknown name and for a known one differ more than twofold in every round (%s): the difference tells names apart", strings.Join(rounds, "; "))
}

func TestLoginWithTOTP(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e, clk := sessionEnv(t, e.store)
		addAdmin(t, e.store, "ann", store.RoleOwner, "ann-long-password")
		var enr struct {
			Secret string `json:"secret"`
			URI    string `json:"otpauth_uri"`
		}
		e.admin("POST", "/api/v1/admins/ann/totp", nil, http.StatusOK, &enr)
		code, _ := totp.Code(enr.Secret, clk.Now())
		var rec struct {
			Codes []string `json:"recovery_codes"`
		}
		e.admin("POST", "/api/v1/admins/ann/totp/confirm", map[string]string{"code": code}, http.StatusOK, &rec)
		if len(rec.Codes) != 10 {
			t.Fatalf("recovery codes: %v", rec.Codes)
		}
		login := func(code string) int {
			return e.serve("POST", "/api/v1/session", "192.0.2.1:1", loginBody("ann", "ann-long-password", code)).Code
		}
		if c := login(""); c != http.StatusUnauthorized {
			t.Errorf("password without a code: %d", c)
		}
		clk.add(totp.Step)
		code, _ = totp.Code(enr.Secret, clk.Now())
		if c := login(code); c != 200 {
			t.Errorf("password and a fresh code: %d", c)
		}
		if c := login(code); c != http.StatusUnauthorized {
			t.Errorf("the same code again: %d", c)
		}
		if c := login(rec.Codes[0]); c != 200 {
			t.Errorf("a recovery code: %d", c)
		}
		var a store.Admin
		e.admin("GET", "/api/v1/admins/ann", nil, http.StatusOK, &a)
		if !a.TOTP || a.RecoveryCodes != 9 {
			t.Errorf("after one recovery code: %+v", a)
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	e := sqliteEnv(t)
	u := e.createUser("alice", nil)
	for path, csp := range map[string]string{
		"/api/v1/users":              "default-src 'none'",
		"/no/such/path":              "default-src 'none'",
		"/sub/" + u.SubToken + "?x=": "style-src 'unsafe-inline'",
	} {
		r := e.call("GET", path, adminToken, nil, "User-Agent", "Mozilla/5.0")
		h := r.header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, h)
		}
		if got := h.Get("Content-Security-Policy"); !strings.Contains(got, csp) || !strings.Contains(got, "frame-ancestors 'none'") || strings.Contains(got, "script-src 'unsafe") {
			t.Errorf("%s: CSP %q, want %q and frame-ancestors 'none'", path, got, csp)
		}
	}
}

func TestViewerSeesNoCredentials(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		c := newCast(t, e)
		e.createUser("alice", nil)
		e.admin("PUT", "/api/v1/hooks/tg", map[string]any{"url": "https://api.telegram.org/bot123:SECRET/sendMessage?chat=1", "secret": "hmac-key-0123456789", "events": []string{"user.create"}}, http.StatusOK, nil)
		for _, path := range []string{"/api/v1/users/alice", "/api/v1/users", "/api/v1/hooks", "/api/v1/hooks/tg", "/api/v1/events"} {
			r := e.call("GET", path, c.tokens[store.RoleViewer], nil)
			if r.code != 200 {
				t.Fatalf("viewer %s: %d", path, r.code)
			}
			u, _ := e.store.GetUser(t.Context(), "alice")
			for _, secret := range []string{u.Credentials.UUID, u.Credentials.Password, u.Credentials.SSKey32, u.SubToken, "SECRET", "bot123"} {
				if strings.Contains(string(r.body), secret) {
					t.Errorf("viewer sees %q in %s", secret, path)
				}
			}
			// The operator sees them: the redaction is per role.
			op := e.call("GET", path, c.tokens[store.RoleOperator], nil)
			if strings.HasPrefix(path, "/api/v1/users") && !strings.Contains(string(op.body), u.SubToken) {
				t.Errorf("operator does not see the token in %s", path)
			}
		}
	})
}

// scores is a health ranker with fixed scores.
type scores map[string]float64

func (s scores) Score(node string) (float64, bool) { v, ok := s[node]; return v, ok }

func TestReseller(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e = newEnvWith(t, e.store, func(o *api.Options) { o.Health = scores{"n1": 0.75} })
		e.admin("PUT", "/api/v1/plans/basic", map[string]any{"traffic_limit_bytes": 10 << 30, "reset_strategy": "month"}, http.StatusOK, nil)
		e.admin("PUT", "/api/v1/plans/secret-plan", map[string]any{"reset_strategy": "month"}, http.StatusOK, nil)
		e.createNode("n1", map[string]string{"group": "eu"})
		e.createUser("alice", nil)
		shop := store.RoleReseller
		if _, err := e.store.CreateAdmin(t.Context(), "test", "shop", "shop-long-password", store.AdminSpec{Role: &shop,
			Limits: &store.Limits{MaxUsers: 2, MaxTraffic: 15 << 30, Plans: []string{"basic"}, Groups: []string{"eu"}}}); err != nil {
			t.Fatal(err)
		}
		_, tok, err := e.store.CreateAPIToken(t.Context(), "test", "shop-bot", store.APITokenSpec{Role: shop, Admin: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		call := func(method, path string, body any) response { return e.call(method, path, tok, body) }

		r := call("POST", "/api/v1/users", map[string]any{"name": "c1", "plan": "basic"})
		var u store.User
		json.Unmarshal(r.body, &u)
		if r.code != http.StatusCreated || u.OwnerAdmin != "shop" || u.Credentials.UUID == "" || strings.Join(u.Groups, ",") != "eu" {
			t.Fatalf("create within limits: %d %s", r.code, r.body)
		}
		wantError(t, "past the traffic total", call("POST", "/api/v1/users", map[string]any{"name": "c2", "plan": "basic"}), http.StatusForbidden, "over_limit")
		wantError(t, "a plan not allowed", call("POST", "/api/v1/users", map[string]any{"name": "c2", "plan": "secret-plan"}), http.StatusForbidden, "over_limit")
		if r := call("POST", "/api/v1/users", map[string]any{"name": "c2", "plan": "basic", "traffic_limit_bytes": 5 << 30}); r.code != http.StatusCreated {
			t.Fatalf("second user within the total: %d %s", r.code, r.body)
		}
		wantError(t, "past the user count", call("POST", "/api/v1/users", map[string]any{"name": "c3", "plan": "basic", "traffic_limit_bytes": 1}), http.StatusForbidden, "over_limit")
		wantError(t, "raising a limit past the total", call("PATCH", "/api/v1/users/c2", map[string]any{"traffic_limit_bytes": 6 << 30}), http.StatusForbidden, "over_limit")

		// Another admin's user is invisible and untouchable.
		for _, m := range [][2]string{{"GET", "/api/v1/users/alice"}, {"PATCH", "/api/v1/users/alice"}, {"DELETE", "/api/v1/users/alice"},
			{"POST", "/api/v1/users/alice/suspend"}, {"POST", "/api/v1/users/alice/rotate-token"}, {"GET", "/api/v1/users/alice/usage"}} {
			wantError(t, m[0]+" "+m[1], call(m[0], m[1], "{}"), http.StatusNotFound, "not_found")
		}
		if a, _ := e.store.GetUser(t.Context(), "alice"); a.Status != store.StatusActive {
			t.Errorf("alice changed: %+v", a)
		}
		r = call("GET", "/api/v1/users", nil)
		var page struct {
			Users []store.User
			Total int
		}
		json.Unmarshal(r.body, &page)
		if page.Total != 2 || strings.Contains(string(r.body), "alice") {
			t.Errorf("reseller's user list: %s", r.body)
		}
		// Plans: only the allowed ones. Nodes: name and state, no set-up.
		if r := call("GET", "/api/v1/plans", nil); strings.Contains(string(r.body), "secret-plan") || !strings.Contains(string(r.body), "basic") {
			t.Errorf("reseller's plans: %s", r.body)
		}
		wantError(t, "a plan not allowed", call("GET", "/api/v1/plans/secret-plan", nil), http.StatusNotFound, "not_found")
		r = call("GET", "/api/v1/nodes", nil)
		if !strings.Contains(string(r.body), `"n1"`) || !strings.Contains(string(r.body), `"health_score": 0.75`) ||
			strings.Contains(string(r.body), "inbounds") || strings.Contains(string(r.body), "exporter") {
			t.Errorf("reseller's node list: %s", r.body)
		}
		// Events: its users' only.
		var evs struct{ Events []store.Event }
		json.Unmarshal(call("GET", "/api/v1/events", nil).body, &evs)
		var seen []string
		for _, ev := range evs.Events {
			seen = append(seen, ev.ObjectType+"/"+ev.ObjectName)
		}
		if slices.Sort(seen); strings.Join(seen, " ") != "user/c1 user/c2" {
			t.Errorf("reseller's events are about %v, want its two users only", seen)
		}
		for _, p := range []string{"/metrics", "/api/v1/sd", "/api/v1/hooks", "/api/v1/admins"} {
			wantError(t, p, call("GET", p, nil), http.StatusForbidden, "forbidden")
		}
	})
}

// TestForwardedAddressOnlyFromTrustedProxy: the subscription miss limiter
// counts the client a trusted proxy names, and the peer otherwise.
func TestForwardedAddressOnlyFromTrustedProxy(t *testing.T) {
	e, _ := sessionEnv(t, storetest.SQLite(t))
	u := e.createUser("alice", nil)
	// Ten misses by one client behind the CDN limit that client's misses
	// (its valid tokens are always served)...
	for range 10 {
		e.serve("GET", "/sub/"+store.NewToken(), "10.0.0.5:1", "", "X-Forwarded-For", "198.51.100.1")
	}
	if w := e.serve("GET", "/sub/"+store.NewToken(), "10.0.0.5:1", "", "X-Forwarded-For", "198.51.100.1"); w.Code != http.StatusTooManyRequests {
		t.Errorf("the guessing client's next miss: %d, want 429", w.Code)
	}
	// ...and not everyone else behind the same CDN.
	if w := e.serve("GET", "/sub/"+store.NewToken(), "10.0.0.5:1", "", "X-Forwarded-For", "198.51.100.2"); w.Code != http.StatusNotFound {
		t.Errorf("a miss by another client behind the proxy: %d, want 404", w.Code)
	}
	// Links on the page use the scheme the client used at the proxy.
	w := e.serve("GET", "/sub/"+u.SubToken, "10.0.0.5:1", "", "X-Forwarded-For", "198.51.100.3", "X-Forwarded-Proto", "https", "User-Agent", "Mozilla/5.0")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "https://example.com/sub/"+u.SubToken) {
		t.Errorf("page behind a TLS proxy: %d, no https link to itself", w.Code)
	}
	// An untrusted peer cannot dodge the limit by naming a new address.
	for i := range 10 {
		e.serve("GET", "/sub/"+store.NewToken(), "192.0.2.9:1", "", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
	}
	if w := e.serve("GET", "/sub/"+store.NewToken(), "192.0.2.9:1", "", "X-Forwarded-For", "203.0.113.77"); w.Code != http.StatusTooManyRequests {
		t.Errorf("an untrusted peer with a forged header: %d, want 429", w.Code)
	}
}

func TestAdminAndTokenEndpoints(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		var created struct {
			store.Admin
			Password string `json:"password"`
		}
		e.admin("POST", "/api/v1/admins", map[string]any{"name": "ops", "role": "operator"}, http.StatusCreated, &created)
		if len(created.Password) < 20 || created.Role != "operator" {
			t.Fatalf("created %+v", created)
		}
		wantError(t, "weak password", e.call("PUT", "/api/v1/admins/ops/password", adminToken, map[string]string{"password": "short"}), http.StatusBadRequest, "invalid")
		wantError(t, "common password", e.call("PUT", "/api/v1/admins/ops/password", adminToken, map[string]string{"password": "qwertyuiop123"}), http.StatusBadRequest, "invalid")
		r := e.call("GET", "/api/v1/admins", adminToken, nil)
		if strings.Contains(string(r.body), created.Password) || strings.Contains(string(r.body), "argon2") {
			t.Errorf("the admin list shows a password or hash: %s", r.body)
		}
		var tk struct {
			Name, Role, Token string
		}
		e.admin("POST", "/api/v1/tokens", map[string]any{"name": "ci", "role": "viewer"}, http.StatusCreated, &tk)
		if tk.Role != "viewer" || len(tk.Token) < 32 {
			t.Fatalf("token %+v", tk)
		}
		if r := e.call("GET", "/api/v1/users", tk.Token, nil); r.code != 200 {
			t.Errorf("viewer token read: %d", r.code)
		}
		wantError(t, "viewer token write", e.call("POST", "/api/v1/users", tk.Token, map[string]string{"name": "x"}), http.StatusForbidden, "forbidden")
		if r := e.call("GET", "/api/v1/tokens", adminToken, nil); strings.Contains(string(r.body), tk.Token) {
			t.Error("the token list shows a secret")
		}
		e.admin("DELETE", "/api/v1/tokens/ci", nil, http.StatusNoContent, nil)
		wantError(t, "deleted token", e.call("GET", "/api/v1/users", tk.Token, nil), http.StatusUnauthorized, "unauthorized")

		// Sessions are listed for the owner and revocable by ID.
		sess, err := e.store.CreateSession(t.Context(), "ops", "192.0.2.1", "ua", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var list struct{ Sessions []store.Session }
		e.admin("GET", "/api/v1/sessions", nil, http.StatusOK, &list)
		if len(list.Sessions) != 1 || list.Sessions[0].Admin != "ops" || strings.Contains(fmt.Sprint(list), sess) {
			t.Fatalf("sessions: %+v", list)
		}
		e.admin("DELETE", fmt.Sprintf("/api/v1/sessions/%d", list.Sessions[0].ID), nil, http.StatusNoContent, nil)
		wantError(t, "revoked session", e.call("GET", "/api/v1/session", "", nil, "Cookie", "boxfleet_session="+sess), http.StatusUnauthorized, "unauthorized")
	})
}

// TestLoginBurstIsLimited fires parallel guesses: each attempt is charged
// before its password check, so no more than five get a check at all.
func TestLoginBurstIsLimited(t *testing.T) {
	e, _ := sessionEnv(t, storetest.SQLite(t))
	addAdmin(t, e.store, "ann", store.RoleOwner, "ann-long-password")
	codes := make([]int, 12)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			codes[i] = e.serve("POST", "/api/v1/session", "192.0.2.50:1", loginBody("ann", fmt.Sprintf("guess-number-%d", i), "")).Code
		})
	}
	wg.Wait()
	checked := 0
	for _, c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("answer %d", c)
		}
	}
	if checked != 5 {
		t.Errorf("%d of 12 parallel guesses were checked, want 5: %v", checked, codes)
	}
}

func TestLoginWithAnAbsurdName(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e, _ = sessionEnv(t, e.store)
		name := strings.Repeat("é", 100) // 200 bytes; cutting at 64 would split a character
		w := e.serve("POST", "/api/v1/session", "192.0.2.60:1", loginBody(name, "whatever-password", ""))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("absurd name: %d %s", w.Code, w.Body)
		}
		evs, err := e.store.Events(t.Context(), store.EventFilter{Action: "session.login_failed"})
		if err != nil || len(evs) != 1 || evs[0].ObjectName != "-" {
			t.Errorf("audit of an absurd name: %+v %v", evs, err)
		}
	})
}

func TestOwnPasswordAndTOTP(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e, clk := sessionEnv(t, e.store)
		addAdmin(t, e.store, "vic", store.RoleViewer, "vic-long-password")
		login := func(pw, code string) *httptest.ResponseRecorder {
			return e.serve("POST", "/api/v1/session", "192.0.2.70:1", loginBody("vic", pw, code))
		}
		cookie := "boxfleet_session=" + sessionCookieOf(t, login("vic-long-password", "")).Value
		change := func(cur, nw string) *httptest.ResponseRecorder {
			b, _ := json.Marshal(map[string]string{"current_password": cur, "new_password": nw})
			return e.serve("PUT", "/api/v1/session/password", "192.0.2.70:1", string(b), "Cookie", cookie)
		}
		if w := change("not-my-password", "vic-newer-password"); w.Code != http.StatusBadRequest {
			t.Errorf("wrong current password: %d %s", w.Code, w.Body)
		}
		// A viewer changes nothing in the fleet, but may change its own password.
		if w := change("vic-long-password", "vic-newer-password"); w.Code != http.StatusNoContent {
			t.Fatalf("own password: %d %s", w.Code, w.Body)
		}
		if w := e.serve("GET", "/api/v1/session", "192.0.2.70:1", "", "Cookie", cookie); w.Code != http.StatusUnauthorized {
			t.Errorf("the session outlived its password change: %d", w.Code)
		}
		if w := login("vic-long-password", ""); w.Code != http.StatusUnauthorized {
			t.Errorf("old password: %d", w.Code)
		}
		cookie = "boxfleet_session=" + sessionCookieOf(t, login("vic-newer-password", "")).Value

		w := e.serve("POST", "/api/v1/session/totp", "192.0.2.70:1", "", "Cookie", cookie)
		var enr struct{ Secret string }
		json.Unmarshal(w.Body.Bytes(), &enr)
		if w.Code != 200 || enr.Secret == "" {
			t.Fatalf("own enrolment: %d %s", w.Code, w.Body)
		}
		code, _ := totp.Code(enr.Secret, clk.Now())
		if w := e.serve("POST", "/api/v1/session/totp/confirm", "192.0.2.70:1", `{"code":"`+code+`"}`, "Cookie", cookie); w.Code != 200 {
			t.Fatalf("own confirmation: %d %s", w.Code, w.Body)
		}
		if w := login("vic-newer-password", ""); w.Code != http.StatusUnauthorized {
			t.Errorf("login without a code after enrolling: %d", w.Code)
		}
		// A bearer token has no account of its own to change.
		wantError(t, "own password with a token", e.call("PUT", "/api/v1/session/password", adminToken, `{"current_password":"x","new_password":"y"}`), http.StatusBadRequest, "bad_request")
	})
}

// TestOwnTOTPDisable: any admin turns its own second factor off with its
// password or a current code, not with the session alone; whoami says
// whether the account has one.
func TestOwnTOTPDisable(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e, clk := sessionEnv(t, e.store)
		addAdmin(t, e.store, "rea", store.RoleReseller, "rea-long-password")
		login := func(code string) string {
			t.Helper()
			return "boxfleet_session=" + sessionCookieOf(t, e.serve("POST", "/api/v1/session", "192.0.2.80:1", loginBody("rea", "rea-long-password", code))).Value
		}
		whoTOTP := func(cookie string) bool {
			t.Helper()
			w := e.serve("GET", "/api/v1/session", "192.0.2.80:1", "", "Cookie", cookie)
			var who struct {
				TOTP *bool `json:"totp_enabled"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &who); err != nil || w.Code != 200 || who.TOTP == nil {
				t.Fatalf("whoami: %d %s", w.Code, w.Body)
			}
			return *who.TOTP
		}
		disable := func(cookie string, body map[string]string) *httptest.ResponseRecorder {
			b, _ := json.Marshal(body)
			return e.serve("DELETE", "/api/v1/session/totp", "192.0.2.80:1", string(b), "Cookie", cookie)
		}
		enrol := func(cookie string) string {
			t.Helper()
			var enr struct{ Secret string }
			w := e.serve("POST", "/api/v1/session/totp", "192.0.2.80:1", "", "Cookie", cookie)
			json.Unmarshal(w.Body.Bytes(), &enr)
			code, _ := totp.Code(enr.Secret, clk.Now())
			if w := e.serve("POST", "/api/v1/session/totp/confirm", "192.0.2.80:1", `{"code":"`+code+`"}`, "Cookie", cookie); w.Code != 200 {
				t.Fatalf("enrolment: %d %s", w.Code, w.Body)
			}
			return enr.Secret
		}

		cookie := login("")
		if whoTOTP(cookie) {
			t.Error("whoami says TOTP is on before enrolment")
		}
		if w := disable(cookie, map[string]string{"current_password": "rea-long-password"}); w.Code != http.StatusConflict {
			t.Errorf("turning off a TOTP that is off: %d %s", w.Code, w.Body)
		}
		secret := enrol(cookie)
		clk.add(totp.Step)
		code, _ := totp.Code(secret, clk.Now())
		cookie = login(code)
		if !whoTOTP(cookie) {
			t.Error("whoami says TOTP is off after enrolment")
		}
		for what, body := range map[string]map[string]string{
			"no proof":       {},
			"wrong password": {"current_password": "not-the-password"},
			"wrong code":     {"code": "000000"},
			"used code":      {"code": code}, // spent by the login
		} {
			if w := disable(cookie, body); w.Code != http.StatusBadRequest {
				t.Errorf("%s: %d %s, want 400", what, w.Code, w.Body)
			}
		}
		if !whoTOTP(cookie) {
			t.Fatal("a refused request turned TOTP off")
		}
		if w := disable(cookie, map[string]string{"current_password": "rea-long-password"}); w.Code != http.StatusNoContent {
			t.Fatalf("with the password: %d %s", w.Code, w.Body)
		}
		// Like enrolment, it ends the account's sessions.
		if w := e.serve("GET", "/api/v1/session", "192.0.2.80:1", "", "Cookie", cookie); w.Code != http.StatusUnauthorized {
			t.Errorf("the session outlived turning TOTP off: %d", w.Code)
		}
		evs, err := e.store.Events(t.Context(), store.EventFilter{Action: "admin.totp_disable"})
		if err != nil || len(evs) != 1 || evs[0].Actor != "admin:rea" || evs[0].ObjectName != "rea" {
			t.Errorf("audit: %+v %v", evs, err)
		}
		cookie = login("") // no code needed any more
		if whoTOTP(cookie) {
			t.Error("whoami says TOTP is on after turning it off")
		}

		// With a current code instead of the password.
		secret = enrol(cookie)
		clk.add(totp.Step)
		code, _ = totp.Code(secret, clk.Now())
		cookie = login(code)
		clk.add(totp.Step)
		code, _ = totp.Code(secret, clk.Now())
		if w := disable(cookie, map[string]string{"code": code}); w.Code != http.StatusNoContent {
			t.Fatalf("with a code: %d %s", w.Code, w.Body)
		}
		if whoTOTP(login("")) { // logging in without a code works too
			t.Error("TOTP still on after turning it off with a code")
		}
		// A bearer token has no account of its own.
		wantError(t, "with a token", e.call("DELETE", "/api/v1/session/totp", adminToken, `{"current_password":"x"}`), http.StatusBadRequest, "bad_request")
	})
}
