package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

func createNode(t *testing.T, s *store.Store, name string, labels map[string]string) string {
	t.Helper()
	_, token, err := s.CreateNode(bg, "admin", name, labels)
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	return token
}

func TestCreateNodeTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		n, tok1, err := s.CreateNode(bg, "admin", "fra-1", map[string]string{"region": "eu", "group": "eu"})
		if err != nil {
			t.Fatal(err)
		}
		if len(tok1) < 22 || n.Labels["region"] != "eu" || n.Drained || n.LastSeen != nil {
			t.Errorf("new node %+v, token %q", n, tok1)
		}
		tok2 := createNode(t, s, "nyc-1", nil)
		if tok1 == tok2 {
			t.Fatal("two nodes got one token")
		}
		assertNotStored(t, s, "node token", tok1, tok2)

		checks := []struct {
			node, token string
			want        bool
		}{
			{"fra-1", tok1, true}, {"nyc-1", tok2, true},
			{"fra-1", tok2, false}, {"fra-1", "", false}, {"fra-1", swapCase(tok1), false},
			{"fra-1", store.HashToken(tok1), false}, {"gone", tok1, false},
		}
		for _, c := range checks {
			got, err := s.NodeNameForToken(bg, c.token)
			if err != nil || (got == c.node) != c.want {
				t.Errorf("NodeNameForToken(%q) = %q, %v; token of %s: %v", c.token, got, err, c.node, c.want)
			}
		}
		for tok, want := range map[string]string{tok1: "fra-1", tok2: "nyc-1", "nope": "", "": ""} {
			if got, err := s.NodeNameForToken(bg, tok); got != want || err != nil {
				t.Errorf("NodeNameForToken(%q) = %q, %v; want %q", tok, got, err, want)
			}
		}

		if _, _, err := s.CreateNode(bg, "admin", "fra-1", nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate node: %v", err)
		}
		if err := s.DeleteNode(bg, "admin", "fra-1"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.NodeNameForToken(bg, tok1); got != "" {
			t.Errorf("deleted node's token still names %q", got)
		}
	})
}

func TestCreateNodeValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for _, name := range []string{"", "a b", "../n", "<n>", "n/1"} {
			if _, _, err := s.CreateNode(bg, "admin", name, nil); !isValidation(err, "name") {
				t.Errorf("node name %q: %v", name, err)
			}
		}
		for _, l := range []string{"node", "__address__", "__meta", "a-b", "1abc", "", "é"} {
			if _, _, err := s.CreateNode(bg, "admin", "n1", map[string]string{l: "x"}); !isValidation(err, "labels") {
				t.Errorf("label name %q: %v", l, err)
			}
			if _, err := s.RegisterNode(bg, "n1", sbconfig.Registration{Labels: map[string]string{l: "x"}}); !isValidation(err, "labels") {
				t.Errorf("registered label name %q: %v", l, err)
			}
		}
		if ns, _ := s.ListNodes(bg); len(ns) != 0 {
			t.Errorf("invalid nodes stored: %d", len(ns))
		}
	})
}

func isValidation(err error, field string) bool {
	var ve *store.ValidationError
	return errors.As(err, &ve) && ve.Field == field
}

func registration(group string) sbconfig.Registration {
	return sbconfig.Registration{
		Address: "fra-1.example.net", Exporter: "10.0.0.1:9877", Version: "1.14.1",
		Labels: map[string]string{"region": "eu-central", "group": group},
		Inbounds: []sbconfig.Inbound{
			{Tag: "vless-in", Type: sbconfig.TypeVLESS, Port: 443, Flow: "xtls-rprx-vision",
				TLS: &sbconfig.TLS{ServerName: "www.example.com", Reality: &sbconfig.Reality{PublicKey: "pub", ShortIDs: []string{"ab"}}}},
			{Tag: "ss-in", Type: sbconfig.TypeShadowsocks, Port: 8388, Method: "2022-blake3-aes-128-gcm", ServerPSK: "cHNr"},
		},
	}
}

