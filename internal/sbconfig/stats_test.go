package sbconfig

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// statsConfig has a V2Ray stats service whose users list holds names of
// every kind: a user the fleet deleted ("gone", still in the managed
// inbound), a name in no inbound ("zed"), users of inbounds the operator
// keeps by hand (carol on trojan, dave on socks, by username), and a
// duplicate.
const statsConfig = `{
  "inbounds": [
    {
      "type": "vless", "tag": "vless-in", "listen_port": 443,
      "users": [{"name": "gone", "uuid": "2f1a7e4c-5b7d-4e0f-9a51-3c6f1d2e8b90"}]
    },
    {"type": "trojan", "tag": "trojan-by-hand", "listen_port": 8443, "users": [{"name": "carol", "password": "c"}]},
    {"type": "socks", "tag": "socks-by-hand", "listen_port": 1080, "users": [{"username": "dave", "password": "d"}]},
  ],
  "experimental": {
    // exact mode
    "v2ray_api": {
      "listen": "127.0.0.1:10085",
      "stats": {
        "enabled": true, # counting on
        "inbounds": ["vless-in"],
        "users": ["zed", "carol", "gone", "dave", "carol"], // zed: in no inbound
      },
    },
  },
}
`

func statsUsers(t *testing.T, src []byte) []string {
	t.Helper()
	stats := decode(t, src)["experimental"].(map[string]any)["v2ray_api"].(map[string]any)["stats"].(map[string]any)
	list, ok := stats["users"].([]any)
	if !ok {
		t.Fatalf("stats.users is %#v\n%s", stats["users"], src)
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		out = append(out, v.(string))
	}
	return out
}

func mustInject(t *testing.T, src string, tags []string, users ...User) []byte {
	t.Helper()
	out, err := InjectUsers([]byte(src), tags, users)
	if err != nil {
		t.Fatal(err)
	}
	again, err := InjectUsers(out, tags, users)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("a second injection changed the file (%v):\n%s\n---\n%s", err, out, again)
	}
	return out
}

// The list becomes the injected users, sorted, plus the names of users of
// unmanaged inbounds that were listed: a deleted user and a name in no
// inbound go; enabled, inbounds and every comment stay.
func TestStatsUsersReplacedAndSorted(t *testing.T) {
	bob := User{Name: "bob", Credentials: NewCredentials()}
	noUUID := User{Name: "aaron", Credentials: Credentials{Password: "pw"}} // vless cannot take him
	out := mustInject(t, statsConfig, []string{"vless-in"}, bob, alice, noUUID, alice)

	if got, want := statsUsers(t, out), []string{"alice", "bob", "carol", "dave"}; !reflect.DeepEqual(got, want) {
		t.Errorf("stats.users %q, want %q", got, want)
	}
	wantText := `      "stats": {
        "enabled": true, # counting on
        "inbounds": ["vless-in"],
        "users": [
          "alice",
          "bob",
          "carol",
          "dave"
        ], // zed: in no inbound
      },`
	if !bytes.Contains(out, []byte(wantText)) {
		t.Errorf("stats object not rewritten in place:\n%s", out)
	}
	// Nothing else changed: as values, and the text around the block.
	before, after := decode(t, []byte(statsConfig)), decode(t, out)
	for _, cfg := range []map[string]any{before, after} {
		delete(cfg["experimental"].(map[string]any)["v2ray_api"].(map[string]any)["stats"].(map[string]any), "users")
		delete(inbound(cfg, "vless-in"), "users")
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("config changed outside the users lists:\n%s", out)
	}
	head := statsConfig[:strings.Index(statsConfig, `"users": ["zed"`)]
	head = head[strings.Index(head, `    {"type": "trojan"`):]
	if !bytes.Contains(out, []byte(head)) {
		t.Errorf("text around the stats object changed; want\n%s\nin\n%s", head, out)
	}
}

// Without tags every trojan inbound is managed: carol is then the fleet's
// and goes when the set lacks her; dave's socks inbound is never managed.
func TestStatsUsersOnlyManagedNamesAreTheAgents(t *testing.T) {
	out := mustInject(t, statsConfig, nil, alice)
	if got, want := statsUsers(t, out), []string{"alice", "dave"}; !reflect.DeepEqual(got, want) {
		t.Errorf("stats.users %q, want %q", got, want)
	}
	// A listed operator's user the set also names is listed once.
	out = mustInject(t, statsConfig, []string{"vless-in"}, User{Name: "carol", Credentials: alice.Credentials})
	if got, want := statsUsers(t, out), []string{"carol", "dave"}; !reflect.DeepEqual(got, want) {
		t.Errorf("stats.users %q, want %q", got, want)
	}
	// An empty set leaves only the operator's names.
	out = mustInject(t, statsConfig, []string{"vless-in"})
	if got, want := statsUsers(t, out), []string{"carol", "dave"}; !reflect.DeepEqual(got, want) {
		t.Errorf("stats.users %q, want %q", got, want)
	}
}

