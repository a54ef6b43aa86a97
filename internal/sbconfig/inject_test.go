package sbconfig

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	alice = User{Name: "alice", Credentials: Credentials{
		UUID: "11111111-2222-4333-8444-555555555555", Password: "alice-pw",
		SSKey16: "YWJjZGVmZ2hpamtsbW5vcA==", SSKey32: "YWJjZGVmZ2hpamtsbW5vcGFiY2RlZmdoaWprbG1ub3A=",
	}}
	// A name built to break naive text handling: quotes, backslashes,
	// comment openers, a newline and a closing bracket.
	hostile = User{Name: "bob \"*/ // # \\\n]}", Credentials: NewCredentials()}
)

// decode reads a config the way sing-box does, comments and all.
func decode(t *testing.T, src []byte) map[string]any {
	t.Helper()
	std, err := standardize(src)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(std, &v); err != nil {
		t.Fatalf("injected config is not valid: %v\n%s", err, src)
	}
	return v
}

func inbound(cfg map[string]any, tag string) map[string]any {
	for _, in := range cfg["inbounds"].([]any) {
		if m := in.(map[string]any); m["tag"] == tag {
			return m
		}
	}
	return nil
}

func TestInjectUsersPerType(t *testing.T) {
	out, err := InjectUsers([]byte(serverConfig), nil, []User{hostile, alice})
	if err != nil {
		t.Fatal(err)
	}
	cfg := decode(t, out)
	b := hostile.Credentials
	want := map[string][]map[string]any{
		"vless-reality": {
			{"name": "alice", "uuid": alice.UUID, "flow": FlowVision},
			{"name": hostile.Name, "uuid": b.UUID, "flow": FlowVision},
		},
		"vmess-ws": {
			{"name": "alice", "uuid": alice.UUID, "alterId": 0.0},
			{"name": hostile.Name, "uuid": b.UUID, "alterId": 0.0},
		},
		"trojan-grpc": {{"name": "alice", "password": "alice-pw"}, {"name": hostile.Name, "password": b.Password}},
		"ss":          {{"name": "alice", "password": alice.SSKey16}, {"name": hostile.Name, "password": b.SSKey16}},
		"hy2":         {{"name": "alice", "password": "alice-pw"}, {"name": hostile.Name, "password": b.Password}},
		"tuic": {
			{"name": "alice", "uuid": alice.UUID, "password": "alice-pw"},
			{"name": hostile.Name, "uuid": b.UUID, "password": b.Password},
		},
	}
	for tag, users := range want {
		got := mustJSON(t, inbound(cfg, tag)["users"])
		if got != mustJSON(t, users) {
			t.Errorf("%s users:\n got %s\nwant %s", tag, got, mustJSON(t, users))
		}
	}
	if _, ok := inbound(cfg, "local")["users"]; ok {
		t.Error("users written into an unmanaged mixed inbound")
	}
}

// TestInjectLeavesTheRestAlone compares everything but the managed users,
// as values and as text: comments and layout outside the users arrays stay.
func TestInjectLeavesTheRestAlone(t *testing.T) {
	out, err := InjectUsers([]byte(serverConfig), []string{"vless-reality", "ss"}, []User{alice})
	if err != nil {
		t.Fatal(err)
	}
	before, after := decode(t, []byte(serverConfig)), decode(t, out)
	delete(inbound(before, "vless-reality"), "users")
	delete(inbound(after, "vless-reality"), "users")
	delete(inbound(after, "ss"), "users")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("config changed outside the users arrays:\n%s", out)
	}
	for _, keep := range []string{"// managed by hand, users by boxfleet", "# trailing comment", "/* the server PSK */",
		`"short_id": ["", "0123abcd"],`, `{"type": "mixed", "tag": "local", "listen": "127.0.0.1", "listen_port": 1080},`} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("lost %q", keep)
		}
	}
	// Untouched inbounds keep their exact text.
	for _, tag := range []string{"vmess-ws", "trojan-grpc", "hy2", "tuic"} {
		if mustJSON(t, inbound(decode(t, []byte(serverConfig)), tag)) != mustJSON(t, inbound(decode(t, out), tag)) {
			t.Errorf("%s changed", tag)
		}
	}
	wantSS := `      "password": "` + ssServerPSK + `", /* the server PSK */
      "multiplex": {"enabled": true},
      "users": [
        {"name":"alice","password":"` + alice.SSKey16 + `"}
      ]
    },`
	if !bytes.Contains(out, []byte(wantSS)) {
		t.Errorf("users key not added in the file's layout:\n%s", out)
	}
}

