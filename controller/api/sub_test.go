package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/health"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe"
)

// clock is the miss limiter's time, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newSubEnv is newEnv with subscription options of the test's choosing.
func newSubEnv(t testing.TB, s *store.Store, o api.SubOptions) (*env, *httptest.Server) {
	if err := s.EnsureAdminToken(context.Background(), "test", adminToken); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	renderer, err := subscribe.New("")
	if err != nil {
		t.Fatal(err)
	}
	o.Renderer = renderer
	reg := prometheus.NewRegistry()
	a := api.New(api.Options{Store: s, Log: log, Registry: reg, Sub: &o})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	tt, _ := t.(*testing.T)
	return &env{t: tt, api: a, store: s, url: srv.URL, reg: reg, logs: &bytes.Buffer{}}, srv
}

// inbounds are what a typical node reports: VLESS REALITY with Vision,
// Trojan over WebSocket with TLS, and multi-user Shadowsocks 2022.
func inbounds(i int) []sbconfig.Inbound {
	return []sbconfig.Inbound{
		{Tag: "vless-reality", Type: sbconfig.TypeVLESS, Port: 443, Flow: "xtls-rprx-vision",
			TLS: &sbconfig.TLS{ServerName: "www.microsoft.com", Reality: &sbconfig.Reality{
				PublicKey: "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0", ShortIDs: []string{fmt.Sprintf("%04x", i), "a1b2c3d4e5f60718"}}}},
		{Tag: "trojan-ws", Type: sbconfig.TypeTrojan, Port: 8443,
			TLS:       &sbconfig.TLS{ServerName: fmt.Sprintf("n%d.cdn.example.net", i), ALPN: []string{"http/1.1"}},
			Transport: &sbconfig.Transport{Type: "ws", Path: "/ws-8c1f", Host: fmt.Sprintf("n%d.cdn.example.net", i)}},
		{Tag: "ss2022", Type: sbconfig.TypeShadowsocks, Port: 8388, Method: "2022-blake3-aes-128-gcm",
			ServerPSK: "3bQ9k1mFqTnW0yXc5vA2Lg=="},
	}
}

// addNode creates and registers a node as its exporter would.
func addNode(t testing.TB, s *store.Store, name, group string, i int) {
	if _, _, err := s.CreateNode(context.Background(), "admin:test", name, map[string]string{"group": group}); err != nil {
		t.Fatal(err)
	}
	reg := sbconfig.Registration{
		Address: fmt.Sprintf("198.51.100.%d", i%250+1), Exporter: fmt.Sprintf("10.0.0.%d:9550", i%250+1),
		Labels: map[string]string{"group": group, "region": "r" + group}, Inbounds: inbounds(i), Version: "1.14.1",
	}
	if _, err := s.RegisterNode(context.Background(), name, reg); err != nil {
		t.Fatal(err)
	}
}

// sub fetches a subscription from addr with the given ?query and headers.
func (e *env) sub(token, query string, hdr ...string) response {
	e.t.Helper()
	path := "/sub/" + token
	if query != "" {
		path += "?" + query
	}
	return e.call(http.MethodGet, path, "", nil, hdr...)
}

// nodesOf lists the node names of a links body in order, one per node.
func nodesOf(t *testing.T, body []byte) []string {
	t.Helper()
	var names []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
		u, err := url.Parse(line)
		if err != nil {
			t.Fatalf("link %q: %v", line, err)
		}
		name, _, _ := strings.Cut(u.Fragment, " ")
		if len(names) == 0 || names[len(names)-1] != name {
			names = append(names, name)
		}
	}
	return names
}

