package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

func TestServeCreatesAdminTokenOnce(t *testing.T) {
	dir := t.TempDir()
	c := newController(t, dir, "")
	c.start()
	st, err := os.Stat(c.tokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file mode %v, want 0600", st.Mode().Perm())
	}
	tok := readToken(t, c.tokenFile())
	if len(tok) < 32 {
		t.Fatalf("admin token %q is short", tok)
	}
	if code, body := httpGet(t, c.url()+"/api/v1/users", tok); code != http.StatusOK {
		t.Fatalf("token from the file refused: %d %s", code, body)
	}
	if strings.Contains(c.log.String(), tok) {
		t.Error("the admin token is in the log")
	}
	c.stop()

	c.start()
	if again := readToken(t, c.tokenFile()); again != tok {
		t.Fatal("a second start replaced the admin token")
	}
	if st, _ := os.Stat(c.tokenFile()); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after restart %v", st.Mode().Perm())
	}
	if code, _ := httpGet(t, c.url()+"/api/v1/users", tok); code != http.StatusOK {
		t.Fatalf("token refused after restart: %d", code)
	}
	// Health checks answer without a token; everything else wants one.
	for path, want := range map[string]int{"/-/healthy": 200, "/-/ready": 200, "/metrics": 401, "/api/v1/sd": 401} {
		if code, _ := httpGet(t, c.url()+path, ""); code != want {
			t.Errorf("%s without a token: %d, want %d", path, code, want)
		}
	}
	code, body := httpGet(t, c.url()+"/metrics", tok)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	mustContain(t, "/metrics", string(body), "boxfleet_users{status=\"active\"} 0", "boxfleet_http_requests_total{", "boxfleet_leader")
}

func TestServeRefusesShortAdminToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newController(t, dir, "")
	r := cmd.runEnv(nil, "serve", "--data.dir", dir, "--web.listen-address", testsupport.FreeAddr(t), "--prometheus.url", "http://127.0.0.1:1")
	if r.code == 0 || !strings.Contains(r.stderr, "shorter than 16") {
		t.Fatalf("serve with a 5-character token: exit %d, %s", r.code, r.stderr)
	}
}

