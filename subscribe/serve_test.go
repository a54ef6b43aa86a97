package subscribe

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		ua      string
		name    string
		format  Format
		singBox Version
	}{
		{"clash-verge/v2.2.3", "clash-verge", FormatMihomo, Version{}},
		{"clash.meta/v1.19.23", "mihomo", FormatMihomo, Version{}},
		{"mihomo/1.19.2", "mihomo", FormatMihomo, Version{}},
		{"ClashMetaForAndroid/2.11.5.Meta", "ClashMeta", FormatMihomo, Version{}},
		{"FlClash/v0.8.80 clash-verge Platform/android", "FlClash", FormatMihomo, Version{}},
		{"Stash/2.4.0 Clash/1.9.0", "Stash", FormatMihomo, Version{}},
		{"ClashX/1.118.0", "clash", FormatMihomo, Version{}},
		{"SFA/1.11.4 (574; sing-box 1.11.4; language en_US)", "SFA", FormatSingBox, Version{1, 11}},
		{"SFI/1.12.0 (Build 2; sing-box 1.12.0)", "SFI", FormatSingBox, Version{1, 12}},
		{"SFM/1.13.2 (Build 7; sing-box 1.13.2)", "SFM", FormatSingBox, Version{1, 13}},
		{"SFT/1.10.1 (Build 1; sing-box 1.10.1)", "SFT", FormatSingBox, Version{1, 10}},
		{"sing-box 1.14.1", "sing-box", FormatSingBox, Version{1, 14}},
		{"Karing/1.1.2.606 android", "Karing", FormatSingBox, Version{}},
		// Hiddify's UA mentions ClashMeta and sing-box later on; the prefix decides.
		{"HiddifyNext/2.5.7 (android) like ClashMeta v2ray sing-box", "Hiddify", FormatBase64, Version{}},
		{"v2rayNG/1.9.16", "v2rayNG", FormatBase64, Version{}},
		{"v2rayN/7.4.2", "v2rayN", FormatBase64, Version{}},
		{"Shadowrocket/2070 CFNetwork/1410.0.3 Darwin/22.6.0", "Shadowrocket", FormatBase64, Version{}},
		{"Streisand/1.6.40", "Streisand", FormatBase64, Version{}},
		{"Happ/1.63.1", "Happ", FormatBase64, Version{}},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", "browser", FormatHTML, Version{}},
		{"curl/8.5.0", "", FormatBase64, Version{}},
		{"", "", FormatBase64, Version{}},
		{"Go-http-client/1.1 clash-verge", "", FormatBase64, Version{}},
	} {
		got := Detect(c.ua)
		if got.Name != c.name || got.Format != c.format || got.SingBox != c.singBox {
			t.Errorf("Detect(%q) = %+v, want %s %s %v", c.ua, got, c.name, c.format, c.singBox)
		}
	}
}

