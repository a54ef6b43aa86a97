package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
	"github.com/boxfleet/boxfleet/internal/totp"
)

// browser is a minimal client that keeps the session cookie as a browser
// would, and can add the headers a browser adds.
type browser struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func (b *browser) do(method, path, body string, hdr ...string) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "boxfleet_session") {
			if c.MaxAge < 0 {
				b.cookie = nil
			} else {
				b.cookie = c
			}
		}
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (b *browser) login(name, pw, code string) answer {
	body, _ := json.Marshal(map[string]string{"name": name, "password": pw, "totp": code})
	return b.do("POST", "/api/v1/session", string(body), "Content-Type", "application/json")
}

func readFileMode(t *testing.T, path string) (string, os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return readToken(t, path), st.Mode().Perm()
}

// TestFirstStartOwnerAndSessions runs the browser's path against a real
// controller: the first start's owner password, login and its cookie,
// a forged cross-site POST, logout, lockout with its audit trail, and the
// second start leaving the password alone.
func TestFirstStartOwnerAndSessions(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		dir := t.TempDir()
		c := newController(t, dir, db.DSN)
		c.start()
		pwFile := filepath.Join(dir, "admin.password")
		pw, mode := readFileMode(t, pwFile)
		if mode != 0o600 || len(pw) < 20 {
			t.Fatalf("admin.password: mode %v, %d characters; want 0600 and a long random password", mode, len(pw))
		}
		if strings.Contains(c.log.String(), pw) || !strings.Contains(c.log.String(), pwFile) {
			t.Errorf("the log must name the password file and never the password:\n%s", c.log)
		}

		b := &browser{t: t, base: c.url()}
		if r := b.login("admin", pw+"x", ""); r.code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d %s", r.code, r.body)
		}
		r := b.login("admin", pw, "")
		if r.code != http.StatusOK || b.cookie == nil {
			t.Fatalf("login with the first-start password: %d %s", r.code, r.body)
		}
		setCookie := r.header.Get("Set-Cookie")
		for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
			if !strings.Contains(setCookie, attr) {
				t.Errorf("Set-Cookie %q lacks %s", setCookie, attr)
			}
		}
		if strings.Contains(setCookie, "Secure") {
			t.Errorf("Set-Cookie %q is Secure over plain HTTP from an untrusted peer", setCookie)
		}
		if r := b.do("GET", "/api/v1/session", ""); r.code != 200 || !strings.Contains(r.body, `"role": "owner"`) {
			t.Errorf("whoami: %d %s", r.code, r.body)
		}
		if r := b.do("POST", "/api/v1/users", `{"name":"forged"}`, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); r.code != http.StatusForbidden {
			t.Errorf("forged cross-site POST: %d %s", r.code, r.body)
		}
		if r := b.do("POST", "/api/v1/users", `{"name":"real"}`, "Sec-Fetch-Site", "same-origin"); r.code != http.StatusCreated {
			t.Errorf("same-origin POST: %d %s", r.code, r.body)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options"} {
			if r.header.Get(h) == "" {
				t.Errorf("answer without %s", h)
			}
		}
		old := *b.cookie
		if r := b.do("DELETE", "/api/v1/session", ""); r.code != http.StatusNoContent || b.cookie != nil {
			t.Errorf("logout: %d, cookie kept: %v", r.code, b.cookie)
		}
		b.cookie = &old
		if r := b.do("GET", "/api/v1/session", ""); r.code != http.StatusUnauthorized {
			t.Errorf("the cookie from before logout: %d", r.code)
		}
		b.cookie = nil

		// Four more failures (one above) lock the account, even for the
		// right password; every failure is audited with the address.
		// No proxy is trusted here: a forwarded address must not reach the
		// limiter or the audit log.
		for i := range 4 {
			b.do("POST", "/api/v1/session", `{"name":"admin","password":"not-the-password"}`,
				"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		}
		r = b.login("admin", pw, "")
		if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "try again after") {
			t.Errorf("locked: %d %v %s", r.code, r.header, r.body)
		}
		out := c.ok("events", "--object", "admin", "--limit", "20")
		if n := strings.Count(out, "session.login_failed"); n != 5 || strings.Count(out, "wrong password from 127.0.0.1") != 5 || strings.Contains(out, "203.0.113.") {
			t.Errorf("%d failed logins in the audit log, want 5, each from the real peer 127.0.0.1:\n%s", n, out)
		}
		c.stop()

		c.start()
		if again, _ := readFileMode(t, pwFile); again != pw {
			t.Error("a second start replaced the owner's password file")
		}
	})
}

