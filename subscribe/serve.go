package subscribe

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/internal/esc"
)

// Choose picks the client for a request: ?format= wins (with ?version=1.12
// for a sing-box profile shape), then the User-Agent table, then an Accept
// header asking for HTML (a browser with an unusual User-Agent).
func Choose(req *http.Request) Client {
	q := req.URL.Query()
	c := Detect(req.UserAgent())
	if f, ok := ParseFormat(q.Get("format")); ok {
		if f != c.Format {
			c = Client{Name: "format", Format: f}
		}
	}
	if c.Format == FormatSingBox {
		if v, ok := parseVersion(q.Get("version")); ok {
			c.SingBox = v
		}
	}
	if c.Name == "" && strings.Contains(req.Header.Get("Accept"), "text/html") {
		c = Client{Name: "browser", Format: FormatHTML}
	}
	if c.Format == FormatHTML {
		c.Lang = ChooseLang(req)
	}
	return c
}

func parseVersion(s string) (Version, bool) {
	major, rest, ok := number(s)
	if !ok || len(rest) < 2 || rest[0] != '.' {
		return Version{}, false
	}
	minor, _, ok := number(rest[1:])
	return Version{major, minor}, ok
}

var contentTypes = [...]string{
	FormatBase64:  "text/plain; charset=utf-8",
	FormatLinks:   "text/plain; charset=utf-8",
	FormatSingBox: "application/json; charset=utf-8",
	FormatMihomo:  "text/yaml; charset=utf-8",
	FormatHTML:    "text/html; charset=utf-8",
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Serve answers a subscription request for p: it picks the format (Choose),
// sets the headers (SetHeaders) and writes the body. A HEAD request gets the
// headers only, which some clients use to refresh usage.
func (r *Renderer) Serve(w http.ResponseWriter, req *http.Request, p *Profile) {
	c := Choose(req)
	buf := bodyPool.Get().(*bytes.Buffer)
	defer bodyPool.Put(buf)
	buf.Reset()
	if err := r.Render(buf, c, p); err != nil {
		http.Error(w, "subscription rendering failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	SetHeaders(h, c.Format, p)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// SetHeaders writes the subscription headers clients read: usage and expiry
// (subscription-userinfo), refresh interval in hours, profile title and file
// name, the web page and support links, and the content type of f.
func SetHeaders(h http.Header, f Format, p *Profile) {
	h.Set("Content-Type", contentTypes[f])
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Subscription-Userinfo", UserInfo(p))
	h.Set("Profile-Update-Interval", strconv.FormatInt(updateHours(p.UpdateInterval), 10))
	title := profileTitle(p)
	h.Set("Profile-Title", HeaderText(title))
	if f != FormatHTML {
		h.Set("Content-Disposition", ContentDisposition(title))
	} else {
		h.Set("Vary", "Accept-Language") // the page's language follows it
	}
	if u := p.WebPageURL; u != "" {
		h.Set("Profile-Web-Page-Url", u)
	} else if p.SubURL != "" {
		h.Set("Profile-Web-Page-Url", p.SubURL)
	}
	if p.SupportURL != "" {
		h.Set("Support-Url", p.SupportURL)
	}
}

// UserInfo is the subscription-userinfo value: integers, total 0 for
// unlimited, and no expire at all when the user never expires (expire=0 is a
// real timestamp to some clients).
func UserInfo(p *Profile) string {
	b := make([]byte, 0, 96)
	b = append(b, "upload="...)
	b = strconv.AppendInt(b, max(p.Upload, 0), 10)
	b = append(b, "; download="...)
	b = strconv.AppendInt(b, max(p.Download, 0), 10)
	b = append(b, "; total="...)
	b = strconv.AppendInt(b, max(p.Total, 0), 10)
	if !p.Expire.IsZero() {
		b = append(b, "; expire="...)
		b = strconv.AppendInt(b, p.Expire.Unix(), 10)
	}
	return string(b)
}

func updateHours(d time.Duration) int64 {
	if d <= 0 {
		return 12
	}
	return max(int64((d+time.Hour-1)/time.Hour), 1)
}

// profileTitle is the title clients show; a user who gets no nodes sees why
// in it too.
func profileTitle(p *Profile) string {
	t := p.Title
	if t == "" {
		t = p.User
	}
	if r := p.Reason(); r != "" {
		t += " [" + r + "]"
	}
	return t
}

// HeaderText returns s as it can travel in a header: as it is when it is
// printable ASCII, otherwise "base64:" and the standard base64 of its UTF-8,
// the form clients decode (headers are Latin-1, and a raw newline would end
// the header).
func HeaderText(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "base64:" + base64.StdEncoding.EncodeToString([]byte(s))
		}
	}
	return s
}

// ContentDisposition names the profile file: an ASCII filename for old
// clients and the exact UTF-8 name in filename* (RFC 6266), which
// clash-verge prefers as the profile name.
func ContentDisposition(name string) string {
	b := make([]byte, 0, 2*len(name)+48)
	b = append(b, `attachment; filename="`...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '/' || c == '%' || c == ';' {
			c = '_'
		}
		b = append(b, c)
	}
	b = append(b, `"; filename*=UTF-8''`...)
	b = esc.URI(b, name)
	return string(b)
}

// sampleProfile exercises every protocol and transport; New renders it to
// check the templates.
func sampleProfile() *Profile {
	tls := &sbconfig.TLS{ServerName: "example.com"}
	return &Profile{
		User:        "sample",
		Credentials: sbconfig.NewCredentials(),
		Nodes: []Node{{Name: "sample", Address: "192.0.2.1", Inbounds: []sbconfig.Inbound{
			{Tag: "vless", Type: sbconfig.TypeVLESS, Port: 443, Flow: "xtls-rprx-vision",
				TLS: &sbconfig.TLS{ServerName: "example.com", Reality: &sbconfig.Reality{PublicKey: "k", ShortIDs: []string{"01"}}}},
			{Tag: "vmess", Type: sbconfig.TypeVMess, Port: 443, TLS: tls, Transport: &sbconfig.Transport{Type: "ws", Path: "/"}},
			{Tag: "trojan", Type: sbconfig.TypeTrojan, Port: 443, TLS: tls, Transport: &sbconfig.Transport{Type: "grpc", ServiceName: "g"}},
			{Tag: "ss", Type: sbconfig.TypeShadowsocks, Port: 443, Method: "2022-blake3-aes-128-gcm", ServerPSK: "AAAAAAAAAAAAAAAAAAAAAA=="},
			{Tag: "hy2", Type: sbconfig.TypeHysteria2, Port: 443, TLS: tls, Obfs: &sbconfig.Obfs{Type: "salamander", Password: "p"}},
			{Tag: "tuic", Type: sbconfig.TypeTUIC, Port: 443, TLS: tls, CongestionControl: "bbr"},
		}}},
	}
}