func TestInjectDeterministic(t *testing.T) {
	users := []User{alice, hostile, {Name: "carol", Credentials: NewCredentials()}}
	first, err := InjectUsers([]byte(serverConfig), nil, users)
	if err != nil {
		t.Fatal(err)
	}
	reversed := []User{users[2], users[1], users[0]}
	second, err := InjectUsers([]byte(serverConfig), nil, reversed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("user order changed the output")
	}
	again, err := InjectUsers(first, nil, users)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("injecting the same set twice changed the file:\n%s\n---\n%s", first, again)
	}
	// The public parameters read back the same, the default flow included.
	p1, _ := ParseInbounds([]byte(serverConfig), nil)
	p2, _ := ParseInbounds(first, nil)
	if !reflect.DeepEqual(p1, p2) {
		t.Errorf("public parameters changed by injection:\n%+v\n%+v", p1, p2)
	}
}

func TestInjectEmptySetAndIncompleteUsers(t *testing.T) {
	noKey := User{Name: "nokey", Credentials: Credentials{UUID: alice.UUID}}
	out, err := InjectUsers([]byte(serverConfig), nil, []User{noKey})
	if err != nil {
		t.Fatal(err)
	}
	cfg := decode(t, out)
	if n := len(inbound(cfg, "vless-reality")["users"].([]any)); n != 1 {
		t.Errorf("vless: %d users, want the one with a UUID", n)
	}
	for _, tag := range []string{"trojan-grpc", "ss", "hy2", "tuic"} {
		if n := len(inbound(cfg, tag)["users"].([]any)); n != 0 {
			t.Errorf("%s: %d users, want none (no password)", tag, n)
		}
	}
	out, err = InjectUsers([]byte(serverConfig), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"users": [],`)) {
		t.Errorf("empty set not written as []:\n%s", out)
	}
}

// withV2RayAPI adds a V2Ray stats service to an operator's file, listing
// a user the set no longer has.
func withV2RayAPI(src string) string {
	const outbounds = `  "outbounds": [{"type": "direct", "tag": "direct"}],` + "\n"
	return strings.Replace(src, outbounds, outbounds+`  "experimental": {
    "v2ray_api": {"listen": "127.0.0.1:10085", "stats": {"enabled": true, "users": ["old"]}}, // exact mode
  },
`, 1)
}

// TestInjectedConfigPassesSingBoxCheck runs the real sing-box over the
// rewritten file, every supported type and a hostile name included: the
// release build over the plain file, and the build with the V2Ray API
// (which the release build refuses) over the file with its stats service,
// whose users list the injection rewrote.
func TestInjectedConfigPassesSingBoxCheck(t *testing.T) {
	cert, key := certFiles(t)
	src := strings.ReplaceAll(strings.ReplaceAll(serverConfig, "CERT", cert), "KEY", key)
	for _, c := range []struct{ binary, config string }{
		{"sing-box", src},
		{"sing-box-v2ray", withV2RayAPI(src)},
	} {
		t.Run(c.binary, func(t *testing.T) {
			bin := testbin.Path(t, c.binary)
			out, err := InjectUsers([]byte(c.config), nil, []User{alice, hostile})
			if err != nil {
				t.Fatal(err)
			}
			if c.binary == "sing-box-v2ray" {
				if got := statsUsers(t, out); !reflect.DeepEqual(got, []string{"alice", hostile.Name}) {
					t.Errorf("stats.users %q", got)
				}
			}
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(bin, "check", "-c", path).CombinedOutput(); err != nil {
				t.Fatalf("%s check: %v\n%s\n%s", c.binary, err, b, out)
			}
		})
	}
}

func FuzzInjectUsers(f *testing.F) {
	f.Add([]byte(serverConfig), "alice")
	f.Add([]byte(`{"inbounds":[{"type":"trojan","tag":"t"}]}`), "\"]}")
	f.Add([]byte(withV2RayAPI(serverConfig)), "bob")
	f.Add([]byte(`{"inbounds":[{"type":"trojan","tag":"t"}],"experimental":{"v2ray_api":{"stats":{}}}}`), "\"]}")
	f.Fuzz(func(t *testing.T, src []byte, name string) {
		out, err := InjectUsers(src, nil, []User{{Name: name, Credentials: alice.Credentials}})
		if err != nil {
			return
		}
		std, err := standardize(out)
		if err != nil || !json.Valid(std) {
			t.Fatalf("valid input gave invalid output:\n%s", out)
		}
		again, err := InjectUsers(out, nil, []User{{Name: name, Credentials: alice.Credentials}})
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v\n%s\n---\n%s", err, out, again)
		}
	})
}