func TestRegisterNode(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 9, 1, 0, 0, 0))
		createNode(t, s, "fra-1", map[string]string{"group": "eu"})
		if _, err := s.RegisterNode(bg, "ghost", registration("eu")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("registering an unknown node: %v", err)
		}

		rev := revision(t, s)
		clk.add(time.Minute)
		reg := registration("eu")
		n, err := s.RegisterNode(bg, "fra-1", reg)
		if err != nil {
			t.Fatal(err)
		}
		if n.Address != reg.Address || n.Exporter != reg.Exporter || n.Version != "1.14.1" ||
			!reflect.DeepEqual(n.Labels, reg.Labels) || !reflect.DeepEqual(n.Inbounds, reg.Inbounds) {
			t.Errorf("registered node %+v", n)
		}
		if got, _ := s.GetNode(bg, "fra-1"); !reflect.DeepEqual(got, n) {
			t.Errorf("stored node differs:\n%+v\n%+v", got, n)
		}
		if revision(t, s) != rev {
			t.Errorf("a registration without a group change moved the users revision")
		}
		registered := events(t, s, store.EventFilter{Action: "node.register"})
		if len(registered) != 1 || registered[0].Actor != "node:fra-1" {
			t.Fatalf("register events: %+v", registered)
		}

		// A heartbeat: the same report later moves last_seen only.
		clk.add(time.Minute)
		again := registration("eu")
		n2, err := s.RegisterNode(bg, "fra-1", again)
		if err != nil {
			t.Fatal(err)
		}
		if !n2.LastSeen.Equal(clk.now()) || !n2.UpdatedAt.Equal(n.UpdatedAt) {
			t.Errorf("heartbeat: last seen %v (want %v), updated %v (want %v)", n2.LastSeen, clk.now(), n2.UpdatedAt, n.UpdatedAt)
		}
		if ev := events(t, s, store.EventFilter{Action: "node.register"}); len(ev) != 1 {
			t.Errorf("a heartbeat was audited: %d register events", len(ev))
		}

		// Moving the node to another group changes who it serves.
		if _, err := s.RegisterNode(bg, "fra-1", registration("us")); err != nil {
			t.Fatal(err)
		}
		if revision(t, s) <= rev {
			t.Errorf("group change did not move the users revision")
		}
		if ev := events(t, s, store.EventFilter{Action: "node.register"}); len(ev) != 2 {
			t.Errorf("group change: %d register events, want 2", len(ev))
		}
	})
}

func TestSetDrained(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		createNode(t, s, "fra-1", nil)
		n, changed, err := s.SetDrained(bg, "alert:NodeDown", "fra-1", true, "NodeDown firing")
		if err != nil || !changed || !n.Drained || n.DrainReason != "NodeDown firing" || n.DrainedBy != "alert:NodeDown" {
			t.Fatalf("drain: %+v changed=%v %v", n, changed, err)
		}
		n, changed, err = s.SetDrained(bg, "admin", "fra-1", true, "again")
		if err != nil || changed || n.DrainReason != "NodeDown firing" || n.DrainedBy != "alert:NodeDown" {
			t.Errorf("second drain: %+v changed=%v %v", n, changed, err)
		}
		if ev := events(t, s, store.EventFilter{Action: "node.drain"}); len(ev) != 1 {
			t.Errorf("%d drain events, want 1", len(ev))
		}
		n, changed, err = s.SetDrained(bg, "admin", "fra-1", false, "")
		if err != nil || !changed || n.Drained || n.DrainReason != "" || n.DrainedBy != "" {
			t.Errorf("undrain: %+v changed=%v %v", n, changed, err)
		}
		if got, _ := s.GetNode(bg, "fra-1"); got.Drained {
			t.Errorf("undrain not stored")
		}
		if _, _, err := s.SetDrained(bg, "admin", "ghost", true, ""); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("drain unknown node: %v", err)
		}
	})
}

func TestNodeUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 9, 1, 0, 0, 0))
		createNode(t, s, "fra-1", map[string]string{"group": "eu"})
		createNode(t, s, "nyc-1", map[string]string{"group": "us"})
		createNode(t, s, "any-1", map[string]string{"region": "eu"})
		want := map[string]sbconfig.Credentials{}
		add := func(name string, spec store.UserSpec) {
			want[name] = createUser(t, s, name, spec).Credentials
		}
		add("zed", store.UserSpec{Groups: &[]string{"eu"}})
		add("anyone", store.UserSpec{})
		add("waiting", store.UserSpec{OnHoldSeconds: new(int64(60))})
		add("us-only", store.UserSpec{Groups: &[]string{"us"}})
		add("both", store.UserSpec{Groups: &[]string{"us", "eu"}})
		add("europe", store.UserSpec{Groups: &[]string{"europe"}})
		add("banned", store.UserSpec{})
		add("over", store.UserSpec{TrafficLimit: new(int64(10))})
		add("old", store.UserSpec{ExpireAt: new(clk.now().Add(time.Second))})
		if _, err := s.SuspendUser(bg, "admin", "banned", ""); err != nil {
			t.Fatal(err)
		}
		use(t, s, "fra-1", "over", 10, 10)
		clk.add(time.Minute)
		sweep(t, s)

		for node, names := range map[string][]string{
			"fra-1": {"anyone", "both", "waiting", "zed"},
			"nyc-1": {"anyone", "both", "us-only", "waiting"},
			// A node outside every group serves the users bound to none.
			"any-1": {"anyone", "waiting"},
		} {
			nu, err := s.NodeUsers(bg, node)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, u := range nu.Users {
				got = append(got, u.Name)
				if u.Credentials != want[u.Name] {
					t.Errorf("%s: credentials of %s differ from the user's", node, u.Name)
				}
			}
			if !slices.Equal(got, names) {
				t.Errorf("%s serves %v, want %v", node, got, names)
			}
			if nu.Revision != revision(t, s) {
				t.Errorf("%s: revision %d, want %d", node, nu.Revision, revision(t, s))
			}
		}
		if _, err := s.NodeUsers(bg, "ghost"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown node: %v", err)
		}
	})
}

func TestAdminTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		tok := store.NewToken()
		for range 3 {
			if err := s.EnsureAdminToken(bg, "file", tok); err != nil {
				t.Fatal(err)
			}
		}
		if rows := dumpTable(t, s, "admin_tokens"); len(rows) != 1 {
			t.Errorf("%d admin tokens stored after ensuring one thrice", len(rows))
		}
		other := store.NewToken()
		if err := s.EnsureAdminToken(bg, "ci", other); err != nil {
			t.Fatal(err)
		}
		for token, want := range map[string]string{tok: "file", other: "ci", "": "", swapCase(tok): "", store.HashToken(tok): ""} {
			if got, err := s.AdminTokenName(bg, token); got != want || err != nil {
				t.Errorf("AdminTokenName(%q) = %q, %v; want %q", token, got, err, want)
			}
		}
		assertNotStored(t, s, "admin token", tok, other)
	})
}

// A node's address goes into every client's config and share link: only a
// host name or an IP address is taken, so that a node cannot add URL
// parts (user info, query, fragment) or YAML to other nodes' entries.
func TestRegisterNodeAddress(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, _, err := s.CreateNode(bg, "admin", "n1", nil); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"fra-1.example.net", "203.0.113.7", "2001:db8::1", "localhost", "xn--bcher-kva.example", "edge_1.example.com."} {
			if _, err := s.RegisterNode(bg, "n1", sbconfig.Registration{Address: a}); err != nil {
				t.Errorf("address %q refused: %v", a, err)
			}
		}
		for _, a := range []string{"h.example:443?security=none#", "u@h.example", "h.example/x", "[2001:db8::1]", "a b", "h\n.example", "..", "-h.example", "büch.example", strings.Repeat("a", 64) + ".example"} {
			if _, err := s.RegisterNode(bg, "n1", sbconfig.Registration{Address: a}); !isValidation(err, "address") {
				t.Errorf("address %q: %v", a, err)
			}
		}
		if n, err := s.GetNode(bg, "n1"); err != nil || n.Address != "edge_1.example.com." {
			t.Errorf("address now %q (%v), want the last one accepted", n.Address, err)
		}
	})
}

