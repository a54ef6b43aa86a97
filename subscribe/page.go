package subscribe

import (
	"encoding/base64"
	htmltemplate "html/template"
	"strconv"
	"time"

	"rsc.io/qr"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/internal/esc"
)

// page is what the browser template (page.html) sees. Texts are in the
// page's language; Status stays the API's word, for templates that style
// by it.
type page struct {
	tr
	Lang, Dir                   string // Dir: "rtl" for right-to-left languages, else "ltr"
	Langs                       []langLink
	StatusText                  string
	UsedText, ExpireText        string
	Title, User, Status, Reason string
	Used, Limit                 string // human-readable bytes; Limit "" when unlimited
	Percent                     int    // used share of the limit, 0..100
	Expire                      string // "" when the user never expires
	DaysLeft                    int
	SubURL                      string
	SubQR                       htmltemplate.HTML
	WebPageURL, SupportURL      string
	Imports                     []importButton
	Links                       []shareLink
}

// langLink is one entry of the language picker.
type langLink struct {
	Code, Name string
	Current    bool
}

// langNames are the languages as their speakers write them.
var langNames = map[string]string{"en": "English", "zh-CN": "简体中文", "ru": "Русский", "fa": "فارسی"}

type importButton struct {
	Client string
	Href   htmltemplate.URL
	QR     htmltemplate.HTML // the same deep link, for a phone's camera
}

// shareLink has no QR code: a QR code per server made a 150-server page
// weigh 1.7 MB and take 25 ms; the subscription's own QR code imports them all.
type shareLink struct {
	Name, URI string
}

var pageFuncs = htmltemplate.FuncMap{}

func newPage(p *Profile, lang string) *page {
	used := p.Upload + p.Download
	t := translator(lang)
	pg := &page{
		tr:         t,
		Lang:       t.lang,
		Dir:        "ltr",
		Title:      pageTitle(p),
		User:       p.User,
		Status:     p.Status,
		Reason:     p.Reason(),
		Used:       humanBytes(used),
		SubURL:     p.SubURL,
		WebPageURL: p.WebPageURL,
		SupportURL: p.SupportURL,
	}
	if rtl[t.lang] {
		pg.Dir = "rtl"
	}
	for _, l := range Langs {
		pg.Langs = append(pg.Langs, langLink{Code: l, Name: langNames[l], Current: l == t.lang})
	}
	if pg.Status == "" {
		pg.Status = StatusActive
	}
	pg.StatusText = t.T("status_" + pg.Status)
	if pg.StatusText == "" {
		pg.StatusText = pg.Status
	}
	pg.Reason = t.T(reasonKey(p))
	if p.Total > 0 {
		pg.Limit = humanBytes(p.Total)
		pg.Percent = int(min(100, max(0, used*100/p.Total)))
		pg.UsedText = t.T("used_of", "used", pg.Used, "limit", pg.Limit)
	} else {
		pg.UsedText = t.T("used_unlimited", "used", pg.Used)
	}
	pg.ExpireText = t.T("never_expires")
	if !p.Expire.IsZero() {
		pg.Expire = p.Expire.UTC().Format("2006-01-02 15:04 UTC")
		pg.DaysLeft = max(0, int(time.Until(p.Expire).Hours()/24))
		pg.ExpireText = t.T("expires", "date", pg.Expire, "days", strconv.Itoa(pg.DaysLeft))
	}
	if p.SubURL != "" {
		pg.SubQR = qrSVG(p.SubURL)
		// The name the app gives the profile: as the headers say it.
		pg.Imports = importButtons(p.SubURL, profileTitle(p))
	}
	p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
		l := e.link(c)
		uri := l.String()
		pg.Links = append(pg.Links, shareLink{Name: e.name(), URI: uri})
	})
	return pg
}

// pageTitle heads the page: the profile's title without the reason, which
// the page shows in its own language beside it.
func pageTitle(p *Profile) string {
	if p.Title != "" {
		return p.Title
	}
	return p.User
}

// reasonKey is the message key of p.Reason(), "" when there is none.
func reasonKey(p *Profile) string {
	switch p.Reason() {
	case "":
		return ""
	case "Subscription disabled":
		return "reason_disabled"
	case "Traffic limit reached":
		return "reason_limited"
	case "Subscription expired":
		return "reason_expired"
	case "No servers available":
		return "reason_no_servers"
	}
	return "reason_inactive"
}

// importButtons are the deep links that make each client add the
// subscription by itself. The client then fetches the subscription URL with
// its own User-Agent and gets its own format.
func importButtons(sub, title string) []importButton {
	u := string(esc.URI(nil, sub))
	t := string(esc.URI(nil, title))
	buttons := []importButton{
		{Client: "sing-box (SFA, SFI, SFM)", Href: htmltemplate.URL("sing-box://import-remote-profile?url=" + u + "#" + t)},
		{Client: "Clash Verge, FlClash, mihomo", Href: htmltemplate.URL("clash://install-config?url=" + u + "&name=" + t)},
		{Client: "Hiddify", Href: htmltemplate.URL("hiddify://import/" + sub + "#" + t)},
		{Client: "Karing", Href: htmltemplate.URL("karing://install-config?url=" + u + "&name=" + t)},
		{Client: "v2rayNG", Href: htmltemplate.URL("v2rayng://install-config?url=" + u + "#" + t)},
		{Client: "Streisand", Href: htmltemplate.URL("streisand://import/" + sub + "#" + t)},
		{Client: "Shadowrocket", Href: htmltemplate.URL("sub://" + base64.URLEncoding.EncodeToString([]byte(sub)) + "#" + t)},
		{Client: "Happ", Href: htmltemplate.URL("happ://add/" + sub)},
	}
	for i := range buttons {
		buttons[i].QR = qrSVG(string(buttons[i].Href))
	}
	return buttons
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + "KMGTPE"[exp:exp+1] + "iB"
}

// qrSVG draws text as a QR code in inline SVG: one path of horizontal runs
// of dark modules, with the four-module quiet zone scanners need. Text too
// long for a QR code yields no image rather than a failed page.
func qrSVG(text string) htmltemplate.HTML {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		if code, err = qr.Encode(text, qr.L); err != nil {
			return ""
		}
	}
	const quiet = 4
	n := code.Size + 2*quiet
	b := make([]byte, 0, 64+code.Size*code.Size*3)
	b = append(b, `<svg xmlns="http://www.w3.org/2000/svg" class="qr" viewBox="0 0 `...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="#fff"/><path fill="#000" d="`...)
	for y := 0; y < code.Size; y++ {
		for x := 0; x < code.Size; {
			if !code.Black(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < code.Size && code.Black(x+run, y) {
				run++
			}
			b = append(b, 'M')
			b = strconv.AppendInt(b, int64(x+quiet), 10)
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(y+quiet), 10)
			b = append(b, 'h')
			b = strconv.AppendInt(b, int64(run), 10)
			b = append(b, "v1h-"...)
			b = strconv.AppendInt(b, int64(run), 10)
			b = append(b, 'z')
			x += run
		}
	}
	b = append(b, `"/></svg>`...)
	return htmltemplate.HTML(b)
}