func TestSubGroupsDrainedAndRanking(t *testing.T) {
	// The operator's own health query: the score each node's series says.
	tg := promtest.NewTarget(t)
	prom := promtest.Start(t, 500*time.Millisecond, promtest.StaticTarget{Addr: tg.Addr()})
	for n, s := range map[string]float64{"eu1": 0.2, "eu2": 0.9, "eu3": 0.5, "us1": 0.7, "us2": 0.8} {
		tg.Set(fmt.Sprintf(`score{node=%q}`, n), s)
	}
	prom.WaitFor(t, "count(score)", time.Minute, func(v model.Vector) bool { return len(v) == 1 && v[0].Value == 5 })
	log := logrus.New()
	log.SetOutput(io.Discard)
	ranker := health.New(prom.API, "max by (node) (score)", log, prometheus.NewRegistry())
	if err := ranker.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}

	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e, _ := newSubEnv(t, st, api.SubOptions{Ranker: ranker, MissesPerMinute: 10})
		for i, n := range []string{"eu1", "eu2", "eu3", "eu4", "us1", "us2"} {
			addNode(t, st, n, n[:2], i)
		}
		// eu4 has no score and is listed after the scored ones; us2 is
		// drained; as1 never registered, so it has no address to dial.
		if _, _, err := st.SetDrained(context.Background(), "admin:test", "us2", true, "maintenance"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.CreateNode(context.Background(), "admin:test", "as1", map[string]string{"group": "as"}); err != nil {
			t.Fatal(err)
		}
		eu := e.createUser("euonly", map[string]any{"groups": []string{"eu"}})
		all := e.createUser("everywhere", nil)

		r := e.sub(eu.SubToken, "format=links")
		if r.code != http.StatusOK {
			t.Fatalf("sub: %d %s", r.code, r.body)
		}
		if got, want := nodesOf(t, r.body), []string{"eu2", "eu3", "eu1", "eu4"}; !slices.Equal(got, want) {
			t.Errorf("eu user's nodes %v, want %v", got, want)
		}
		if n := strings.Count(string(r.body), "\n"); n != 12 {
			t.Errorf("%d links for 4 nodes with 3 inbounds each", n)
		}
		r = e.sub(all.SubToken, "format=links")
		if got, want := nodesOf(t, r.body), []string{"eu2", "us1", "eu3", "eu1", "eu4"}; !slices.Equal(got, want) {
			t.Errorf("user without groups sees %v, want %v", got, want)
		}

		// Prometheus gone: the same ranking, no error.
		prom.Stop()
		if err := ranker.Refresh(context.Background()); err == nil {
			t.Fatal("refresh succeeded with Prometheus stopped")
		}
		r = e.sub(all.SubToken, "format=links")
		if got := nodesOf(t, r.body); r.code != http.StatusOK || !slices.Equal(got, []string{"eu2", "us1", "eu3", "eu1", "eu4"}) {
			t.Errorf("with Prometheus down: %d %v", r.code, got)
		}
	})
}

func TestSubUnknownTokensAndMissLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		clk := &clock{now: time.Now()}
		e, srv := newSubEnv(t, st, api.SubOptions{MissesPerMinute: 3, Now: clk.Now})
		addNode(t, st, "n1", "eu", 1)
		u := e.createUser("alice", nil)

		// Known tokens are not misses, however many.
		for range 5 {
			if r := e.sub(u.SubToken, ""); r.code != http.StatusOK {
				t.Fatalf("valid token: %d %s", r.code, r.body)
			}
		}
		// Rotated: the old token is unknown at once, with the same answer
		// as a token that never existed.
		rotated := e.user(http.MethodPost, "/api/v1/users/alice/rotate-token", nil)
		gone := e.sub(u.SubToken, "")
		never := e.sub(store.NewToken(), "")
		junk := e.sub("x", "format=mihomo")
		for _, r := range []response{gone, never, junk} {
			if r.code != http.StatusNotFound || !bytes.Equal(r.body, gone.body) {
				t.Errorf("unknown token: %d %s, want 404 %s", r.code, r.body, gone.body)
			}
		}
		// The limit is reached: the next unknown token waits for the oldest
		// miss to leave the minute, and says how long.
		r := e.sub(store.NewToken(), "")
		wantError(t, "after 3 misses", r, http.StatusTooManyRequests, "")
		if ra := r.header.Get("Retry-After"); ra != "60" {
			t.Errorf("Retry-After %q right after the third miss, want 60", ra)
		}
		// A valid token from the same address is served all the same:
		// behind a NAT or a CDN it is another user's.
		if r := e.sub(rotated.SubToken, ""); r.code != http.StatusOK {
			t.Errorf("valid token from a limited address: %d %s, want 200", r.code, r.body)
		}

		// Another address is not affected.
		other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
		}).DialContext}}
		resp, err := other.Get(srv.URL + "/sub/" + store.NewToken())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("a miss from another address: %d, want 404", resp.StatusCode)
		}

		clk.add(59 * time.Second)
		r = e.sub(store.NewToken(), "")
		wantError(t, "within the minute", r, http.StatusTooManyRequests, "")
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After %q a second before the minute ends, want 1", ra)
		}
		clk.add(2 * time.Second)
		if r := e.sub(store.NewToken(), ""); r.code != http.StatusNotFound {
			t.Errorf("a miss after the minute: %d %s, want 404", r.code, r.body)
		}
	})
}

func TestSubUserInfoAndInactiveUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e, _ := newSubEnv(t, st, api.SubOptions{Title: "Fleet", MissesPerMinute: 10})
		addNode(t, st, "n1", "eu", 1)
		expire := time.Now().Add(72 * time.Hour).Truncate(time.Second)
		e.createUser("active", map[string]any{"traffic_limit_bytes": 10 << 30, "expire_at": expire})
		e.createUser("limited", map[string]any{"traffic_limit_bytes": 5000})
		e.createUser("suspended", nil)
		e.createUser("expired", map[string]any{"expire_at": time.Now().Add(-time.Hour)})
		if _, err := st.CommitNode(ctx, "", "", "n1", 0, []store.Sample{
			{User: "active", Direction: "upload", Value: 1234}, {User: "active", Direction: "download", Value: 5678},
			{User: "limited", Direction: "download", Value: 6000},
		}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Sweep(ctx, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SuspendUser(ctx, "admin:root", "suspended", "admin: abuse"); err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			user, info, reason string
		}{
			{"active", fmt.Sprintf("upload=1234; download=5678; total=%d; expire=%d", int64(10<<30), expire.Unix()), ""},
			{"limited", "upload=0; download=6000; total=5000", "Traffic limit reached"},
			{"suspended", "upload=0; download=0; total=0", "Subscription disabled"},
			{"expired", "upload=0; download=0; total=0; expire=", "Subscription expired"},
		} {
			u, err := st.GetUser(ctx, tc.user)
			if err != nil {
				t.Fatal(err)
			}
			r := e.sub(u.SubToken, "format=links")
			if r.code != http.StatusOK {
				t.Fatalf("%s: %d %s", tc.user, r.code, r.body)
			}
			if got := r.header.Get("Subscription-Userinfo"); !strings.HasPrefix(got, tc.info) {
				t.Errorf("%s: subscription-userinfo %q, want %q", tc.user, got, tc.info)
			}
			title := r.header.Get("Profile-Title")
			if tc.reason == "" {
				if names := nodesOf(t, r.body); title != "Fleet" || !slices.Equal(names, []string{"n1"}) {
					t.Errorf("%s: title %q, nodes %v", tc.user, title, names)
				}
				continue
			}
			// One placeholder entry that says why, in the entry and title.
			line := strings.TrimSpace(string(r.body))
			l, err := url.Parse(line)
			if err != nil || strings.Contains(line, "\n") || l.Fragment != tc.reason || !strings.Contains(title, tc.reason) {
				t.Errorf("%s: entries %q, title %q, want the reason %q", tc.user, line, title, tc.reason)
			}
			if strings.Contains(string(r.body), u.Credentials.UUID) || strings.Contains(string(r.body), "198.51.100.") {
				t.Errorf("%s: an inactive user's subscription lists real servers: %s", tc.user, r.body)
			}
		}
	})
}