// TestTouchNodes: the batched heartbeat write moves the given nodes'
// last_seen and nothing else, skips unknown names, never moves last_seen
// back, and splits a fleet larger than one statement's batch.
func TestTouchNodes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		clk := setClock(s, date(2025, 9, 1, 0, 0, 0))
		for _, name := range []string{"a", "b", "c"} {
			createNode(t, s, name, nil)
			if _, err := s.RegisterNode(bg, name, registration("eu")); err != nil {
				t.Fatal(err)
			}
		}
		before := map[string]*store.Node{}
		for _, name := range []string{"a", "b", "c"} {
			n, err := s.GetNode(bg, name)
			if err != nil || n.LastSeen == nil || !n.LastSeen.Equal(clk.now()) {
				t.Fatalf("registered %s: %+v %v", name, n, err)
			}
			before[name] = n
		}
		rev := revision(t, s)
		evs := len(events(t, s, store.EventFilter{}))
		lastSeen := func(name string) time.Time {
			t.Helper()
			n, err := s.GetNode(bg, name)
			if err != nil || n.LastSeen == nil {
				t.Fatalf("%s: %+v %v", name, n, err)
			}
			return *n.LastSeen
		}

		t1 := clk.now().Add(90 * time.Second)
		t2 := clk.now().Add(2 * time.Minute)
		if err := s.TouchNodes(bg, map[string]time.Time{"a": t1, "b": t2, "ghost": t2}); err != nil {
			t.Fatal(err)
		}
		if got := lastSeen("a"); !got.Equal(t1) {
			t.Errorf("a: last_seen %v, want %v", got, t1)
		}
		if got := lastSeen("b"); !got.Equal(t2) {
			t.Errorf("b: last_seen %v, want %v", got, t2)
		}
		if got := lastSeen("c"); !got.Equal(*before["c"].LastSeen) {
			t.Errorf("c, not given, moved: last_seen %v, want %v", got, before["c"].LastSeen)
		}
		if _, err := s.GetNode(bg, "ghost"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("an unknown name was created: %v", err)
		}
		// Nothing but last_seen: not updated_at, the revision or the audit log.
		a, _ := s.GetNode(bg, "a")
		a.LastSeen = before["a"].LastSeen
		if !reflect.DeepEqual(a, before["a"]) {
			t.Errorf("more than last_seen changed:\n%+v\n%+v", a, before["a"])
		}
		if revision(t, s) != rev || len(events(t, s, store.EventFilter{})) != evs {
			t.Errorf("a heartbeat moved the revision or was audited")
		}

		// An older heartbeat (written late, after a newer registration)
		// does not move last_seen back; a newer one beside it still moves.
		t3 := t2.Add(time.Minute)
		if err := s.TouchNodes(bg, map[string]time.Time{"a": t3, "b": t1}); err != nil {
			t.Fatal(err)
		}
		if got := lastSeen("b"); !got.Equal(t2) {
			t.Errorf("b moved back: last_seen %v, want %v", got, t2)
		}
		if got := lastSeen("a"); !got.Equal(t3) {
			t.Errorf("a: last_seen %v, want %v", got, t3)
		}
		if err := s.TouchNodes(bg, nil); err != nil {
			t.Errorf("no nodes: %v", err)
		}

		// More nodes than one statement takes: every one moves.
		many := map[string]time.Time{}
		t4 := t3.Add(time.Hour)
		for i := range 1201 {
			name := fmt.Sprintf("n%04d", i)
			createNode(t, s, name, nil)
			many[name] = t4.Add(time.Duration(i) * time.Second)
		}
		if err := s.TouchNodes(bg, many); err != nil {
			t.Fatal(err)
		}
		ns, err := s.ListNodes(bg)
		if err != nil {
			t.Fatal(err)
		}
		moved := 0
		for _, n := range ns {
			if want, ok := many[n.Name]; ok {
				if n.LastSeen == nil || !n.LastSeen.Equal(want) {
					t.Errorf("%s: last_seen %v, want %v", n.Name, n.LastSeen, want)
				} else {
					moved++
				}
			}
		}
		if moved != len(many) {
			t.Errorf("%d of %d nodes moved", moved, len(many))
		}
	})
}
