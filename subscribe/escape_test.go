package subscribe

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

// hostile strings: quotes, backslashes, newlines, YAML indicators and
// specials, URI delimiters, percent signs, non-ASCII, line separators,
// control bytes and invalid UTF-8.
var hostile = []string{
	`o"neil\`,
	"line\nbreak\r\n- key: value",
	"#comment # not",
	"100% & 50%2F",
	"yes", "~", "null", "0x1F", "1e3", "- dash", "? q", ": colon", "!tag", "&anchor *alias", "{a: b}", "[1, 2]", "|", ">",
	"a:b@c/d?e=f&g#h",
	"Ünïcödé 日本 🚀",
	"sep\u2028para\u2029bom\ufeffnel\u0085",
	"ctrl\x00\x07\x1b\x7f",
	"bad\xffutf8",
	"' single 'quote",
	"<script>alert(1)</script>",
}

// valid turns s into what a parser must read back: each invalid UTF-8 byte
// becomes U+FFFD in every format.
func valid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func hostileProfile(s string) *Profile {
	p := fixtureProfile()
	p.User, p.Title = s, s
	p.Credentials.Password = s
	p.Nodes[0].Name = s
	p.Nodes = append(p.Nodes, Node{Name: "other", Address: "198.51.100.7", Inbounds: fixtureInbounds()})
	return p
}

// TestHostileYAML: names and passwords come back from the mihomo YAML
// exactly, and nothing in them adds keys or entries.
func TestHostileYAML(t *testing.T) {
	r := newRenderer(t)
	for _, s := range hostile {
		p := hostileProfile(s)
		out := render(t, r, Client{Format: FormatMihomo}, p)
		var doc struct {
			Proxies []map[string]any `yaml:"proxies"`
			Groups  []struct {
				Name    string   `yaml:"name"`
				Proxies []string `yaml:"proxies"`
			} `yaml:"proxy-groups"`
		}
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, out)
		}
		want := 2 * len(fixtureInbounds())
		if len(doc.Proxies) != want {
			t.Fatalf("%q: %d proxies, want %d", s, len(doc.Proxies), want)
		}
		for i, in := range fixtureInbounds() {
			px := doc.Proxies[i]
			if px["name"] != valid(s)+" "+in.Tag {
				t.Errorf("%q: name read back as %q", s, px["name"])
			}
			if pw, ok := px["password"]; ok && in.Type != sbconfig.TypeShadowsocks && pw != valid(s) {
				t.Errorf("%q: %s password read back as %q", s, in.Tag, pw)
			}
		}
		for _, g := range doc.Groups {
			if g.Name == "AUTO" && (len(g.Proxies) != want || g.Proxies[0] != valid(s)+" vless-reality") {
				t.Errorf("%q: AUTO group lists %q", s, g.Proxies)
			}
		}
	}
}

// TestHostileJSON: the same through the sing-box profile.
func TestHostileJSON(t *testing.T) {
	r := newRenderer(t)
	for _, s := range hostile {
		out := render(t, r, Client{Format: FormatSingBox}, hostileProfile(s))
		var doc struct {
			Outbounds []struct {
				Type      string   `json:"type"`
				Tag       string   `json:"tag"`
				Password  string   `json:"password"`
				Outbounds []string `json:"outbounds"`
			} `json:"outbounds"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, out)
		}
		if got := doc.Outbounds[2]; got.Tag != valid(s)+" vless-reality" {
			t.Errorf("%q: first tag read back as %q", s, got.Tag)
		}
		if got := doc.Outbounds[1].Outbounds; len(got) != 2*len(fixtureInbounds()) {
			t.Errorf("%q: urltest lists %d outbounds", s, len(got))
		}
		for _, o := range doc.Outbounds {
			if (o.Type == "trojan" || o.Type == "hysteria2") && o.Password != valid(s) {
				t.Errorf("%q: %s password read back as %q", s, o.Type, o.Password)
			}
		}
	}
}

// TestHostileLinks: every link parses back to its parameters.
func TestHostileLinks(t *testing.T) {
	for _, s := range hostile {
		p := hostileProfile(s)
		p.Credentials.Password = valid(s) // links carry bytes; invalid UTF-8 would not survive JSON in vmess
		p.Nodes[0].Name = valid(s)
		p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
			want := e.link(c)
			got, err := links.Parse(want.String())
			if err != nil {
				t.Fatalf("%q: %s: %v", s, want.String(), err)
			}
			if got.Name != want.Name || got.Password != want.Password || got.UUID != want.UUID || got.Host != want.Host {
				t.Errorf("%q: %s read back as %+v, want %+v", s, want.Protocol, got, want)
			}
		})
	}
}

// TestHostileHeaders: header values never carry a raw control byte or
// non-ASCII, and decode back to the title.
func TestHostileHeaders(t *testing.T) {
	r := newRenderer(t)
	for _, s := range hostile {
		p := hostileProfile(s)
		rec := httptest.NewRecorder()
		r.Serve(rec, httptest.NewRequest(http.MethodGet, "/sub/x?format=mihomo", nil), p)
		for k, vs := range rec.Header() {
			for _, v := range vs {
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						t.Fatalf("%q: header %s carries byte %#x: %q", s, k, v[i], v)
					}
				}
			}
		}
		title := rec.Header().Get("Profile-Title")
		if enc, ok := strings.CutPrefix(title, "base64:"); ok {
			b, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				t.Fatal(err)
			}
			title = string(b)
		}
		if title != s {
			t.Errorf("profile-title decodes to %q, want %q", title, s)
		}
		_, params, err := mime.ParseMediaType(rec.Header().Get("Content-Disposition"))
		if err != nil {
			t.Fatalf("%q: content-disposition: %v", s, err)
		}
		// mime decodes filename* into filename.
		if params["filename"] != s {
			t.Errorf("%q: content-disposition filename* decodes to %q", s, params["filename"])
		}
	}
}

// TestHostilePage: the browser page escapes names; nothing user-controlled
// becomes markup.
func TestHostilePage(t *testing.T) {
	r := newRenderer(t)
	p := hostileProfile("<script>alert(1)</script>")
	page := string(render(t, r, Client{Format: FormatHTML}, p))
	if strings.Contains(page, "<script>") {
		t.Fatal("page contains an unescaped <script>")
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Fatal("page does not show the escaped name")
	}
}
