package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/subscribe"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

// fuzzEnv is an API on an SQLite store with an admin token, a user alice,
// a plan, a hook and a node n1 with its token; requests go straight to the
// handler, without a network, so that fuzzing is fast.
type fuzzEnv struct {
	api       *api.API
	store     *store.Store
	nodeToken string
	subToken  string
	renderer  *subscribe.Renderer
}

func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	s := storetest.SQLite(tb)
	ctx := context.Background()
	if err := s.EnsureAdminToken(ctx, "test", adminToken); err != nil {
		tb.Fatal(err)
	}
	u, err := s.CreateUser(ctx, "test", "alice", "", store.UserSpec{})
	if err != nil {
		tb.Fatal(err)
	}
	_, nodeToken, err := s.CreateNode(ctx, "test", "n1", nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.PutPlan(ctx, "test", store.Plan{Name: "p1"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.PutHook(ctx, "test", "h1", store.HookSpec{URL: "https://hooks.example/in", Secret: "fuzz-hook-secret-0123456789", Events: []string{"*"}}); err != nil {
		tb.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	renderer, err := subscribe.New("")
	if err != nil {
		tb.Fatal(err)
	}
	a := api.New(api.Options{Store: s, Log: log, Registry: prometheus.NewRegistry(),
		Sub: &api.SubOptions{Renderer: renderer, MissesPerMinute: 10}})
	return &fuzzEnv{api: a, store: s, nodeToken: nodeToken, subToken: u.SubToken, renderer: renderer}
}

func (e *fuzzEnv) do(method, path, token string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)
	return w
}

// refusedChangesNothing runs one request and checks the rule every decoder
// of outside input keeps: a clear 4xx with an error code, or success;
// never a 5xx; and a refused request leaves the store as it was.
func (e *fuzzEnv) refusedChangesNothing(t *testing.T, method, path, token string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	ctx := context.Background()
	before, err := storetest.Snapshot(ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	w := e.do(method, path, token, body)
	switch {
	case w.Code >= 200 && w.Code < 300:
		return w
	case w.Code >= 400 && w.Code < 500:
		var answer struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || answer.Error.Code == "" {
			t.Errorf("%s %s: %d without a JSON error code: %s", method, path, w.Code, w.Body)
		}
	default:
		t.Fatalf("%s %s answered %d: %s\nbody %q", method, path, w.Code, w.Body, body)
	}
	after, err := storetest.Snapshot(ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("%s %s refused (%d) but changed the store:\nbefore %s\nafter  %s", method, path, w.Code, before, after)
	}
	return w
}

// bodyRoutes are the API routes that decode a JSON body, by an index the
// fuzzer picks.
var bodyRoutes = []struct{ method, path string }{
	{http.MethodPost, "/api/v1/users"},
	{http.MethodPatch, "/api/v1/users/alice"},
	{http.MethodPost, "/api/v1/users/alice/suspend"},
	{http.MethodPost, "/api/v1/users/bulk"},
	{http.MethodPut, "/api/v1/plans/p1"},
	{http.MethodPost, "/api/v1/nodes"},
	{http.MethodPut, "/api/v1/hooks/h1"},
	{http.MethodPost, "/api/v1/session"},
	{http.MethodPut, "/api/v1/session/password"},
	{http.MethodPost, "/api/v1/session/totp/confirm"},
	{http.MethodPost, "/api/v1/admins"},
	{http.MethodPatch, "/api/v1/admins/test"},
	{http.MethodPut, "/api/v1/admins/test/password"},
	{http.MethodPost, "/api/v1/admins/test/totp/confirm"},
	{http.MethodPost, "/api/v1/tokens"},
}

// FuzzAPIBodies sends arbitrary bodies to every API route that decodes
// one, as the owner.
func FuzzAPIBodies(f *testing.F) {
	for i, seed := range []string{
		`{"name":"bob","traffic_limit_bytes":1073741824,"reset_strategy":"month","groups":["eu"]}`,
		`{"note":"x","device_limit":2,"expire_at":"2030-01-01T00:00:00Z"}`,
		`{"reason":"abuse"}`,
		`{"names":["alice"],"action":"suspend"}`,
		`{"traffic_limit_bytes":-1,"reset_strategy":"fortnight"}`,
		`{"name":"n2","labels":{"region":"eu","__address__":"x"}}`,
		`{"url":"https://hooks.example/x","secret":"0123456789abcdef0123","events":["*","node.*"]}`,
		`{"name":"test","password":"wrong"}`,
		`{"current":"a","new":"b"}`,
		`{"code":"000000"}`,
		`{"name":"r1","role":"reseller","password":"correct horse battery staple"}`,
		`{"role":"owner","disabled":true}`,
		`{"password":"short"}`,
		`{"code":"123456"}`,
		`{"name":"ci","role":"operator"}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	for i := range bodyRoutes {
		for _, hostile := range []string{``, `null`, `[]`, `{`, `{"name":"\u0000"}`, `{}{}`, `{"unknown":1}`, `"` + strings.Repeat("a", 300) + `"`} {
			f.Add(uint8(i), []byte(hostile))
		}
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := bodyRoutes[int(route)%len(bodyRoutes)]
		e.refusedChangesNothing(t, r.method, r.path, adminToken, body)
	})
}

// FuzzNodeRegistration sends arbitrary registrations as the node itself:
// everything in it (address, labels, inbound parameters) comes from a
// machine the controller does not control. A registration is accepted or
// refused with a 4xx that changes nothing; an accepted one must still give
// every subscription format a well-formed answer.
func FuzzNodeRegistration(f *testing.F) {
	for _, seed := range []string{
		`{"address":"fra-1.example.net","exporter":"10.0.0.1:9550","labels":{"region":"eu","tls_insecure":"true"},"inbounds":[{"tag":"vless-in","type":"vless","port":443,"flow":"xtls-rprx-vision","tls":{"server_name":"www.example.com","reality":{"public_key":"cHVi","short_ids":["ab"]}}},{"tag":"ss-in","type":"shadowsocks","port":8388,"method":"2022-blake3-aes-128-gcm","server_psk":"cHNr"}],"version":"1.12.0"}`,
		`{"address":"h.example","exporter":"h.example:9550","inbounds":[{"tag":"tr\"\n- name: evil","type":"trojan","port":443,"tls":{"server_name":"a\nb: c","alpn":["h2","]"]},"transport":{"type":"ws","path":"/#?&=","host":"\u2028"}}]}`,
		`{"address":"[::1]","inbounds":[{"tag":"hy","type":"hysteria2","port":0,"tls":{"insecure":true},"obfs":{"type":"salamander","password":"p@ss\u0000"},"up_mbps":-1}]}`,
		`{"address":"x","inbounds":[{"tag":"tu","type":"tuic","port":65535,"congestion_control":"'; --","tls":{"alpn":[]}}]}`,
		`{"address":"x","inbounds":[{"tag":"vm","type":"vmess","port":1,"transport":{"type":"grpc","service_name":"{{.}}"}}]}`,
		`{"address":"x","inbounds":null}`, `{"address":"x","inbounds":[{"type":"unknown"}]}`, `{}`, `null`, `{"address":1}`,
	} {
		f.Add([]byte(seed))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := e.refusedChangesNothing(t, http.MethodPut, "/api/v1/nodes/n1", e.nodeToken, body)
		if w.Code >= 300 {
			return
		}
		for _, format := range []string{"clash", "sing-box", "links"} {
			w := e.do(http.MethodGet, "/sub/"+e.subToken+"?format="+format, "", nil)
			if w.Code != http.StatusOK {
				t.Fatalf("after registration %s: subscription (%s) answered %d: %s", body, format, w.Code, w.Body)
			}
		}
		// The API keeps the node list for a second; render what is stored
		// now, as the subscription will.
		n, err := e.store.GetNode(context.Background(), "n1")
		if err != nil {
			t.Fatal(err)
		}
		u, err := e.store.GetUser(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		p := &subscribe.Profile{User: u.Name, Credentials: u.Credentials, Status: u.Status,
			Nodes: []subscribe.Node{{Name: n.Name, Address: n.Address, Labels: n.Labels, Inbounds: n.Inbounds}}}
		if n.Address == "" {
			p.Nodes = nil
		}
		for format, f := range map[string]subscribe.Format{"clash": subscribe.FormatMihomo, "sing-box": subscribe.FormatSingBox, "links": subscribe.FormatLinks} {
			var b bytes.Buffer
			if err := e.renderer.Render(&b, subscribe.Client{Format: f}, p); err != nil {
				t.Fatalf("after registration %s: %s: %v", body, format, err)
			}
			if err := wellFormed(format, b.Bytes()); err != nil {
				t.Fatalf("after registration %s: %s subscription is malformed: %v\n%s", body, format, err, b.Bytes())
			}
			if format != "links" || n.Address == "" {
				continue
			}
			// Each link dials the address the node gave, and nothing the
			// address carried became another part of the link.
			for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
				if l, err := links.Parse(line); err == nil && l.Host != n.Address && l.Host != "127.0.0.1" {
					t.Fatalf("registered address %q, link %q dials %q", n.Address, line, l.Host)
				}
			}
		}
	})
}

// wellFormed checks a subscription body parses as its format says.
func wellFormed(format string, b []byte) error {
	switch format {
	case "clash":
		var v map[string]any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return err
		}
		if _, ok := v["proxies"].([]any); !ok {
			return fmt.Errorf("no proxies list")
		}
	case "sing-box":
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if _, ok := v["outbounds"].([]any); !ok {
			return fmt.Errorf("no outbounds list")
		}
	case "links":
		for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if _, err := links.Parse(line); err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
		}
	}
	return nil
}
