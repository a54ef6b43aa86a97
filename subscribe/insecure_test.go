package subscribe

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

// A node whose certificate is self-signed is marked by its operator with
// the tls_insecure label (--node.label tls_insecure=true, or a list of
// inbound tags); every renderer then tells clients to skip verification
// for those inbounds, and only those.
func TestTLSInsecureLabel(t *testing.T) {
	tls := func() *sbconfig.TLS { return &sbconfig.TLS{ServerName: "edge.test", ALPN: []string{"h2"}} }
	p := fixtureProfile()
	p.Nodes = []Node{
		{Name: "self", Address: "192.0.2.1", Labels: map[string]string{sbconfig.LabelTLSInsecure: "true"}, Inbounds: []sbconfig.Inbound{
			{Tag: "tr", Type: sbconfig.TypeTrojan, Port: 443, TLS: tls()},
			{Tag: "hy", Type: sbconfig.TypeHysteria2, Port: 8443, TLS: tls()},
			{Tag: "rl", Type: sbconfig.TypeVLESS, Port: 444, TLS: &sbconfig.TLS{ServerName: "r.test",
				Reality: &sbconfig.Reality{PublicKey: "cHVi", ShortIDs: []string{"ab"}}}},
		}},
		{Name: "some", Address: "192.0.2.2", Labels: map[string]string{sbconfig.LabelTLSInsecure: "vm, tu"}, Inbounds: []sbconfig.Inbound{
			{Tag: "vm", Type: sbconfig.TypeVMess, Port: 443, TLS: tls()},
			{Tag: "tu", Type: sbconfig.TypeTUIC, Port: 8443, TLS: tls()},
			{Tag: "tr", Type: sbconfig.TypeTrojan, Port: 444, TLS: tls()},
		}},
		{Name: "ca", Address: "192.0.2.3", Labels: map[string]string{sbconfig.LabelTLSInsecure: "false"}, Inbounds: []sbconfig.Inbound{
			{Tag: "tr", Type: sbconfig.TypeTrojan, Port: 443, TLS: tls()},
		}},
	}
	want := map[string]bool{"self tr": true, "self hy": true, "self rl": false, "some vm": true, "some tu": true, "some tr": false, "ca tr": false}
	r := newRenderer(t)

	got := map[string]bool{}
	var mihomo struct {
		Proxies []struct {
			Name string `yaml:"name"`
			Skip bool   `yaml:"skip-cert-verify"`
		} `yaml:"proxies"`
	}
	if err := yaml.Unmarshal(render(t, r, Client{Format: FormatMihomo}, p), &mihomo); err != nil {
		t.Fatal(err)
	}
	for _, px := range mihomo.Proxies {
		got[px.Name] = px.Skip
	}
	checkInsecure(t, "mihomo", got, want)

	got = map[string]bool{}
	var sb struct {
		Outbounds []struct {
			Tag string `json:"tag"`
			TLS *struct {
				Insecure bool `json:"insecure"`
			} `json:"tls"`
		} `json:"outbounds"`
	}
	if err := json.Unmarshal(render(t, r, Client{Format: FormatSingBox}, p), &sb); err != nil {
		t.Fatal(err)
	}
	for _, o := range sb.Outbounds {
		if o.TLS != nil {
			got[o.Tag] = o.TLS.Insecure
		}
	}
	checkInsecure(t, "sing-box", got, want)

	got = map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(render(t, r, Client{Format: FormatLinks}, p))), "\n") {
		l, err := links.Parse(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		got[l.Name] = l.Insecure
	}
	checkInsecure(t, "links", got, want)

	// The profile itself is left as it was: the mark is applied per render.
	if p.Nodes[0].Inbounds[0].TLS.Insecure {
		t.Error("rendering changed the profile's inbound")
	}
}

func checkInsecure(t *testing.T, format string, got, want map[string]bool) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: %q insecure = %v (listed %v), want %v", format, name, g, ok, w)
		}
	}
}