// TestAccountsCLI drives admin and token commands, including TOTP
// enrolment read from the command's own prompt, and the login that needs
// the code afterwards.
func TestAccountsCLI(t *testing.T) {
	c := newController(t, t.TempDir(), "")
	c.start()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("ops-long-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("admin", "add", "ops", "--role", "operator", "--password-file", pwFile)
	out := c.ok("admin", "add", "shop", "--role", "reseller", "--max-users", "1", "--max-traffic", "10GiB", "--group", "eu")
	if f := row(t, out, "password"); len(f[1]) < 20 {
		t.Errorf("generated password %q", f[1])
	}
	list := c.ok("admin", "list")
	mustContain(t, "admin list", fieldsText(row(t, list, "shop")), "reseller", "enabled", "users≤1", "traffic≤10.0 GiB", "groups=eu")
	mustContain(t, "admin list", fieldsText(row(t, list, "admin")), "owner")
	c.fails("at least 12 characters", "admin", "add", "weak", "--role", "viewer", "--password-file", writeTemp(t, "short"))

	b := &browser{t: t, base: c.url()}
	if r := b.login("ops", "ops-long-password", ""); r.code != 200 {
		t.Fatalf("ops login: %d %s", r.code, r.body)
	}
	// A new password, read from stdin, ends the sessions.
	cmd := exec.Command(c.bin, "admin", "passwd", "ops")
	cmd.Env = cleanEnv("BOXFLEET_URL="+c.url(), "BOXFLEET_TOKEN_FILE="+c.tokenFile())
	cmd.Stdin = strings.NewReader("ops-newer-password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("admin passwd: %v %s", err, out)
	}
	if r := b.do("GET", "/api/v1/session", ""); r.code != http.StatusUnauthorized {
		t.Errorf("session after a password change: %d", r.code)
	}
	if r := b.login("ops", "ops-newer-password", ""); r.code != 200 {
		t.Fatalf("login with the new password: %d", r.code)
	}
	if r := b.do("GET", "/api/v1/admins", ""); r.code != http.StatusForbidden {
		t.Errorf("an operator listed admins: %d", r.code)
	}

	// TOTP: the command prints the secret and waits for a code.
	cmd = exec.Command(c.bin, "admin", "totp", "enable", "ops")
	cmd.Env = cleanEnv("BOXFLEET_URL="+c.url(), "BOXFLEET_TOKEN_FILE="+c.tokenFile())
	stdin, _ := cmd.StdinPipe()
	stderr, _ := cmd.StderrPipe()
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	secretRE := regexp.MustCompile(`secret:\s+([A-Z2-7]+)`)
	var secret string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := secretRE.FindStringSubmatch(sc.Text()); m != nil {
			secret = m[1]
			break
		}
	}
	if secret == "" {
		t.Fatal("totp enable printed no secret")
	}
	go io.Copy(io.Discard, stderr)
	code, _ := totp.Code(secret, time.Now())
	fmt.Fprintln(stdin, code)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("totp enable: %v\n%s", err, stdout.String())
	}
	recovery := regexp.MustCompile(`(?m)^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$`).FindAllString(stdout.String(), -1)
	if len(recovery) != 10 {
		t.Fatalf("recovery codes printed: %q", stdout.String())
	}
	b.cookie = nil
	if r := b.login("ops", "ops-newer-password", ""); r.code != http.StatusUnauthorized {
		t.Errorf("login without the code once TOTP is on: %d", r.code)
	}
	// The enrolment code is spent; the next step's code is within the
	// one step of skew allowed, and not yet used.
	code, _ = totp.Code(secret, time.Now().Add(totp.Step))
	if r := b.login("ops", "ops-newer-password", code); r.code != 200 {
		t.Errorf("login with a fresh code: %d %s", r.code, r.body)
	}
	if r := b.login("ops", "ops-newer-password", recovery[0]); r.code != 200 {
		t.Errorf("login with a recovery code: %d %s", r.code, r.body)
	}

	// Named tokens: shown once, with a role, revocable.
	out = c.ok("token", "add", "ci", "--role", "viewer", "--expire", "90d")
	secretTok := row(t, out, "secret")[1]
	if code, _ := httpGet(t, c.url()+"/api/v1/users", secretTok); code != 200 {
		t.Errorf("viewer token read: %d", code)
	}
	if code, _ := httpDo(t, "POST", c.url()+"/api/v1/users", secretTok, `{"name":"x"}`); code != http.StatusForbidden {
		t.Errorf("viewer token write: %d", code)
	}
	list = c.ok("token", "list")
	if strings.Contains(list, secretTok) {
		t.Error("token list shows the secret")
	}
	mustContain(t, "token list", fieldsText(row(t, list, "ci")), "viewer")
	c.ok("token", "delete", "ci")
	if code, _ := httpGet(t, c.url()+"/api/v1/users", secretTok); code != http.StatusUnauthorized {
		t.Errorf("deleted token: %d", code)
	}

	// The owner sees ops's sessions (the two logins since TOTP was turned
	// on, which ended the ones before) and ends them.
	sessions := c.ok("session", "list")
	row(t, sessions, "ID") // the header
	var opsIDs []string
	for l := range strings.SplitSeq(sessions, "\n") {
		if fs := strings.Fields(l); len(fs) > 2 && fs[1] == "ops" {
			opsIDs = append(opsIDs, fs[0])
		}
	}
	if len(opsIDs) != 2 {
		t.Fatalf("sessions of ops: %v, want the 2 still open\n%s", opsIDs, sessions)
	}
	for _, id := range opsIDs {
		c.ok("session", "revoke", id)
	}
	if r := b.do("GET", "/api/v1/session", ""); r.code != http.StatusUnauthorized {
		t.Errorf("a revoked session still works: %d", r.code)
	}

	c.ok("admin", "disable", "ops")
	if r := b.login("ops", "ops-newer-password", ""); r.code != http.StatusUnauthorized {
		t.Errorf("disabled account logged in: %d", r.code)
	}
	c.ok("admin", "delete", "shop")
	if strings.Contains(c.ok("admin", "list"), "shop") {
		t.Error("deleted admin still listed")
	}
	c.fails("last enabled owner", "admin", "disable", "admin")
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAdminListenerAndTrustedProxy: with --web.admin-listen-address the
// public listener serves subscriptions and health only; with
// --web.trusted-proxies the audit log records the forwarded client.
func TestAdminListenerAndTrustedProxy(t *testing.T) {
	c := newController(t, t.TempDir(), "")
	adminAddr := testsupport.FreeAddr(t)
	c.extra = []string{"--web.admin-listen-address", adminAddr, "--web.trusted-proxies", "127.0.0.1/32"}
	c.start()
	tok := readToken(t, c.tokenFile())
	admin := "http://" + adminAddr
	for _, path := range []string{"/api/v1/users", "/metrics", "/api/v1/session", "/ui/"} {
		if code, _ := httpGet(t, c.url()+path, tok); code != http.StatusNotFound {
			t.Errorf("public listener %s: %d, want 404", path, code)
		}
	}
	if code, _ := httpGet(t, c.url()+"/-/ready", ""); code != 200 {
		t.Errorf("public listener readiness: %d", code)
	}
	code, body := httpDo(t, "POST", admin+"/api/v1/users", tok, `{"name":"alice"}`)
	if code != http.StatusCreated {
		t.Fatalf("admin listener: %d %s", code, body)
	}
	var u struct {
		Token string `json:"subscription_token"`
	}
	json.Unmarshal(body, &u)
	if code, _ := httpGet(t, c.url()+"/sub/"+u.Token+"?format=links", ""); code != 200 {
		t.Errorf("subscription on the public listener: %d", code)
	}
	if code, _ := httpGet(t, admin+"/metrics", tok); code != 200 {
		t.Errorf("/metrics on the admin listener: %d", code)
	}

	pw := readToken(t, filepath.Join(c.dataDir, "admin.password"))
	b := &browser{t: t, base: admin}
	loginBody, _ := json.Marshal(map[string]string{"name": "admin", "password": pw})
	r := b.do("POST", "/api/v1/session", string(loginBody), "X-Forwarded-For", "198.51.100.23", "X-Forwarded-Proto", "https")
	if r.code != 200 || !strings.Contains(r.header.Get("Set-Cookie"), "__Host-boxfleet_session=") || !strings.Contains(r.header.Get("Set-Cookie"), "Secure") {
		t.Errorf("login through a trusted TLS proxy: %d, Set-Cookie %q", r.code, r.header.Get("Set-Cookie"))
	}
	c.URLOverride(admin)
	out := c.ok("events", "--object", "admin")
	if !strings.Contains(out, "from 198.51.100.23") {
		t.Errorf("the login's audit names not the forwarded client:\n%s", out)
	}
}

// TestSessionIdleTimeout waits out a short idle timeout on a real
// controller: use keeps the session, a pause longer than the timeout ends
// it.
func TestSessionIdleTimeout(t *testing.T) {
	c := newController(t, t.TempDir(), "")
	c.extra = []string{"--web.session-idle-timeout", "3s", "--web.session-max-age", "1h"}
	c.start()
	pw := readToken(t, filepath.Join(c.dataDir, "admin.password"))
	b := &browser{t: t, base: c.url()}
	if r := b.login("admin", pw, ""); r.code != 200 || !strings.Contains(r.body, `"idle_timeout_seconds": 3`) {
		t.Fatalf("login: %d %s", r.code, r.body)
	}
	for range 3 { // 4.5 s in all, each step within the timeout
		time.Sleep(1500 * time.Millisecond)
		if r := b.do("GET", "/api/v1/session", ""); r.code != 200 {
			t.Fatalf("session in use ended: %d", r.code)
		}
	}
	time.Sleep(4500 * time.Millisecond)
	if r := b.do("GET", "/api/v1/session", ""); r.code != http.StatusUnauthorized {
		t.Errorf("after 4.5 s idle with a 3 s timeout: %d, want 401", r.code)
	}
}
