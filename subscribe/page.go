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

// page is what the browser template (page.html) sees.
type page struct {
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

func newPage(p *Profile) *page {
	used := p.Upload + p.Download
	pg := &page{
		Title:      profileTitle(p),
		User:       p.User,
		Status:     p.Status,
		Reason:     p.Reason(),
		Used:       humanBytes(used),
		SubURL:     p.SubURL,
		WebPageURL: p.WebPageURL,
		SupportURL: p.SupportURL,
	}
	if pg.Status == "" {
		pg.Status = StatusActive
	}
	if p.Total > 0 {
		pg.Limit = humanBytes(p.Total)
		pg.Percent = int(min(100, max(0, used*100/p.Total)))
	}
	if !p.Expire.IsZero() {
		pg.Expire = p.Expire.UTC().Format("2006-01-02 15:04 UTC")
		pg.DaysLeft = max(0, int(time.Until(p.Expire).Hours()/24))
	}
	if p.SubURL != "" {
		pg.SubQR = qrSVG(p.SubURL)
		pg.Imports = importButtons(p.SubURL, pg.Title)
	}
	p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
		l := e.link(c)
		uri := l.String()
		pg.Links = append(pg.Links, shareLink{Name: e.name(), URI: uri})
	})
	return pg
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