func TestSubFormats(t *testing.T) {
	st := storetest.SQLite(t)
	e, _ := newSubEnv(t, st, api.SubOptions{MissesPerMinute: 10})
	addNode(t, st, "n1", "eu", 1)
	u := e.createUser("alice", nil)

	links := e.sub(u.SubToken, "format=links")
	for _, tc := range []struct {
		query, ua, ctype string
		check            func(body []byte) error
	}{
		{"format=singbox", "", "application/json", func(b []byte) error {
			var cfg struct {
				Outbounds []struct {
					Type, Tag string
				}
			}
			if err := json.Unmarshal(b, &cfg); err != nil {
				return err
			}
			n := 0
			for _, o := range cfg.Outbounds {
				if strings.HasPrefix(o.Tag, "n1 ") {
					n++
				}
			}
			if n != 3 {
				return fmt.Errorf("%d node outbounds, want 3", n)
			}
			return nil
		}},
		{"format=clash", "", "text/yaml", func(b []byte) error {
			if !bytes.Contains(b, []byte("proxy-groups:")) || !bytes.Contains(b, []byte(`"n1 vless-reality"`)) {
				return fmt.Errorf("not a mihomo profile with n1")
			}
			return nil
		}},
		{"", "v2rayNG/1.9.0", "text/plain", func(b []byte) error {
			raw, err := base64.StdEncoding.DecodeString(string(b))
			if err != nil {
				return err
			}
			if !bytes.Equal(bytes.TrimSpace(raw), bytes.TrimSpace(links.body)) {
				return fmt.Errorf("base64 body is not the links")
			}
			return nil
		}},
		// ?format= wins over the User-Agent.
		{"format=mihomo", "v2rayNG/1.9.0", "text/yaml", nil},
		{"", "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", "text/html", nil},
	} {
		r := e.sub(u.SubToken, tc.query, "User-Agent", tc.ua)
		if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), tc.ctype) {
			t.Errorf("%s %q: %d %q, want %s", tc.query, tc.ua, r.code, r.header.Get("Content-Type"), tc.ctype)
			continue
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %q: Cache-Control %q", tc.query, tc.ua, r.header.Get("Cache-Control"))
		}
		if tc.check != nil {
			if err := tc.check(r.body); err != nil {
				t.Errorf("%s %q: %v", tc.query, tc.ua, err)
			}
		}
	}
}

// Clients pick IPv6 addresses from their /64 at will, so the miss limit
// counts the /64.
func TestSubMissLimitIPv6(t *testing.T) {
	e, _ := newSubEnv(t, storetest.SQLite(t), api.SubOptions{MissesPerMinute: 3})
	u := e.createUser("alice", nil)
	get := func(from, token string) int {
		req := httptest.NewRequest(http.MethodGet, "/sub/"+token, nil)
		req.RemoteAddr = from
		w := httptest.NewRecorder()
		e.api.ServeHTTP(w, req)
		return w.Code
	}
	for i := range 3 {
		if code := get(fmt.Sprintf("[2001:db8:0:7::%x]:40000", i+1), store.NewToken()); code != http.StatusNotFound {
			t.Fatalf("miss %d: %d", i, code)
		}
	}
	if code := get("[2001:db8:0:7:ffff:1:2:3]:40000", store.NewToken()); code != http.StatusTooManyRequests {
		t.Errorf("a miss from a fresh address in the same /64: %d, want 429", code)
	}
	if code := get("[2001:db8:0:7:ffff:1:2:3]:40000", u.SubToken); code != http.StatusOK {
		t.Errorf("a valid token from the limited /64: %d, want 200", code)
	}
	if code := get("[2001:db8:0:8::1]:40000", store.NewToken()); code != http.StatusNotFound {
		t.Errorf("a miss from another /64: %d, want 404", code)
	}
	if code := get("192.0.2.7:40000", u.SubToken); code != http.StatusOK {
		t.Errorf("IPv4 client: %d, want 200", code)
	}
}
