package links

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/boxfleet/boxfleet/subscribe/internal/esc"
)

// query appends URI query parameters; the first one gets '?', the rest '&'.
type query struct {
	b   []byte
	any bool
}

func (q *query) add(key, value string) {
	if value == "" {
		return
	}
	if q.any {
		q.b = append(q.b, '&')
	} else {
		q.b = append(q.b, '?')
		q.any = true
	}
	q.b = append(q.b, key...)
	q.b = append(q.b, '=')
	q.b = AppendEscaped(q.b, value)
}

func (q *query) flag(key string, on bool) {
	if on {
		q.add(key, "1")
	}
}

// AppendEscaped percent-encodes s the way every link component is: only
// ASCII letters, digits and "-._~" stay as they are.
func AppendEscaped(dst []byte, s string) []byte { return esc.URI(dst, s) }

// appendAuthority writes host:port, bracketing IPv6 literals.
func appendAuthority(dst []byte, host string, port uint16) []byte {
	if strings.IndexByte(host, ':') >= 0 {
		dst = append(dst, '[')
		dst = append(dst, host...)
		dst = append(dst, ']')
	} else {
		dst = append(dst, host...)
	}
	dst = append(dst, ':')
	return strconv.AppendUint(dst, uint64(port), 10)
}

func appendFragment(dst []byte, name string) []byte {
	if name == "" {
		return dst
	}
	dst = append(dst, '#')
	return AppendEscaped(dst, name)
}

// appendStream writes the TLS and transport parameters vless and trojan
// share, in the order v2rayN and the share-link conventions use.
func appendStream(q *query, l *Link) {
	q.add("security", l.Security)
	q.add("sni", l.SNI)
	q.add("fp", l.Fingerprint)
	q.add("pbk", l.PublicKey)
	q.add("sid", l.ShortID)
	q.add("alpn", strings.Join(l.ALPN, ","))
	q.flag("allowInsecure", l.Insecure)
	q.add("type", l.Network)
	q.add("host", l.HostHeader)
	q.add("path", l.Path)
	q.add("serviceName", l.ServiceName)
	if l.Network == "grpc" {
		q.add("mode", "gun")
	}
}

func appendVLESS(dst []byte, l *Link) []byte {
	dst = append(dst, "vless://"...)
	dst = AppendEscaped(dst, l.UUID)
	dst = append(dst, '@')
	dst = appendAuthority(dst, l.Host, l.Port)
	q := query{b: dst}
	q.add("encryption", "none")
	q.add("flow", l.Flow)
	appendStream(&q, l)
	return appendFragment(q.b, l.Name)
}

func appendTrojan(dst []byte, l *Link) []byte {
	dst = append(dst, "trojan://"...)
	dst = AppendEscaped(dst, l.Password)
	dst = append(dst, '@')
	dst = appendAuthority(dst, l.Host, l.Port)
	q := query{b: dst}
	appendStream(&q, l)
	return appendFragment(q.b, l.Name)
}

// appendShadowsocks follows SIP002: 2022 methods put method and password
// percent-encoded in the userinfo (SIP022 forbids base64 there); older
// methods use URL-safe base64 of "method:password".
func appendShadowsocks(dst []byte, l *Link) []byte {
	dst = append(dst, "ss://"...)
	if strings.HasPrefix(l.Method, "2022-") {
		dst = AppendEscaped(dst, l.Method)
		dst = append(dst, ':')
		dst = AppendEscaped(dst, l.Password)
	} else {
		plain := l.Method + ":" + l.Password
		dst = base64.RawURLEncoding.AppendEncode(dst, []byte(plain))
	}
	dst = append(dst, '@')
	dst = appendAuthority(dst, l.Host, l.Port)
	return appendFragment(dst, l.Name)
}

func appendHysteria2(dst []byte, l *Link) []byte {
	dst = append(dst, "hysteria2://"...)
	dst = AppendEscaped(dst, l.Password)
	dst = append(dst, '@')
	dst = appendAuthority(dst, l.Host, l.Port)
	dst = append(dst, '/')
	q := query{b: dst}
	q.add("sni", l.SNI)
	q.add("obfs", l.Obfs)
	q.add("obfs-password", l.ObfsPassword)
	q.flag("insecure", l.Insecure)
	return appendFragment(q.b, l.Name)
}

// appendTUIC keeps the colon between uuid and password literal: mihomo reads
// an escaped one as a single TUIC v4 token.
func appendTUIC(dst []byte, l *Link) []byte {
	dst = append(dst, "tuic://"...)
	dst = AppendEscaped(dst, l.UUID)
	dst = append(dst, ':')
	dst = AppendEscaped(dst, l.Password)
	dst = append(dst, '@')
	dst = appendAuthority(dst, l.Host, l.Port)
	q := query{b: dst}
	q.add("congestion_control", l.CongestionControl)
	q.add("udp_relay_mode", l.UDPRelayMode)
	q.add("alpn", strings.Join(l.ALPN, ","))
	q.add("sni", l.SNI)
	q.flag("allow_insecure", l.Insecure)
	return appendFragment(q.b, l.Name)
}

// appendVMess writes v2rayN's "version 2" JSON, base64-encoded. Numbers are
// written as strings, as v2rayN does; importers accept both.
func appendVMess(dst []byte, l *Link) []byte {
	var arr [512]byte
	j := arr[:0]
	j = append(j, `{"v":"2","ps":`...)
	j = esc.JSON(j, l.Name)
	j = append(j, `,"add":`...)
	j = esc.JSON(j, l.Host)
	j = append(j, `,"port":"`...)
	j = strconv.AppendUint(j, uint64(l.Port), 10)
	j = append(j, `","id":`...)
	j = esc.JSON(j, l.UUID)
	j = append(j, `,"aid":"0","scy":"auto","net":`...)
	j = esc.JSON(j, l.Network)
	typ, path := "none", l.Path
	if l.Network == "grpc" {
		typ, path = "gun", l.ServiceName
	}
	j = append(j, `,"type":`...)
	j = esc.JSON(j, typ)
	j = append(j, `,"host":`...)
	j = esc.JSON(j, l.HostHeader)
	j = append(j, `,"path":`...)
	j = esc.JSON(j, path)
	j = append(j, `,"tls":`...)
	j = esc.JSON(j, l.Security)
	j = append(j, `,"sni":`...)
	j = esc.JSON(j, l.SNI)
	j = append(j, `,"alpn":`...)
	j = esc.JSON(j, strings.Join(l.ALPN, ","))
	j = append(j, `,"fp":`...)
	j = esc.JSON(j, l.Fingerprint)
	if l.Insecure {
		j = append(j, `,"insecure":"1"`...)
	}
	j = append(j, '}')
	dst = append(dst, "vmess://"...)
	return base64.StdEncoding.AppendEncode(dst, j)
}
