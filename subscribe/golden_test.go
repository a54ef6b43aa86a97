package subscribe

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func render(t testing.TB, r *Renderer, c Client, p *Profile) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := r.Render(&b, c, p); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newRenderer(t testing.TB) *Renderer {
	t.Helper()
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestGoldenPerProtocol pins the mihomo profile and the share link of a user
// whose only node has one inbound of each protocol variant.
func TestGoldenPerProtocol(t *testing.T) {
	r := newRenderer(t)
	for _, in := range fixtureInbounds() {
		t.Run(in.Tag, func(t *testing.T) {
			p := fixtureProfile(in)
			golden(t, "mihomo-"+in.Tag+".yaml", render(t, r, Client{Format: FormatMihomo}, p))
			golden(t, "link-"+in.Tag+".txt", render(t, r, Client{Format: FormatLinks}, p))
		})
	}
}

// TestGoldenSingBox pins the whole sing-box profile in each shape.
func TestGoldenSingBox(t *testing.T) {
	r := newRenderer(t)
	for _, v := range []Version{Version111, Version112, Version113} {
		golden(t, "sing-box-"+v.String()+".json", render(t, r, Client{Format: FormatSingBox, SingBox: v}, fixtureProfile()))
	}
}

// TestGoldenSuspended pins what a user who gets no nodes sees.
func TestGoldenSuspended(t *testing.T) {
	r := newRenderer(t)
	p := fixtureProfile()
	p.Status = StatusLimited
	golden(t, "mihomo-limited.yaml", render(t, r, Client{Format: FormatMihomo}, p))
	golden(t, "link-limited.txt", render(t, r, Client{Format: FormatLinks}, p))
}

// TestLinksRoundTrip parses every served link back and expects exactly the
// parameters it was built from, and that those carry what the node reported.
func TestLinksRoundTrip(t *testing.T) {
	p := fixtureProfile()
	var n int
	p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
		n++
		want := e.link(c)
		uri := want.String()
		got, err := links.Parse(uri)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", e.in.Tag, got, want)
		}
		in := e.in
		if got.Port != in.Port || got.Host != "203.0.113.10" || got.Name != "de-1 "+in.Tag {
			t.Errorf("%s: endpoint %s:%d %q", in.Tag, got.Host, got.Port, got.Name)
		}
		if r := in.TLS; r != nil && r.Reality != nil && (got.PublicKey != r.Reality.PublicKey || got.ShortID != r.Reality.ShortIDs[0] || got.Security != "reality") {
			t.Errorf("%s: REALITY parameters lost: %+v", in.Tag, got)
		}
	})
	if n != len(fixtureInbounds()) {
		t.Fatalf("%d links for %d inbounds", n, len(fixtureInbounds()))
	}
}

// TestParseForeignForms reads link spellings other generators use.
func TestParseForeignForms(t *testing.T) {
	for _, c := range []struct {
		uri  string
		want links.Link
	}{
		{"hy2://pw@h.example:8443?sni=s&insecure=1#n", links.Link{Protocol: links.Hysteria2, Name: "n", Host: "h.example", Port: 8443, Password: "pw", Security: "tls", SNI: "s", Insecure: true}},
		{"hysteria2://user:pass@h.example/", links.Link{Protocol: links.Hysteria2, Host: "h.example", Port: 443, Password: "user:pass", Security: "tls"}},
		// SIP002 base64 userinfo, standard alphabet with padding (Marzban).
		{"ss://YWVzLTI1Ni1nY206cGFzcw==@[2001:db8::1]:8388#x%20y", links.Link{Protocol: links.Shadowsocks, Name: "x y", Host: "2001:db8::1", Port: 8388, Method: "aes-256-gcm", Password: "pass"}},
		// vmess with numbers instead of strings.
		{"vmess://eyJ2IjoyLCJwcyI6Im4iLCJhZGQiOiJhLmIiLCJwb3J0Ijo0NDMsImlkIjoidSIsImFpZCI6MCwibmV0IjoiZ3JwYyIsInBhdGgiOiJzdmMiLCJ0bHMiOiJ0bHMifQ==",
			links.Link{Protocol: links.VMess, Name: "n", Host: "a.b", Port: 443, UUID: "u", Network: "grpc", ServiceName: "svc", Security: "tls"}},
		{"trojan://p:w@t.example:443?allowInsecure=1", links.Link{Protocol: links.Trojan, Host: "t.example", Port: 443, Password: "p:w", Insecure: true, Network: "tcp"}},
	} {
		got, err := links.Parse(c.uri)
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.uri, got, c.want)
		}
	}
	for _, bad := range []string{"vless://u@h:0", "vless://u@h:99999", "nope", "ss://nouserinfo", "gopher://x@h:1", "vmess://!!!"} {
		if _, err := links.Parse(bad); err == nil {
			t.Errorf("%s parsed without error", bad)
		}
	}
}

// TestLinksNeverSplitSecrets guards the escaping rules that matter to Go
// importers: no raw ':' inside trojan/hy2 userinfo, TUIC keeps its one literal
// ':', SS2022 userinfo is not base64.
func TestLinksNeverSplitSecrets(t *testing.T) {
	p := fixtureProfile()
	p.Credentials.Password = "a:b@c/d?e#f"
	out := string(render(t, newRenderer(t), Client{Format: FormatLinks}, p))
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		scheme, rest, _ := strings.Cut(line, "://")
		if scheme == "vmess" {
			continue // base64 JSON, no userinfo
		}
		// The first '@' must end the userinfo: secrets have theirs escaped.
		user, host, _ := strings.Cut(rest, "@")
		if !strings.HasPrefix(host, "203.0.113.10:") {
			t.Errorf("%s: userinfo leaks into the host: %s", scheme, line)
		}
		switch scheme {
		case "trojan", "hysteria2":
			if strings.ContainsAny(user, ":@/?#") {
				t.Errorf("%s userinfo %q has a raw delimiter", scheme, user)
			}
		case "tuic":
			if strings.Count(user, ":") != 1 {
				t.Errorf("tuic userinfo %q must have exactly one literal colon", user)
			}
		case "ss":
			if !strings.HasPrefix(user, "2022-blake3-aes-128-gcm:") {
				t.Errorf("SS2022 userinfo %q is not method:password", user)
			}
		}
	}
}