func TestCLI(t *testing.T) {
	c := newController(t, t.TempDir(), "")
	c.start()

	// Plans.
	out := c.ok("plan", "put", "gold", "--limit", "50GiB", "--reset", "month", "--duration", "30d", "--group", "eu", "--devices", "2")
	if got := fieldsText(row(t, out, "gold")); got != "gold 50.0 GiB month 30d - 2 eu" {
		t.Fatalf("plan put table row %q", got)
	}
	c.ok("plan", "put", "trial", "--limit", "1GiB", "--on-hold", "7d")
	mustContain(t, "plan list", c.ok("plan", "list"), "NAME", "gold", "trial")
	var plans struct{ Plans []store.Plan }
	c.json(&plans, "plan", "list")
	if len(plans.Plans) != 2 || plans.Plans[0].Name != "gold" || plans.Plans[0].DurationSeconds != 30*86400 {
		t.Fatalf("plan list -o json: %+v", plans)
	}
	var plan store.Plan
	c.json(&plan, "plan", "get", "trial")
	if plan.OnHoldSeconds != 7*86400 || plan.TrafficLimit != 1<<30 || plan.ResetStrategy != "no_reset" {
		t.Fatalf("plan get trial: %+v", plan)
	}

	// Users.
	out = c.ok("user", "add", "alice", "--limit", "100GiB", "--expire", "30d", "--reset", "month", "--group", "eu")
	mustContain(t, "user add", out, "used", "of 100.0 GiB, reset month", "groups", "eu", "subscription", c.url()+"/sub/")
	if f := row(t, out, "status"); f[1] != "active" {
		t.Fatalf("status row %v", f)
	}
	var alice store.User
	c.json(&alice, "user", "get", "alice")
	if alice.TrafficLimit != 100<<30 || alice.ResetStrategy != "month" || !slices.Equal(alice.Groups, []string{"eu"}) ||
		alice.ExpireAt == nil || time.Until(*alice.ExpireAt) < 29*24*time.Hour || time.Until(*alice.ExpireAt) > 31*24*time.Hour {
		t.Fatalf("alice: %+v", alice)
	}
	if got := row(t, c.ok("user", "get", "alice"), "subscription")[1]; got != c.url()+"/sub/"+alice.SubToken {
		t.Fatalf("subscription URL %q does not carry the token", got)
	}
	var bob store.User
	c.json(&bob, "user", "add", "bob", "--plan", "gold", "--devices", "5")
	if bob.Plan != "gold" || bob.TrafficLimit != 50<<30 || bob.DeviceLimit != 5 || bob.ExpireAt == nil {
		t.Fatalf("bob from plan gold: %+v", bob)
	}
	c.ok("user", "add", "carol", "--plan", "trial", "--note", "from the fair")

	out = c.ok("user", "list")
	mustContain(t, "user list", out, "NAME", "STATUS", "(3 of 3)")
	if got := fieldsText(row(t, out, "alice")); !strings.HasPrefix(got, "alice active 0 B 100.0 GiB 20") || !strings.HasSuffix(got, "eu") {
		t.Fatalf("alice's row %q", got)
	}
	if got := fieldsText(row(t, out, "carol")); got != "carol on_hold 0 B 1.0 GiB never all" {
		t.Fatalf("carol's row %q", got)
	}
	var page struct {
		Users []store.User
		Total int
	}
	c.json(&page, "user", "list", "--status", "on_hold")
	if page.Total != 1 || page.Users[0].Name != "carol" {
		t.Fatalf("on_hold users: %+v", page)
	}
	c.json(&page, "user", "list", "--search", "FAIR")
	if page.Total != 1 || page.Users[0].Name != "carol" {
		t.Fatalf("search: %+v", page)
	}
	c.json(&page, "user", "list", "--limit", "1", "--offset", "1")
	if page.Total != 3 || len(page.Users) != 1 || page.Users[0].Name != "bob" {
		t.Fatalf("second page of one: %+v", page)
	}

	// Update: flags left out stay.
	var u store.User
	c.json(&u, "user", "update", "alice", "--limit", "200GiB", "--devices", "3", "--note", "vip")
	if u.TrafficLimit != 200<<30 || u.DeviceLimit != 3 || u.Note != "vip" || u.ResetStrategy != "month" ||
		!slices.Equal(u.Groups, []string{"eu"}) || u.ExpireAt == nil || !u.ExpireAt.Equal(*alice.ExpireAt) {
		t.Fatalf("update: %+v", u)
	}
	u = store.User{}
	c.json(&u, "user", "update", "alice", "--devices", "0", "--note", "", "--expire", "never", "--no-groups")
	if u.DeviceLimit != 0 || u.Note != "" || u.ExpireAt != nil || len(u.Groups) != 0 || u.TrafficLimit != 200<<30 {
		t.Fatalf("update back to unlimited: %+v", u)
	}

	// Suspend, resume, reset, rotate.
	out = c.ok("user", "suspend", "alice", "--reason", "chargeback")
	if got := fieldsText(row(t, out, "status")); got != "status disabled admin: chargeback" {
		t.Fatalf("suspend: %q", got)
	}
	if got := fieldsText(row(t, c.ok("user", "resume", "alice"), "status")); got != "status active" {
		t.Fatalf("resume: %q", got)
	}
	mustContain(t, "reset", c.ok("user", "reset", "alice"), "used", "0 B (up 0 B, down 0 B)")
	u = store.User{}
	c.json(&u, "user", "rotate-token", "alice")
	if u.SubToken == "" || u.SubToken == alice.SubToken || u.Credentials != alice.Credentials {
		t.Fatalf("rotate-token: %q (was %q)", u.SubToken, alice.SubToken)
	}

	// Nodes.
	var n1 struct {
		store.Node
		Token string `json:"token"`
	}
	c.json(&n1, "node", "add", "n1", "--label", "group=eu", "--label", "region=de")
	if n1.Token == "" || n1.Labels["region"] != "de" {
		t.Fatalf("node add: %+v", n1)
	}
	out = c.ok("node", "add", "n2")
	tok2 := row(t, out, "token")[1]
	mustContain(t, "node add", out, "--controller.token-file", "--node.name=n2", "--controller.url="+c.url())
	if len(tok2) < 22 {
		t.Fatalf("node add printed token %q", tok2)
	}
	reg := sbconfig.Registration{Address: "198.51.100.4", Exporter: "198.51.100.4:9550",
		Labels:   map[string]string{"group": "eu", "region": "de"},
		Inbounds: []sbconfig.Inbound{{Tag: "vless-in", Type: "vless", Port: 443}}}
	body, _ := json.Marshal(reg)
	if code, b := httpDo(t, "PUT", c.url()+"/api/v1/nodes/n1", n1.Token, string(body)); code != 200 {
		t.Fatalf("register n1: %d %s", code, b)
	}
	out = c.ok("node", "list")
	mustContain(t, "node list", out, "NAME", "ADDRESS", "LAST SEEN")
	if got := fieldsText(row(t, out, "n1")); !strings.HasPrefix(got, "n1 198.51.100.4 group=eu,region=de 1 no ") {
		t.Fatalf("n1's row %q", got)
	}
	if got := fieldsText(row(t, out, "n2")); got != "n2 0 no never" {
		t.Fatalf("n2's row %q", got)
	}
	out = c.ok("node", "get", "n1")
	mustContain(t, "node get", out, "198.51.100.4:9550")
	if got := fieldsText(row(t, out, "inbound")); got != "inbound vless-in vless 443" {
		t.Fatalf("inbound row %q", got)
	}
	if strings.Contains(out, n1.Token) || strings.Contains(c.ok("node", "get", "n1", "-o", "json"), n1.Token) {
		t.Fatal("node get shows the token")
	}
	if got := fieldsText(row(t, c.ok("node", "drain", "n1", "--reason", "maintenance"), "drained")); got != "drained yes: maintenance" {
		t.Fatalf("drain: %q", got)
	}
	if got := fieldsText(row(t, c.ok("node", "undrain", "n1"), "drained")); got != "drained no" {
		t.Fatalf("undrain: %q", got)
	}
	if out := c.ok("node", "delete", "n2"); strings.TrimSpace(out) != "deleted n2" {
		t.Fatalf("node delete: %q", out)
	}
	if code, _ := httpGet(t, c.url()+"/api/v1/nodes/n2/users", tok2); code != http.StatusUnauthorized {
		t.Fatalf("deleted node's token: %d, want 401", code)
	}

	// Deletes, and the audit log.
	if out := c.ok("user", "delete", "bob"); strings.TrimSpace(out) != "deleted bob" {
		t.Fatalf("user delete: %q", out)
	}
	if out := c.ok("plan", "delete", "trial"); strings.TrimSpace(out) != "deleted trial" {
		t.Fatalf("plan delete: %q", out)
	}
	var evs struct{ Events []store.Event }
	c.json(&evs, "events", "--object", "alice")
	var actions []string
	for _, e := range evs.Events {
		actions = append(actions, e.Action)
		if e.Actor != "admin:file:admin.token" {
			t.Errorf("event %s by %q", e.Action, e.Actor)
		}
	}
	want := "user.rotate_token,user.reset,user.resume,user.suspend,user.update,user.update,user.create"
	if strings.Join(actions, ",") != want {
		t.Fatalf("alice's events %v, want %s", actions, want)
	}
	out = c.ok("events", "--limit", "3")
	mustContain(t, "events", out, "ID", "ACTOR", "plan.delete", "plan/trial", "user.delete", "user/bob", "node.delete")
	if strings.Count(strings.TrimSpace(out), "\n") != 3 {
		t.Fatalf("events --limit 3 printed:\n%s", out)
	}
	raw := c.ok("events", "--limit", "1000", "-o", "json")
	for _, secret := range []string{n1.Token, tok2, alice.SubToken, u.SubToken, alice.Credentials.UUID, alice.Credentials.Password, readToken(t, c.tokenFile())} {
		if strings.Contains(raw, secret) {
			t.Errorf("the audit log shows secret %q", secret)
		}
	}

	// The controller's own metrics reflect what the CLI did.
	_, metrics := httpGet(t, c.url()+"/metrics", readToken(t, c.tokenFile()))
	mustContain(t, "/metrics", string(metrics),
		`boxfleet_user_traffic_limit_bytes{user="alice"} 2.147483648e+11`,
		`boxfleet_user_status{status="on_hold",user="carol"} 1`,
		`boxfleet_node_drained{node="n1"} 0`,
		`boxfleet_http_requests_total{code="201",handler="users.create"} 3`)
}

