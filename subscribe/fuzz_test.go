package subscribe

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

// markup is what would start an element, a comment or an end tag.
var markup = regexp.MustCompile(`<[A-Za-z!/?]`)

// FuzzRenderProfile feeds the renderers profiles whose every string comes
// from outside: the user's name and title (admin input), the node's name,
// address, inbound tags and parameters (a node's registration). Every
// format must stay well formed, list exactly the entries the profile has,
// under names read back exactly, and keep markup out of the page and raw
// bytes out of the headers.
func FuzzRenderProfile(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, "tag", "edge.example.com", "/ws")
		f.Add("alice", s, s, s)
	}
	f.Add("a", "t\n- name: x\n  type: direct", "s\"}]", "/p#x?y=%zz")
	r := newRenderer(f)
	f.Fuzz(func(t *testing.T, name, tag, sni, path string) {
		p := hostileProfile(name)
		ins := p.Nodes[0].Inbounds
		for i := range ins {
			ins[i].Tag = tag + "-" + ins[i].Tag // distinct, as sing-box requires
			if ins[i].TLS != nil {
				ins[i].TLS.ServerName = sni
			}
			if tr := ins[i].Transport; tr != nil {
				tr.Path, tr.Host, tr.ServiceName = path, sni, path
			}
			if o := ins[i].Obfs; o != nil {
				o.Password = path
			}
		}
		if sbconfig.ValidHost(sni) { // the controller takes nothing else as an address
			p.Nodes[0].Address = sni
		}
		want := 2 * len(fixtureInbounds())
		first := valid(name) + " " + valid(ins[0].Tag)

		var y struct {
			Proxies []map[string]any `yaml:"proxies"`
		}
		out := render(t, r, Client{Format: FormatMihomo}, p)
		if err := yaml.Unmarshal(out, &y); err != nil {
			t.Fatalf("mihomo: %v\n%s", err, out)
		}
		if len(y.Proxies) != want || y.Proxies[0]["name"] != first {
			t.Fatalf("mihomo: %d proxies (want %d), first named %q (want %q)\n%s", len(y.Proxies), want, y.Proxies[0]["name"], first, out)
		}

		var j struct {
			Outbounds []struct {
				Tag       string   `json:"tag"`
				Outbounds []string `json:"outbounds"`
			} `json:"outbounds"`
		}
		out = render(t, r, Client{Format: FormatSingBox}, p)
		if err := json.Unmarshal(out, &j); err != nil {
			t.Fatalf("sing-box: %v\n%s", err, out)
		}
		if len(j.Outbounds) < 3 || len(j.Outbounds[1].Outbounds) != want || j.Outbounds[2].Tag != first {
			t.Fatalf("sing-box: outbounds %+v, want %d in the group and %q first", j.Outbounds, want, first)
		}

		out = render(t, r, Client{Format: FormatLinks}, p)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != want {
			t.Fatalf("links: %d lines, want %d\n%s", len(lines), want, out)
		}
		for _, l := range lines {
			if _, err := links.Parse(l); err != nil {
				t.Fatalf("links: %q: %v", l, err)
			}
		}

		page := string(render(t, r, Client{Format: FormatHTML}, p))
		for _, s := range []string{name, tag, sni, path} {
			if markup.MatchString(s) && strings.Contains(page, s) {
				t.Fatalf("page carries %q unescaped", s)
			}
		}

		rec := httptest.NewRecorder()
		r.Serve(rec, httptest.NewRequest(http.MethodGet, "/sub/x?format=mihomo", nil), p)
		for k, vs := range rec.Header() {
			for _, v := range vs {
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						t.Fatalf("header %s carries byte %#x: %q", k, v[i], v)
					}
				}
			}
		}
	})
}
