package subscribe

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The subscription page speaks the admin UI's languages: one message file
// per language in locales/, English the fallback for a key a file lacks
// (a test keeps them complete).
//
//go:embed locales/*.json
var localeFiles embed.FS

// Langs are the page's languages, in the order the picker shows them.
var Langs = []string{"en", "zh-CN", "ru", "fa"}

// rtl are the languages written right to left.
var rtl = map[string]bool{"fa": true}

// messages holds every language's messages, by language and key.
var messages = loadMessages()

func loadMessages() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, l := range Langs {
		b, err := localeFiles.ReadFile("locales/" + l + ".json")
		if err != nil {
			panic(err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			panic(fmt.Sprintf("locales/%s.json: %v", l, err))
		}
		out[l] = m
	}
	return out
}

// Messages returns lang's messages (tests check their keys).
func Messages(lang string) map[string]string { return messages[lang] }

// tr is one language's messages with English under them.
type tr struct {
	lang string
	m    map[string]string
}

func translator(lang string) tr {
	if _, ok := messages[lang]; !ok {
		lang = "en"
	}
	return tr{lang: lang, m: messages[lang]}
}

// T returns the message for key with {name} placeholders filled from
// pairs of name, value.
func (t tr) T(key string, pairs ...string) string {
	s, ok := t.m[key]
	if !ok {
		s = messages["en"][key]
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		if rtl[t.lang] {
			// Isolated, so that "11.0 GiB" or a date keeps its own order
			// inside right-to-left text instead of being reordered by it.
			v = "\u2068" + v + "\u2069"
		}
		s = strings.ReplaceAll(s, "{"+pairs[i]+"}", v)
	}
	return s
}

// matchLang maps a language tag to one of Langs: exact (case-insensitive),
// then by its primary subtag (zh-TW and zh-Hans read zh-CN, ru-RU reads
// ru); "" when none fits.
func matchLang(tag string) string {
	tag = strings.TrimSpace(tag)
	for _, l := range Langs {
		if strings.EqualFold(tag, l) {
			return l
		}
	}
	primary, _, _ := strings.Cut(tag, "-")
	primary, _, _ = strings.Cut(primary, "_")
	for _, l := range Langs {
		p, _, _ := strings.Cut(l, "-")
		if strings.EqualFold(primary, p) {
			return l
		}
	}
	return ""
}

// ChooseLang picks the page's language: ?lang= wins, then the first
// language of Accept-Language (by q-value) the page has, then English.
func ChooseLang(req *http.Request) string {
	if l := matchLang(req.URL.Query().Get("lang")); l != "" {
		return l
	}
	type choice struct {
		lang string
		q    float64
		pos  int
	}
	var cs []choice
	for i, part := range strings.Split(req.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(part, ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if l := matchLang(tag); l != "" && q > 0 {
			cs = append(cs, choice{l, q, i})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].q > cs[j].q })
	if len(cs) > 0 {
		return cs[0].lang
	}
	return "en"
}