func TestCLIErrors(t *testing.T) {
	c := newController(t, t.TempDir(), "")
	c.start()
	c.ok("user", "add", "alice")

	c.fails("invalid (HTTP 400): name: must match", "user", "add", "bad name")
	c.fails("invalid (HTTP 400)", "user", "add", "../../etc")
	c.fails("conflict (HTTP 409)", "user", "add", "alice")
	c.fails("not_found (HTTP 404)", "user", "get", "nobody")
	c.fails("not_found (HTTP 404)", "user", "suspend", "nobody")
	c.fails("not_found (HTTP 404)", "plan", "get", "nothing")
	c.fails("not_found (HTTP 404)", "node", "drain", "nowhere")
	c.fails("invalid (HTTP 400): plan", "user", "add", "bob", "--plan", "nothing")
	c.fails(`"5XB" is not a size`, "user", "add", "bob", "--limit", "5XB")
	c.fails(`"soon" is not an expiry`, "user", "update", "alice", "--expire", "soon")
	c.fails("enum value must be one of", "user", "add", "bob", "--reset", "monthly")
	c.fails("required argument 'name' not provided", "user", "get")
	c.fails("expected command but got \"frobnicate\"", "frobnicate")
	c.fails("invalid (HTTP 400): limit", "user", "list", "--limit", "0")

	missing := filepath.Join(t.TempDir(), "nope")
	c.failsEnv([]string{"BOXFLEET_URL=" + c.url(), "BOXFLEET_TOKEN_FILE=" + missing}, "reading the admin token", "user", "list")
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("this-is-not-the-admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.failsEnv([]string{"BOXFLEET_URL=" + c.url(), "BOXFLEET_TOKEN_FILE=" + wrong}, "unauthorized (HTTP 401)", "user", "list")
	// Flags beat the environment.
	c.failsEnv([]string{"BOXFLEET_URL=" + c.url(), "BOXFLEET_TOKEN_FILE=" + c.tokenFile()}, "unauthorized (HTTP 401)", "--token-file", wrong, "user", "list")
	c.failsEnv([]string{"BOXFLEET_URL=http://" + testsupport.FreeAddr(t), "BOXFLEET_TOKEN_FILE=" + c.tokenFile()}, "cannot reach the controller", "user", "list")

	// Nothing the failures tried was created.
	var page struct{ Total int }
	c.json(&page, "user", "list")
	if page.Total != 1 {
		t.Fatalf("%d users after failed commands, want 1", page.Total)
	}
}

// TestRestart stops and starts the controller on the same data: users
// (with their tokens and credentials), plans, nodes (whose tokens keep
// working), the admin token and the audit log all survive.
func TestRestart(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		dir := t.TempDir()
		c := newController(t, dir, db.DSN)
		c.start()
		c.ok("plan", "put", "gold", "--limit", "10GiB", "--reset", "week")
		c.ok("user", "add", "alice", "--plan", "gold", "--group", "eu")
		c.ok("user", "add", "bob", "--expire", "2030-01-01")
		c.ok("user", "suspend", "bob", "--reason", "unpaid")
		var n1 struct {
			Token string `json:"token"`
		}
		c.json(&n1, "node", "add", "n1", "--label", "group=eu")
		body := `{"address":"192.0.2.1","exporter":"192.0.2.1:9550","labels":{"group":"eu"},"inbounds":[{"tag":"t","type":"trojan","port":443}]}`
		if code, b := httpDo(t, "PUT", c.url()+"/api/v1/nodes/n1", n1.Token, body); code != 200 {
			t.Fatalf("register: %d %s", code, b)
		}
		c.ok("node", "drain", "n1", "--reason", "test")
		_, usersBefore := httpGet(t, c.url()+"/api/v1/nodes/n1/users", n1.Token)

		snapshot := func() map[string]string {
			return map[string]string{
				"users":  c.ok("user", "list", "-o", "json"),
				"plans":  c.ok("plan", "list", "-o", "json"),
				"nodes":  c.ok("node", "list", "-o", "json"),
				"events": c.ok("events", "--limit", "1000", "-o", "json"),
			}
		}
		before := snapshot()
		tok := readToken(t, c.tokenFile())
		c.stop()

		c.start()
		if readToken(t, c.tokenFile()) != tok {
			t.Fatal("admin token changed across the restart")
		}
		after := snapshot()
		for k := range before {
			if before[k] != after[k] {
				t.Errorf("%s changed across the restart:\nbefore %s\nafter  %s", k, before[k], after[k])
			}
		}
		var evs struct{ Events []store.Event }
		if err := json.Unmarshal([]byte(after["events"]), &evs); err != nil || len(evs.Events) < 6 {
			t.Fatalf("events after restart: %d, %v", len(evs.Events), err)
		}
		code, usersAfter := httpGet(t, c.url()+"/api/v1/nodes/n1/users", n1.Token)
		if code != 200 || string(usersAfter) != string(usersBefore) {
			t.Fatalf("node's user set after restart: %d %s, before %s", code, usersAfter, usersBefore)
		}
		if !strings.Contains(string(usersAfter), `"alice"`) || strings.Contains(string(usersAfter), `"bob"`) {
			t.Fatalf("node's user set: %s", usersAfter)
		}
		// The restarted controller keeps working and numbering events.
		c.ok("user", "resume", "bob")
		var latest struct{ Events []store.Event }
		c.json(&latest, "events", "--limit", "1")
		if len(latest.Events) != 1 || latest.Events[0].ID <= evs.Events[0].ID || latest.Events[0].Action != "user.resume" {
			t.Fatalf("first event after restart: %+v (last before: %d)", latest.Events, evs.Events[0].ID)
		}
	})
}
