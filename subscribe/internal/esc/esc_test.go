package esc

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

var seeds = []string{
	"", "plain", `q"u\o`, "nl\nx", "tab\tx", "yes", "~", "null", "- a", "a: b", "#c", "%41", "&*!|>'{}[],?",
	"日本🚀", "\u2028\u2029\ufeff\u0085", "\x00\x1f\x7f", "bad\xff\xfe", "\xed\xa0\x80", "\uffff\ufffe",
}

// Every string survives a trip through a YAML parser as the same string
// (invalid UTF-8 as U+FFFD), as a mapping value and as a flow-list item.
func FuzzYAML(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		doc := "k: " + string(YAML(nil, s)) + "\nl: [" + string(YAML(nil, s)) + ", x]\n"
		var got struct {
			K string   `yaml:"k"`
			L []string `yaml:"l"`
		}
		if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, doc)
		}
		want := valid(s)
		if got.K != want || len(got.L) != 2 || got.L[0] != want {
			t.Fatalf("%q read back as %q / %q", s, got.K, got.L)
		}
	})
}

func FuzzJSON(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		if err := json.Unmarshal(JSON(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if want := valid(s); got != want {
			t.Fatalf("%q read back as %q", s, got)
		}
	})
}

func FuzzURI(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := string(URI(nil, s))
		for i := 0; i < len(e); i++ {
			if !Unreserved(e[i]) && e[i] != '%' {
				t.Fatalf("%q escaped to %q, which keeps %q", s, e, e[i])
			}
		}
		got, err := url.PathUnescape(e)
		if err != nil || got != s {
			t.Fatalf("%q: unescaped to %q, %v", s, got, err)
		}
	})
}

// valid is s with each invalid UTF-8 byte replaced by U+FFFD, as the
// escapers (and encoding/json) do.
func valid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}
