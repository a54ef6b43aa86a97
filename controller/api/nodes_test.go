package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

func registration() sbconfig.Registration {
	return sbconfig.Registration{
		Address:  "203.0.113.7",
		Exporter: "203.0.113.7:9550",
		Labels:   map[string]string{"group": "eu", "region": "de"},
		Version:  "1.14.1",
		Inbounds: []sbconfig.Inbound{
			{Tag: "vless-in", Type: sbconfig.TypeVLESS, Port: 443, Flow: "xtls-rprx-vision",
				TLS: &sbconfig.TLS{ServerName: "www.example.com", Reality: &sbconfig.Reality{PublicKey: "pk", ShortIDs: []string{"ab"}}}},
			{Tag: "trojan-in", Type: sbconfig.TypeTrojan, Port: 8443},
			{Tag: "hy2-in", Type: sbconfig.TypeHysteria2, Port: 8444},
			{Tag: "tuic-in", Type: sbconfig.TypeTUIC, Port: 8445},
			{Tag: "ss-in", Type: sbconfig.TypeShadowsocks, Port: 8388, Method: "2022-blake3-aes-128-gcm", ServerPSK: "psk"},
		},
	}
}

func TestNodeTokenShownOnce(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", map[string]string{"group": "eu"})
		for _, path := range []string{"/api/v1/nodes/n1", "/api/v1/nodes", "/api/v1/events", "/api/v1/sd"} {
			r := e.admin("GET", path, nil, http.StatusOK, nil)
			if strings.Contains(string(r.body), tok) || strings.Contains(string(r.body), `"token"`) {
				t.Errorf("%s shows the node token: %s", path, r.body)
			}
		}
		if strings.Contains(e.logs.String(), tok) {
			t.Error("the node token is in the log")
		}
	})
}

func TestNodeRegistration(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", map[string]string{"group": "eu"})
		var n store.Node
		e.admin("GET", "/api/v1/nodes/n1", nil, http.StatusOK, &n)
		if n.LastSeen != nil || len(n.Inbounds) != 0 || n.Labels["group"] != "eu" {
			t.Fatalf("before registration: %+v", n)
		}
		before := time.Now().Add(-time.Second)
		r := e.call("PUT", "/api/v1/nodes/n1", tok, registration())
		if r.code != http.StatusOK {
			t.Fatalf("register: %d %s", r.code, r.body)
		}
		n = store.Node{}
		e.admin("GET", "/api/v1/nodes/n1", nil, http.StatusOK, &n)
		want := registration()
		if n.Address != want.Address || n.Exporter != want.Exporter || n.Version != "1.14.1" ||
			n.Labels["region"] != "de" || n.LastSeen == nil || n.LastSeen.Before(before.Truncate(time.Second)) {
			t.Fatalf("after registration: %+v", n)
		}
		got, _ := json.Marshal(n.Inbounds)
		exp, _ := json.Marshal(want.Inbounds)
		if string(got) != string(exp) {
			t.Fatalf("inbounds stored as\n%s\nwant\n%s", got, exp)
		}
		// A node cannot register under a reserved label or claim "node".
		bad := registration()
		bad.Labels = map[string]string{"node": "other"}
		wantError(t, "label node", e.call("PUT", "/api/v1/nodes/n1", tok, bad), http.StatusBadRequest, "invalid")
		wantError(t, "unknown field", e.call("PUT", "/api/v1/nodes/n1", tok, `{"address":"x","token":"y"}`), http.StatusBadRequest, "bad_request")
		// A heartbeat with the same content is not an audited change.
		e.call("PUT", "/api/v1/nodes/n1", tok, registration())
		var evs struct{ Events []store.Event }
		e.admin("GET", "/api/v1/events?action=node.register", nil, http.StatusOK, &evs)
		if len(evs.Events) != 1 {
			t.Fatalf("%d node.register events for one change and one heartbeat", len(evs.Events))
		}
	})
}

type nodeSet struct {
	etag     string
	revision int64
	names    []string
}

func (e *env) nodeUsers(name, tok, etag, query string) (int, nodeSet) {
	e.t.Helper()
	var hdr []string
	if etag != "" {
		hdr = []string{"If-None-Match", etag}
	}
	r := e.call("GET", "/api/v1/nodes/"+name+"/users"+query, tok, nil, hdr...)
	s := nodeSet{etag: r.header.Get("ETag")}
	if r.code != http.StatusOK {
		if r.code == http.StatusNotModified && len(r.body) != 0 {
			e.t.Errorf("304 with a body: %q", r.body)
		}
		return r.code, s
	}
	var body sbconfig.NodeUsers
	if err := json.Unmarshal(r.body, &body); err != nil {
		e.t.Fatal(err)
	}
	s.revision = body.Revision
	for _, u := range body.Users {
		if u.UUID == "" || u.Password == "" || u.SSKey16 == "" || u.SSKey32 == "" {
			e.t.Errorf("user %s lacks credentials: %+v", u.Name, u)
		}
		s.names = append(s.names, u.Name)
	}
	return r.code, s
}