func TestProfileVersionShapes(t *testing.T) {
	for in, want := range map[Version]Version{
		{}: DefaultSingBox, {1, 8}: Version111, {1, 11}: Version111, {1, 12}: Version112,
		{1, 13}: Version113, {1, 14}: Version113, {2, 0}: Version113,
	} {
		if got := profileVersion(in); got != want {
			t.Errorf("profileVersion(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestChoose(t *testing.T) {
	for _, c := range []struct {
		target, ua, accept string
		want               Client
	}{
		{"/sub/x?format=sing-box&version=1.11", "curl/8", "", Client{Name: "format", Format: FormatSingBox, SingBox: Version{1, 11}}},
		{"/sub/x?format=clash", "SFA/1.11.4 (1; sing-box 1.11.4)", "", Client{Name: "format", Format: FormatMihomo}},
		{"/sub/x?format=singbox", "SFA/1.11.4 (1; sing-box 1.11.4)", "", Client{Name: "SFA", Format: FormatSingBox, SingBox: Version{1, 11}}},
		{"/sub/x?format=bogus", "clash-verge/v2", "", Client{Name: "clash-verge", Format: FormatMihomo}},
		{"/sub/x", "Mozilla/5.0", "text/html", Client{Name: "browser", Format: FormatHTML, Lang: "en"}},
		{"/sub/x", "SomeWebView", "text/html,application/xhtml+xml", Client{Name: "browser", Format: FormatHTML, Lang: "en"}},
		{"/sub/x?lang=fa", "Mozilla/5.0", "text/html", Client{Name: "browser", Format: FormatHTML, Lang: "fa"}},
		{"/sub/x", "v2rayNG/1.9", "text/html", Client{Name: "v2rayNG", Format: FormatBase64}},
	} {
		req := httptest.NewRequest(http.MethodGet, c.target, nil)
		req.Header.Set("User-Agent", c.ua)
		req.Header.Set("Accept", c.accept)
		if got := Choose(req); got != c.want {
			t.Errorf("%s UA %q Accept %q: got %+v, want %+v", c.target, c.ua, c.accept, got, c.want)
		}
	}
}

func serve(t *testing.T, r *Renderer, p *Profile, target, ua string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("User-Agent", ua)
	rec := httptest.NewRecorder()
	r.Serve(rec, req, p)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: status %d: %s", target, rec.Code, rec.Body)
	}
	return rec
}

func TestServeHeaders(t *testing.T) {
	r := newRenderer(t)
	p := fixtureProfile()
	p.SupportURL = "https://t.me/support"
	for _, c := range []struct {
		ua, contentType string
		body            func([]byte) error
	}{
		{"clash-verge/v2", "text/yaml; charset=utf-8", func(b []byte) error { return yaml.Unmarshal(b, new(map[string]any)) }},
		{"SFA/1.12.0 (1; sing-box 1.12.0)", "application/json; charset=utf-8", func(b []byte) error { return json.Unmarshal(b, new(map[string]any)) }},
		{"v2rayNG/1.9", "text/plain; charset=utf-8", func(b []byte) error { _, err := base64.StdEncoding.DecodeString(string(b)); return err }},
	} {
		rec := serve(t, r, p, "/sub/x", c.ua)
		h := rec.Header()
		if got := h.Get("Content-Type"); got != c.contentType {
			t.Errorf("%s: content-type %q", c.ua, got)
		}
		if err := c.body(rec.Body.Bytes()); err != nil {
			t.Errorf("%s: body does not parse: %v", c.ua, err)
		}
		want := map[string]string{
			"Subscription-Userinfo":   "upload=1073741824; download=5368709120; total=107374182400; expire=1893553445",
			"Profile-Update-Interval": "6",
			"Profile-Title":           "boxfleet",
			"Content-Disposition":     `attachment; filename="boxfleet"; filename*=UTF-8''boxfleet`,
			"Profile-Web-Page-Url":    "https://sub.example.com/sub/tok3n",
			"Support-Url":             "https://t.me/support",
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", c.ua, k, got, v)
			}
		}
		if h.Get("Content-Length") != strconv.Itoa(rec.Body.Len()) {
			t.Errorf("%s: content-length %s for %d bytes", c.ua, h.Get("Content-Length"), rec.Body.Len())
		}
	}
}

func TestUserInfo(t *testing.T) {
	p := &Profile{Upload: 1, Download: 2}
	if got := UserInfo(p); got != "upload=1; download=2; total=0" {
		t.Errorf("unlimited, no expiry: %q", got)
	}
	p.Total, p.Expire = 10, time.Unix(1700000000, 0)
	if got := UserInfo(p); got != "upload=1; download=2; total=10; expire=1700000000" {
		t.Errorf("limited with expiry: %q", got)
	}
	if got := updateHours(90 * time.Minute); got != 2 {
		t.Errorf("90m rounds up to %d hours", got)
	}
	if got := updateHours(0); got != 12 {
		t.Errorf("default interval %d hours", got)
	}
}

func TestHeaderText(t *testing.T) {
	if got := HeaderText("Plain title"); got != "Plain title" {
		t.Errorf("ASCII title changed: %q", got)
	}
	if got := HeaderText("Ünï"); got != "base64:"+base64.StdEncoding.EncodeToString([]byte("Ünï")) {
		t.Errorf("non-ASCII title: %q", got)
	}
}

// TestSuspendedUsers: users who get no nodes still get a well-formed body in
// every format that names the reason, and their usage in the headers.
func TestSuspendedUsers(t *testing.T) {
	bin := testbin.Path(t, "sing-box")
	r := newRenderer(t)
	for _, status := range []string{StatusDisabled, StatusLimited, StatusExpired} {
		p := fixtureProfile()
		p.Status = status
		reason := p.Reason()
		sb := serve(t, r, p, "/sub/x", "SFA/1.13.0 (1; sing-box 1.13.0)")
		singBoxCheck(t, bin, writeFile(t, t.TempDir(), "profile.json", sb.Body.Bytes()))
		if !bytes.Contains(sb.Body.Bytes(), []byte(`"tag":"`+reason+`"`)) {
			t.Errorf("%s: sing-box profile has no %q entry", status, reason)
		}
		if strings.Contains(sb.Body.String(), fixtureCreds.UUID) {
			t.Errorf("%s: sing-box profile still carries the user's credentials", status)
		}
		mh := serve(t, r, p, "/sub/x", "clash-verge/v2")
		var doc struct {
			Proxies []map[string]any `yaml:"proxies"`
		}
		if err := yaml.Unmarshal(mh.Body.Bytes(), &doc); err != nil || len(doc.Proxies) != 1 || doc.Proxies[0]["name"] != reason {
			t.Errorf("%s: mihomo proxies %v (%v)", status, doc.Proxies, err)
		}
		ln := serve(t, r, p, "/sub/x?format=links", "")
		l, err := links.Parse(strings.TrimSpace(ln.Body.String()))
		if err != nil || l.Name != reason {
			t.Errorf("%s: placeholder link %q: %+v %v", status, ln.Body.String(), l, err)
		}
		if got := mh.Header().Get("Profile-Title"); got != "boxfleet ["+reason+"]" {
			t.Errorf("%s: title %q", status, got)
		}
		if got := mh.Header().Get("Subscription-Userinfo"); !strings.HasPrefix(got, "upload=1073741824; download=5368709120; total=107374182400") {
			t.Errorf("%s: userinfo %q", status, got)
		}
	}
	p := fixtureProfile()
	p.Status = StatusOnHold
	if p.Reason() != "" {
		t.Error("on_hold users must get their nodes: their period starts with the first connection")
	}
	p.Nodes = nil
	if p.Reason() != "No servers available" {
		t.Errorf("active user without nodes: reason %q", p.Reason())
	}
}

func TestServeHEAD(t *testing.T) {
	r := newRenderer(t)
	req := httptest.NewRequest(http.MethodHead, "/sub/x", nil)
	rec := httptest.NewRecorder()
	r.Serve(rec, req, fixtureProfile())
	if rec.Body.Len() != 0 || rec.Header().Get("Subscription-Userinfo") == "" {
		t.Errorf("HEAD: body %d bytes, userinfo %q", rec.Body.Len(), rec.Header().Get("Subscription-Userinfo"))
	}
}

func TestRankOrderKept(t *testing.T) {
	r := newRenderer(t)
	p := fixtureProfile()
	p.Nodes = []Node{
		{Name: "best", Address: "192.0.2.1", Inbounds: fixtureInbounds()[:1]},
		{Name: "worse", Address: "192.0.2.2", Inbounds: fixtureInbounds()[:1]},
	}
	for _, f := range []Format{FormatMihomo, FormatSingBox, FormatLinks} {
		out := strings.ReplaceAll(string(render(t, r, Client{Format: f}, p)), "%20", " ")
		if i, j := strings.Index(out, "best vless-reality"), strings.Index(out, "worse vless-reality"); i < 0 || j < i {
			t.Errorf("%s: ranked order lost", f)
		}
	}
}

func TestTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	custom := "proxies:\n{{.Proxies -}}\nproxy-groups:\n  - {name: MINE, type: fallback, proxies: [{{.Names}}]}\nrules: [MATCH,MINE]\n"
	if err := os.WriteFile(filepath.Join(dir, "mihomo.yaml"), []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := render(t, r, Client{Format: FormatMihomo}, fixtureProfile())
	if !bytes.Contains(out, []byte("name: MINE")) {
		t.Errorf("override not used:\n%s", out)
	}
	// Files not in the directory keep the built-in template.
	if sb := render(t, r, Client{Format: FormatSingBox}, fixtureProfile()); !bytes.Contains(sb, []byte(`"tag": "auto"`)) {
		t.Error("built-in sing-box template not used")
	}
	for name, broken := range map[string]string{
		"mihomo.yaml":   "proxies: [{{.Proxies}}\n",
		"sing-box.json": `{"outbounds": [{{.Outbounds}}]`,
		"page.html":     "{{.NoSuchField}}",
	} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, name), []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := New(d); err == nil {
			t.Errorf("broken %s accepted", name)
		}
	}
}

