package subscribe

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMessagesComplete: every language has every key English has, and no
// key English lacks; placeholders survive translation.
func TestMessagesComplete(t *testing.T) {
	en := Messages("en")
	if len(en) < 10 {
		t.Fatalf("English has %d messages", len(en))
	}
	ph := regexp.MustCompile(`\{\w+\}`)
	for _, l := range Langs {
		m := Messages(l)
		for k, v := range en {
			got, ok := m[k]
			if !ok || got == "" {
				t.Errorf("%s lacks %q", l, k)
				continue
			}
			want := ph.FindAllString(v, -1)
			have := ph.FindAllString(got, -1)
			slices.Sort(want)
			slices.Sort(have)
			if !slices.Equal(want, have) {
				t.Errorf("%s %q has placeholders %v, English %v", l, k, have, want)
			}
		}
		for k := range m {
			if _, ok := en[k]; !ok {
				t.Errorf("%s has %q, which English lacks", l, k)
			}
		}
	}
}

func TestChooseLang(t *testing.T) {
	for _, c := range []struct{ query, accept, want string }{
		{"", "", "en"},
		{"", "ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"},
		{"", "zh-TW,zh;q=0.9", "zh-CN"},
		{"", "de-DE,de;q=0.9,fa;q=0.5", "fa"},
		{"", "en;q=0.3, fa-IR;q=0.8", "fa"},
		{"", "fa;q=0, ru;q=0.1", "ru"},
		{"", "de", "en"},
		{"lang=zh-cn", "ru", "zh-CN"},
		{"lang=fa", "ru", "fa"},
		{"lang=xx", "ru", "ru"},
	} {
		req := httptest.NewRequest(http.MethodGet, "/sub/x?"+c.query, nil)
		req.Header.Set("Accept-Language", c.accept)
		if got := ChooseLang(req); got != c.want {
			t.Errorf("?%s, Accept-Language %q: %s, want %s", c.query, c.accept, got, c.want)
		}
	}
}

// TestPageLanguages renders the page in each language: the html element
// says the language and direction, texts come from its file, and every
// status and reason the page can show has its own message.
func TestPageLanguages(t *testing.T) {
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range Langs {
		for _, status := range []string{StatusActive, StatusDisabled, StatusLimited, StatusExpired, StatusOnHold} {
			p := sampleProfile()
			p.Status, p.Total, p.Upload, p.Expire, p.SubURL = status, 10<<30, 1<<30, time.Now().Add(49*time.Hour), "https://ctl.example/sub/tok"
			var b bytes.Buffer
			if err := r.Render(&b, Client{Format: FormatHTML, Lang: lang}, p); err != nil {
				t.Fatal(err)
			}
			page := b.String()
			dir := "ltr"
			if lang == "fa" {
				dir = "rtl"
			}
			m := Messages(lang)
			used, limit := "1.0 GiB", "10.0 GiB"
			if dir == "rtl" {
				// Values are isolated from the text around them.
				used, limit = "\u2068"+used+"\u2069", "\u2068"+limit+"\u2069"
			}
			for _, want := range []string{`<html lang="` + lang + `" dir="` + dir + `">`, m["servers"], m["add_to_app"], m["status_"+status],
				strings.ReplaceAll(strings.ReplaceAll(m["used_of"], "{used}", used), "{limit}", limit)} {
				if !strings.Contains(page, want) {
					t.Errorf("%s page (%s) lacks %q", lang, status, want)
				}
			}
			if k := reasonKey(p); status != StatusActive && status != StatusOnHold && (k == "" || k == "reason_inactive" || !strings.Contains(page, m[k])) {
				t.Errorf("%s page (%s): reason key %q not shown", lang, status, k)
			}
			if lang != "en" && strings.Contains(page, ">Servers<") {
				t.Errorf("%s page shows English headings", lang)
			}
		}
	}
}

// TestPageFollowsAcceptLanguage serves the page as a browser asks for it.
func TestPageFollowsAcceptLanguage(t *testing.T) {
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/sub/x", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Accept-Language", "fa-IR,fa;q=0.9,en;q=0.5")
	w := httptest.NewRecorder()
	r.Serve(w, req, sampleProfile())
	if !strings.Contains(w.Body.String(), `dir="rtl"`) || !strings.Contains(w.Body.String(), Messages("fa")["servers"]) {
		t.Errorf("Persian browser got: %.300s", w.Body.String())
	}
	if w.Header().Get("Vary") != "Accept-Language" {
		t.Errorf("Vary %q", w.Header().Get("Vary"))
	}
}