func TestNodeUserSet(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		eu := e.createNode("eu1", map[string]string{"group": "eu"})
		us := e.createNode("us1", map[string]string{"group": "us"})
		e.createUser("alice", map[string]any{"groups": []string{"eu"}})
		e.createUser("bob", map[string]any{"groups": []string{"us"}})
		e.createUser("carol", nil)
		e.createUser("dave", nil)
		e.createUser("erin", map[string]any{"expire_at": time.Now().Add(-time.Hour)})
		e.createUser("frank", map[string]any{"on_hold_seconds": 86400})
		e.admin("POST", "/api/v1/users/dave/suspend", nil, http.StatusOK, nil)

		code, set := e.nodeUsers("eu1", eu, "", "")
		if code != http.StatusOK || strings.Join(set.names, ",") != "alice,carol,frank" {
			t.Fatalf("eu1: %d %v", code, set.names)
		}
		if set.etag == "" || !strings.HasPrefix(set.etag, `"`) {
			t.Fatalf("no strong ETag: %q", set.etag)
		}
		_, usSet := e.nodeUsers("us1", us, "", "")
		if strings.Join(usSet.names, ",") != "bob,carol,frank" {
			t.Fatalf("us1: %v", usSet.names)
		}
		if code, _ := e.nodeUsers("eu1", eu, set.etag, ""); code != http.StatusNotModified {
			t.Fatalf("matching If-None-Match: %d, want 304", code)
		}
		if code, _ := e.nodeUsers("eu1", eu, `"stale"`, ""); code != http.StatusOK {
			t.Fatalf("stale If-None-Match: %d, want 200", code)
		}

		// A change that only us1 sees leaves eu1's set, and its ETag, alone.
		e.createUser("gina", map[string]any{"groups": []string{"us"}})
		if code, _ := e.nodeUsers("eu1", eu, set.etag, ""); code != http.StatusNotModified {
			t.Fatalf("eu1 after a us-only change: %d, want 304", code)
		}
		if code, _ := e.nodeUsers("us1", us, usSet.etag, ""); code != http.StatusOK {
			t.Fatalf("us1 after a us-only change: %d, want 200", code)
		}

		// Resuming dave puts him back, with a new revision and ETag.
		e.admin("POST", "/api/v1/users/dave/resume", nil, http.StatusOK, nil)
		code, set2 := e.nodeUsers("eu1", eu, set.etag, "")
		if code != http.StatusOK || !slices.Contains(set2.names, "dave") || set2.revision <= set.revision || set2.etag == set.etag {
			t.Fatalf("after resume: %d %+v (before %+v)", code, set2, set)
		}
		// Deleting a user takes it off.
		e.admin("DELETE", "/api/v1/users/alice", nil, http.StatusNoContent, nil)
		if _, set3 := e.nodeUsers("eu1", eu, "", ""); slices.Contains(set3.names, "alice") {
			t.Fatalf("deleted user still served: %v", set3.names)
		}
		// A node that re-registers into another group serves that group.
		reg := registration()
		reg.Labels = map[string]string{"group": "us"}
		if r := e.call("PUT", "/api/v1/nodes/eu1", eu, reg); r.code != http.StatusOK {
			t.Fatalf("re-register: %d %s", r.code, r.body)
		}
		if _, set4 := e.nodeUsers("eu1", eu, "", ""); strings.Join(set4.names, ",") != "bob,carol,dave,frank,gina" {
			t.Fatalf("after moving to group us: %v", set4.names)
		}
		wantError(t, "negative wait", e.call("GET", "/api/v1/nodes/eu1/users?wait=-1", eu, nil), http.StatusBadRequest, "invalid")
	})
}

func TestNodeUsersLongPoll(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", nil)
		_, set := e.nodeUsers("n1", tok, "", "")

		// Nothing changes: 304 once the wait is over, not before.
		start := time.Now()
		code, _ := e.nodeUsers("n1", tok, set.etag, "?wait=1")
		if took := time.Since(start); code != http.StatusNotModified || took < time.Second {
			t.Fatalf("unchanged long-poll: %d after %v, want 304 after at least 1s", code, took)
		}

		// A user added while the node waits ends the wait early.
		go func() {
			time.Sleep(200 * time.Millisecond)
			if _, err := e.store.CreateUser(t.Context(), "test", "late", "", store.UserSpec{}); err != nil {
				t.Error(err)
			}
		}()
		start = time.Now()
		code, got := e.nodeUsers("n1", tok, set.etag, "?wait=5")
		took := time.Since(start)
		if code != http.StatusOK || !slices.Contains(got.names, "late") {
			t.Fatalf("long-poll with a change: %d %v", code, got.names)
		}
		// The change is seen within a poll of the revision (1s), well
		// before the 5s wait runs out.
		if took > 3*time.Second {
			t.Fatalf("long-poll answered after %v, want early", took)
		}
	})
}

