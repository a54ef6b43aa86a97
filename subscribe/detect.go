package subscribe

import (
	"strconv"
	"strings"
)

// Format is a kind of subscription body.
type Format int

const (
	// FormatBase64 is share links, one a line, base64-encoded: what every
	// v2ray-family client and unknown client imports.
	FormatBase64 Format = iota
	// FormatLinks is the same links as plain text.
	FormatLinks
	// FormatSingBox is a complete sing-box client profile (JSON).
	FormatSingBox
	// FormatMihomo is a complete mihomo (Clash Meta) profile (YAML).
	FormatMihomo
	// FormatHTML is the page a browser gets.
	FormatHTML
)

var formatNames = [...]string{"base64", "links", "sing-box", "mihomo", "html"}

func (f Format) String() string { return formatNames[f] }

// ParseFormat reads a ?format= value. It accepts the names String returns
// and the aliases other panels use (singbox, clash, clash-meta, v2ray, plain).
func ParseFormat(s string) (Format, bool) {
	switch strings.ToLower(s) {
	case "base64", "v2ray", "b64":
		return FormatBase64, true
	case "links", "plain", "text":
		return FormatLinks, true
	case "sing-box", "singbox", "sing_box":
		return FormatSingBox, true
	case "mihomo", "clash", "clash-meta", "clashmeta", "meta", "stash":
		return FormatMihomo, true
	case "html", "page":
		return FormatHTML, true
	}
	return 0, false
}

// Version is a sing-box major.minor version.
type Version struct{ Major, Minor int }

// Supported sing-box client profile shapes. Older clients get the 1.11 shape
// (the oldest with rule actions); newer ones the newest shape, since sing-box
// keeps accepting it until a field is removed.
var (
	Version111 = Version{1, 11}
	Version112 = Version{1, 12}
	Version113 = Version{1, 13}
	// DefaultSingBox is what a sing-box client that does not say its version
	// gets: the current stable line.
	DefaultSingBox = Version113
)

// AtLeast reports whether v is minor or newer (within major 1).
func (v Version) AtLeast(minor int) bool { return v.Major > 1 || v.Major == 1 && v.Minor >= minor }

func (v Version) String() string {
	return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor)
}

// profileVersion clamps v to the shapes this package writes.
func profileVersion(v Version) Version {
	switch {
	case v == Version{}:
		return DefaultSingBox
	case !v.AtLeast(12):
		return Version111
	case !v.AtLeast(13):
		return Version112
	}
	return Version113
}

// Client is what a request's User-Agent says about its client.
type Client struct {
	Name    string // the table entry that matched, "" when none did
	Format  Format
	SingBox Version // FormatSingBox only; zero when the UA does not say
	Lang    string  // FormatHTML only: the page's language (ChooseLang); "" is English
}

// uaRule maps a User-Agent prefix (compared case-insensitively) to a format.
type uaRule struct {
	prefix string
	name   string
	format Format
}

// uaRules is searched in order and the first prefix that starts the
// User-Agent wins. Order matters where one prefix starts another
// (clash-verge before clash, v2rayng before v2rayn), and prefixes are
// anchored because some UAs name other clients later on (Hiddify's says
// "like ClashMeta v2ray sing-box").
var uaRules = []uaRule{
	// mihomo family: full mihomo YAML.
	{"clash-verge", "clash-verge", FormatMihomo},
	{"clash.meta", "mihomo", FormatMihomo},
	{"clash-meta", "mihomo", FormatMihomo},
	{"clashmeta", "ClashMeta", FormatMihomo}, // ClashMetaForAndroid
	{"mihomo", "mihomo", FormatMihomo},
	{"flclash", "FlClash", FormatMihomo},
	{"clash-nyanpasu", "clash-nyanpasu", FormatMihomo},
	{"stash", "Stash", FormatMihomo},
	// Legacy Clash cannot read vless/hysteria2/tuic entries and skips what it
	// does not know; mihomo YAML is the closest it reads.
	{"clash", "clash", FormatMihomo},
	// sing-box graphical clients: the core version follows "sing-box ".
	{"sfa/", "SFA", FormatSingBox},
	{"sfi/", "SFI", FormatSingBox},
	{"sfm/", "SFM", FormatSingBox},
	{"sft/", "SFT", FormatSingBox},
	{"sing-box", "sing-box", FormatSingBox},
	{"karing", "Karing", FormatSingBox},
	// Hiddify runs its own sing-box fork whose version its UA does not say,
	// and an unknown field makes sing-box reject a whole profile; links are
	// the format it always reads.
	{"hiddify", "Hiddify", FormatBase64},
	{"v2rayng", "v2rayNG", FormatBase64},
	{"v2rayn", "v2rayN", FormatBase64},
	{"shadowrocket", "Shadowrocket", FormatBase64},
	{"streisand", "Streisand", FormatBase64},
	{"happ", "Happ", FormatBase64},
	{"foxray", "FoXray", FormatBase64},
	{"v2box", "V2Box", FormatBase64},
	// Browsers.
	{"mozilla/", "browser", FormatHTML},
	{"opera/", "browser", FormatHTML},
}

// Detect classifies a User-Agent with uaRules. Unknown clients get base64
// links, the one format nearly every client imports.
func Detect(userAgent string) Client {
	for i := range uaRules {
		r := &uaRules[i]
		if !hasPrefixFold(userAgent, r.prefix) {
			continue
		}
		c := Client{Name: r.name, Format: r.format}
		if r.format == FormatSingBox {
			c.SingBox = singBoxVersion(userAgent)
		}
		return c
	}
	return Client{Format: FormatBase64}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// singBoxVersion reads the core version the sing-box clients put in their
// User-Agent: "SFA/1.11.4 (...; sing-box 1.11.4; ...)", "sing-box 1.12.0".
func singBoxVersion(ua string) Version {
	i := strings.Index(strings.ToLower(ua), "sing-box")
	if i < 0 {
		return Version{}
	}
	s := strings.TrimLeft(ua[i+len("sing-box"):], " /v")
	major, s, ok := number(s)
	if !ok || len(s) == 0 || s[0] != '.' {
		return Version{}
	}
	minor, _, ok := number(s[1:])
	if !ok {
		return Version{}
	}
	return Version{major, minor}
}

func number(s string) (int, string, bool) {
	n, i := 0, 0
	for ; i < len(s) && i < 6 && '0' <= s[i] && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n, s[i:], i > 0
}