func TestPage(t *testing.T) {
	r := newRenderer(t)
	p := fixtureProfile()
	p.Upload, p.Download, p.Total = 30<<30, 45<<30, 100<<30
	rec := serve(t, r, p, "/sub/x", "Mozilla/5.0 (Windows NT 10.0)")
	page := rec.Body.String()
	if rec.Header().Get("Content-Type") != "text/html; charset=utf-8" || rec.Header().Get("Content-Disposition") != "" {
		t.Errorf("page headers: %v", rec.Header())
	}
	for _, want := range []string{
		"75.0 GiB", "100.0 GiB", `aria-valuenow="75"`, "2030-01-02 03:04 UTC", ">active<",
		`href="sing-box://import-remote-profile?url=https%3A%2F%2Fsub.example.com%2Fsub%2Ftok3n#boxfleet"`,
		`href="clash://install-config?url=https%3A%2F%2Fsub.example.com%2Fsub%2Ftok3n&amp;name=boxfleet"`,
		"de-1 vless-reality", "vless://" + fixtureCreds.UUID + "@203.0.113.10:443?",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// One QR code for the subscription and one per import button, all inline.
	if n := strings.Count(page, "<svg "); n != 1+len(importButtons("x", "y")) {
		t.Errorf("%d inline QR codes", n)
	}
	for _, external := range []string{"<script src", "<link ", "<img ", "url(http", "@import"} {
		if strings.Contains(page, external) {
			t.Errorf("page loads an external asset: %q", external)
		}
	}
}

// TestConcurrentRenders: pooled buffers never leak one response into another.
func TestConcurrentRenders(t *testing.T) {
	r := newRenderer(t)
	a, b := fixtureProfile(), benchProfile()
	b.User, b.Credentials.UUID = "bob", "11111111-2222-4333-8444-555555555555"
	want := map[*Profile][]byte{}
	for _, p := range []*Profile{a, b} {
		want[p] = render(t, r, Client{Format: FormatSingBox}, p)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			p := a
			if i%2 == 1 {
				p = b
			}
			for range 50 {
				var buf bytes.Buffer
				if err := r.Render(&buf, Client{Format: FormatSingBox}, p); err != nil {
					errs <- fmt.Errorf("render for %s: %w", p.User, err)
					return
				}
				if !bytes.Equal(buf.Bytes(), want[p]) {
					errs <- fmt.Errorf("render for %s differs", p.User)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