func TestNodeUsersLongPollEndsWithClient(t *testing.T) {
	e := sqliteEnv(t)
	tok := e.createNode("n1", nil)
	_, set := e.nodeUsers("n1", tok, "", "")
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.url+"/api/v1/nodes/n1/users?wait=60", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("If-None-Match", set.etag)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	if _, err := client.Do(req); err == nil {
		t.Fatal("a 60s long-poll answered within 300ms with nothing changed")
	}
	// The server must not keep the handler running for the rest of the
	// minute: the request metrics count it once it returns.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r := e.admin("GET", "/metrics", nil, http.StatusOK, nil)
		if strings.Contains(string(r.body), `boxfleet_http_requests_total{code="304",handler="nodes.users"} 1`) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the abandoned long-poll kept running")
}

func TestServiceDiscovery(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", nil)
		tok6 := e.createNode("n6", nil)
		e.createNode("never-registered", map[string]string{"group": "eu"})
		if r := e.call("PUT", "/api/v1/nodes/n1", tok, registration()); r.code != 200 {
			t.Fatalf("register: %d %s", r.code, r.body)
		}
		v6 := sbconfig.Registration{Address: "2001:db8::1", Exporter: "[2001:db8::1]:9550",
			Inbounds: []sbconfig.Inbound{{Tag: "vmess-in", Type: sbconfig.TypeVMess, Port: 10086}}}
		if r := e.call("PUT", "/api/v1/nodes/n6", tok6, v6); r.code != 200 {
			t.Fatalf("register: %d %s", r.code, r.body)
		}
		e.admin("POST", "/api/v1/nodes/n6/drain", nil, http.StatusOK, nil)

		type group struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		var sd []group
		e.admin("GET", "/api/v1/sd", nil, http.StatusOK, &sd)
		// Drained nodes stay discovered: their exporters still report
		// traffic that must be billed.
		want := []group{
			{Targets: []string{"203.0.113.7:9550"}, Labels: map[string]string{"node": "n1", "group": "eu", "region": "de"}},
			{Targets: []string{"[2001:db8::1]:9550"}, Labels: map[string]string{"node": "n6"}},
		}
		if g, w := mustJSON(sd), mustJSON(want); g != w {
			t.Fatalf("sd:\n%s\nwant\n%s", g, w)
		}

		var probes []group
		e.admin("GET", "/api/v1/sd/probes", nil, http.StatusOK, &probes)
		wantProbes := []group{
			{Targets: []string{"203.0.113.7:443"}, Labels: map[string]string{"node": "n1", "group": "eu", "region": "de", "inbound": "vless-in", "protocol": "vless"}},
			{Targets: []string{"203.0.113.7:8443"}, Labels: map[string]string{"node": "n1", "group": "eu", "region": "de", "inbound": "trojan-in", "protocol": "trojan"}},
			{Targets: []string{"203.0.113.7:8388"}, Labels: map[string]string{"node": "n1", "group": "eu", "region": "de", "inbound": "ss-in", "protocol": "shadowsocks"}},
			{Targets: []string{"[2001:db8::1]:10086"}, Labels: map[string]string{"node": "n6", "inbound": "vmess-in", "protocol": "vmess"}},
		}
		if g, w := mustJSON(probes), mustJSON(wantProbes); g != w {
			t.Fatalf("probes:\n%s\nwant\n%s", g, w)
		}
	})
}

func TestServiceDiscoveryEmptyIsList(t *testing.T) {
	e := sqliteEnv(t)
	for _, path := range []string{"/api/v1/sd", "/api/v1/sd/probes"} {
		r := e.admin("GET", path, nil, http.StatusOK, nil)
		if strings.TrimSpace(string(r.body)) != "[]" {
			t.Errorf("%s with no nodes: %s, want [] (Prometheus rejects null)", path, r.body)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestDrain(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createNode("n1", nil)
		var n store.Node
		e.admin("POST", "/api/v1/nodes/n1/drain", map[string]string{"reason": "disk full"}, http.StatusOK, &n)
		if !n.Drained || n.DrainReason != "disk full" || n.DrainedBy != "admin:test" {
			t.Fatalf("drain: %+v", n)
		}
		e.admin("POST", "/api/v1/nodes/n1/drain", map[string]string{"reason": "again"}, http.StatusOK, nil)
		n = store.Node{}
		e.admin("POST", "/api/v1/nodes/n1/undrain", nil, http.StatusOK, &n)
		if n.Drained || n.DrainReason != "" {
			t.Fatalf("undrain: %+v", n)
		}
		var evs struct{ Events []store.Event }
		e.admin("GET", "/api/v1/events?object_type=node", nil, http.StatusOK, &evs)
		var actions []string
		for _, ev := range evs.Events {
			actions = append(actions, ev.Action)
		}
		// Draining a drained node is a no-op and not audited twice.
		if strings.Join(actions, ",") != "node.undrain,node.drain,node.create" {
			t.Fatalf("node events: %v", actions)
		}
	})
}
