package links

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Parse reads one share link. It accepts what Append writes and the common
// variants other panels emit (hy2:// scheme, base64 SIP002 userinfo with or
// without padding, numbers or strings in vmess JSON, the usual spellings of
// the insecure flag).
func Parse(s string) (Link, error) {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return Link{}, errors.New("links: not a URI")
	}
	switch strings.ToLower(scheme) {
	case "vmess":
		return parseVMess(s[len(scheme)+3:])
	case "ss":
		return parseShadowsocks(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return Link{}, fmt.Errorf("links: %w", err)
	}
	l, err := hostPort(u)
	if err != nil {
		return Link{}, err
	}
	q := u.Query()
	switch strings.ToLower(scheme) {
	case "vless":
		l.Protocol = VLESS
		l.UUID = u.User.Username()
		l.Flow = q.Get("flow")
		parseStream(&l, q)
	case "trojan":
		l.Protocol = Trojan
		l.Password = userinfo(u)
		parseStream(&l, q)
	case "hysteria2", "hy2":
		l.Protocol = Hysteria2
		l.Password = userinfo(u)
		l.Security = "tls"
		l.SNI = q.Get("sni")
		l.Obfs = q.Get("obfs")
		l.ObfsPassword = q.Get("obfs-password")
		l.Insecure = truthy(q.Get("insecure"))
	case "tuic":
		l.Protocol = TUIC
		l.UUID = u.User.Username()
		l.Password, _ = u.User.Password()
		l.Security = "tls"
		l.CongestionControl = q.Get("congestion_control")
		l.UDPRelayMode = q.Get("udp_relay_mode")
		l.ALPN = list(q.Get("alpn"))
		l.SNI = q.Get("sni")
		l.Insecure = truthy(q.Get("allow_insecure")) || truthy(q.Get("allowInsecure")) || truthy(q.Get("insecure"))
	default:
		return Link{}, fmt.Errorf("links: unknown scheme %q", scheme)
	}
	return l, nil
}

// userinfo is the whole decoded userinfo: url.Parse splits it at a literal
// colon, which some generators leave in trojan passwords and which hysteria2's
// userpass mode ("user:pass") puts there on purpose.
func userinfo(u *url.URL) string {
	if u.User == nil {
		return ""
	}
	if p, ok := u.User.Password(); ok {
		return u.User.Username() + ":" + p
	}
	return u.User.Username()
}

func hostPort(u *url.URL) (Link, error) {
	l := Link{Name: u.Fragment, Host: u.Hostname()}
	if l.Host == "" {
		return Link{}, errors.New("links: no host")
	}
	p := u.Port()
	if p == "" {
		l.Port = 443
		return l, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return Link{}, fmt.Errorf("links: bad port %q", p)
	}
	l.Port = uint16(n)
	return l, nil
}

func parseStream(l *Link, q url.Values) {
	l.Security = q.Get("security")
	if l.Security == "none" {
		l.Security = ""
	}
	l.SNI = q.Get("sni")
	l.Fingerprint = q.Get("fp")
	l.PublicKey = q.Get("pbk")
	l.ShortID = q.Get("sid")
	l.ALPN = list(q.Get("alpn"))
	l.Insecure = truthy(q.Get("allowInsecure")) || truthy(q.Get("insecure"))
	l.Network = q.Get("type")
	if l.Network == "" || l.Network == "raw" {
		l.Network = "tcp"
	}
	l.HostHeader = q.Get("host")
	l.Path = q.Get("path")
	l.ServiceName = q.Get("serviceName")
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func truthy(s string) bool { return s == "1" || strings.EqualFold(s, "true") }

// parseShadowsocks reads SIP002 links. url.Parse is not used for the
// userinfo because base64 in it may contain '/', '+' and '='.
func parseShadowsocks(s string) (Link, error) {
	rest := s[len("ss://"):]
	rest, name, _ := strings.Cut(rest, "#")
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i] // plugins are not part of the fleet's inbounds
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return Link{}, errors.New("links: ss link without userinfo")
	}
	u, err := url.Parse("ss://x@" + rest[at+1:])
	if err != nil {
		return Link{}, fmt.Errorf("links: %w", err)
	}
	l, err := hostPort(u)
	if err != nil {
		return Link{}, err
	}
	if l.Name, err = url.PathUnescape(name); err != nil {
		return Link{}, fmt.Errorf("links: name: %w", err)
	}
	l.Protocol = Shadowsocks
	user := rest[:at]
	if method, pass, ok := strings.Cut(user, ":"); ok {
		if l.Method, err = url.PathUnescape(method); err != nil {
			return Link{}, fmt.Errorf("links: method: %w", err)
		}
		if l.Password, err = url.PathUnescape(pass); err != nil {
			return Link{}, fmt.Errorf("links: password: %w", err)
		}
		return l, nil
	}
	plain, err := decodeBase64(user)
	if err != nil {
		return Link{}, fmt.Errorf("links: ss userinfo: %w", err)
	}
	method, pass, ok := strings.Cut(string(plain), ":")
	if !ok {
		return Link{}, errors.New("links: ss userinfo without method")
	}
	l.Method, l.Password = method, pass
	return l, nil
}

// decodeBase64 accepts standard or URL-safe base64, padded or not, and
// percent-encoded padding.
func decodeBase64(s string) ([]byte, error) {
	s, _ = url.PathUnescape(s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// flexString takes a JSON string or number: v2rayN writes port and aid as
// strings, other generators as numbers.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	*f = flexString(b)
	return nil
}

type vmessJSON struct {
	PS       string     `json:"ps"`
	Add      string     `json:"add"`
	Port     flexString `json:"port"`
	ID       string     `json:"id"`
	Net      string     `json:"net"`
	Type     string     `json:"type"`
	Host     string     `json:"host"`
	Path     string     `json:"path"`
	TLS      string     `json:"tls"`
	SNI      string     `json:"sni"`
	ALPN     string     `json:"alpn"`
	FP       string     `json:"fp"`
	Insecure flexString `json:"insecure"`
}

func parseVMess(payload string) (Link, error) {
	raw, err := decodeBase64(payload)
	if err != nil {
		return Link{}, fmt.Errorf("links: vmess base64: %w", err)
	}
	var v vmessJSON
	if err := json.Unmarshal(raw, &v); err != nil {
		return Link{}, fmt.Errorf("links: vmess json: %w", err)
	}
	port, err := strconv.ParseUint(string(v.Port), 10, 16)
	if err != nil || port == 0 {
		return Link{}, fmt.Errorf("links: vmess port %q", v.Port)
	}
	l := Link{
		Protocol: VMess, Name: v.PS, Host: v.Add, Port: uint16(port), UUID: v.ID,
		Network: v.Net, HostHeader: v.Host, Path: v.Path,
		Security: v.TLS, SNI: v.SNI, ALPN: list(v.ALPN), Fingerprint: v.FP,
		Insecure: truthy(string(v.Insecure)),
	}
	if l.Security == "none" {
		l.Security = ""
	}
	if l.Network == "" {
		l.Network = "tcp"
	}
	if l.Network == "grpc" {
		l.ServiceName, l.Path = v.Path, ""
	}
	return l, nil
}