// A stats object without a users key gets one, laid out like its members.
func TestStatsUsersKeyAdded(t *testing.T) {
	const inbounds = `{
  "inbounds": [{"type": "trojan", "tag": "t", "listen_port": 8443, "users": []}],
  "experimental": {
    "v2ray_api": {
      "listen": "127.0.0.1:10085",
`
	for _, c := range []struct{ name, stats, want string }{
		{"multi-line", "      \"stats\": {\n        \"enabled\": true\n      }\n",
			"      \"stats\": {\n        \"enabled\": true,\n        \"users\": [\n          \"alice\"\n        ]\n      }\n"},
		{"one line", "      \"stats\": {\"enabled\": true}\n",
			"      \"stats\": {\"enabled\": true, \"users\": [\n        \"alice\"\n      ]}\n"},
		{"empty", "      \"stats\": {}\n",
			"      \"stats\": {\"users\": [\n        \"alice\"\n      ]}\n"},
	} {
		src := inbounds + c.stats + "    }\n  }\n}\n"
		out := mustInject(t, src, nil, alice)
		if want := inbounds + c.want + "    }\n  }\n}\n"; !strings.HasSuffix(string(out), want[len(inbounds):]) {
			t.Errorf("%s: got\n%s\nwant the stats object as\n%s", c.name, out, c.want)
		}
		if got := statsUsers(t, out); !reflect.DeepEqual(got, []string{"alice"}) {
			t.Errorf("%s: stats.users %q", c.name, got)
		}
	}
}

// Without a stats object nothing outside the inbounds changes: here the
// inbounds already hold the set, so the file comes back byte for byte.
func TestStatsUsersNoBlockUnchanged(t *testing.T) {
	for name, tail := range map[string]string{
		"no experimental":     ``,
		"clash API only":      `, "experimental": {"clash_api": {"external_controller": "127.0.0.1:9090"}}`,
		"v2ray_api, no stats": `, "experimental": {"v2ray_api": {"listen": "127.0.0.1:10085"}} // stats off`,
		"v2ray_api null":      `, "experimental": {"v2ray_api": null}`,
		"stats null":          `, "experimental": {"v2ray_api": {"listen": "127.0.0.1:10085", "stats": null}}`,
		"not under experimental": `, "v2ray_api": {"stats": {"enabled": true, "users": ["zed"]}},
  "stats": {"users": ["zed"]}`,
	} {
		src := "{\n  # by hand\n  \"inbounds\": [{\"type\": \"trojan\", \"tag\": \"t\", \"listen_port\": 8443, \"users\": []}]" + tail + "\n}\n"
		out, err := InjectUsers([]byte(src), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(out) != src {
			t.Errorf("%s: changed:\n%s", name, out)
		}
	}
}

// Names that break naive text handling come back from encoding/json as
// they went in, in the inbounds and in the stats list alike; so does an
// operator's name kept from the list (read through its escapes).
func TestStatsUsersHostileNames(t *testing.T) {
	names := []string{
		hostile.Name, "Zoë 用户 🚀", "tab\there", `back\slash\`, "line\u2028sep\u2029", `"quoted"`,
		"<script>&amp;", "# not a comment", "/* nor this */",
	}
	var users []User
	for _, n := range names {
		users = append(users, User{Name: n, Credentials: alice.Credentials})
	}
	// Invalid UTF-8 is written as U+FFFD; sing-box never sees an empty
	// name as a user, so it is not listed.
	users = append(users, User{Name: "bad\xffutf8", Credentials: alice.Credentials}, User{Name: "", Credentials: alice.Credentials})
	operator := "op \"\\\n名 */"
	src := `{
  "inbounds": [
    {"type": "trojan", "tag": "managed", "listen_port": 8443},
    {"type": "trojan", "tag": "by-hand", "listen_port": 8444, "users": [{"name": ` + mustJSON(t, operator) + `, "password": "p"}]}
  ],
  "experimental": {"v2ray_api": {"stats": {"enabled": true, "users": [` + mustJSON(t, operator) + `, "\u0041lice-gone"]}}}
}`
	out := mustInject(t, src, []string{"managed"}, users...)

	want := append(append([]string{}, names...), operator, "bad\uFFFDutf8")
	slices.Sort(want)
	if got := statsUsers(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("stats.users\n got %q\nwant %q", got, want)
	}
	// Each listed name is a user of the managed inbound, spelled the same.
	inManaged := map[string]bool{}
	for _, u := range inbound(decode(t, out), "managed")["users"].([]any) {
		inManaged[u.(map[string]any)["name"].(string)] = true
	}
	for _, n := range want {
		if n != operator && !inManaged[n] {
			t.Errorf("%q listed but not a user of the managed inbound", n)
		}
	}
}
