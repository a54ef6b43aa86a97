// Package links builds and parses the share-link URIs that proxy clients
// import one node at a time: vless://, vmess:// (v2rayN's base64 JSON),
// trojan://, ss:// (SIP002, with the SIP022 rule that 2022 methods are never
// base64-encoded), hysteria2:// and tuic:// (v5, uuid:password).
//
// Append and Parse are inverses on a normalised Link: every field Append
// writes, Parse reads back to the same value, so a subscription can be checked
// by parsing what it served.
//
// Escaping follows the encodeURIComponent convention the share-link
// conventions ask for, a little stricter: everything but ASCII letters,
// digits and "-._~" is percent-encoded, in userinfo, query values and the
// fragment alike. In userinfo that includes ':', because Go-based importers
// (mihomo) otherwise split a password at its first colon. The one literal
// colon is TUIC's uuid:password separator, which importers require.
package links

// Protocol names are sing-box outbound types, so a Link and an sbconfig
// inbound name protocols the same way.
const (
	VLESS       = "vless"
	VMess       = "vmess"
	Trojan      = "trojan"
	Shadowsocks = "shadowsocks"
	Hysteria2   = "hysteria2"
	TUIC        = "tuic"
)

// Link is one node inbound as a client sees it, with the parameters a share
// link can carry.
type Link struct {
	Protocol string
	Name     string // display name, the URI fragment (vmess: "ps")
	Host     string // IP or domain, without brackets
	Port     uint16

	UUID     string // vless, vmess, tuic
	Password string // trojan, shadowsocks ("iPSK:uPSK" for 2022 multi-user), hysteria2, tuic
	Method   string // shadowsocks cipher
	Flow     string // vless

	// Security is "", "tls" or "reality". Hysteria2 and TUIC always run TLS,
	// and their links say so implicitly; Parse sets "tls" for them.
	Security    string
	SNI         string
	ALPN        []string
	Fingerprint string // uTLS client fingerprint
	Insecure    bool
	PublicKey   string // REALITY
	ShortID     string // REALITY

	// Network is the V2Ray transport: tcp, ws, grpc, http or httpupgrade.
	// Empty for shadowsocks, hysteria2 and tuic.
	Network     string
	Path        string
	HostHeader  string
	ServiceName string

	Obfs         string // hysteria2: salamander
	ObfsPassword string

	CongestionControl string // tuic
	UDPRelayMode      string // tuic: native or quic
}

// String returns the share link for l.
func (l *Link) String() string { return string(Append(nil, l)) }

// Append writes the share link for l to dst. Protocols it does not know
// write nothing.
func Append(dst []byte, l *Link) []byte {
	switch l.Protocol {
	case VLESS:
		return appendVLESS(dst, l)
	case VMess:
		return appendVMess(dst, l)
	case Trojan:
		return appendTrojan(dst, l)
	case Shadowsocks:
		return appendShadowsocks(dst, l)
	case Hysteria2:
		return appendHysteria2(dst, l)
	case TUIC:
		return appendTUIC(dst, l)
	}
	return dst
}
