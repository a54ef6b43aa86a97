// Package sbconfig is the one model of sing-box configuration that the exporter
// (which reads and rewrites its node's server config), the controller (which
// stores what nodes report) and the subscription renderer (which turns it into
// client configs) share. It also fixes the JSON contract between a node and the
// controller: Registration, NodeUsers and User.
package sbconfig

import (
	"net"
	"strings"
)

// Inbound types the fleet manages users for.
const (
	TypeVLESS       = "vless"
	TypeVMess       = "vmess"
	TypeTrojan      = "trojan"
	TypeShadowsocks = "shadowsocks"
	TypeHysteria2   = "hysteria2"
	TypeTUIC        = "tuic"
)

// Inbound is what a client needs to know about one server inbound. It holds
// public parameters only: a REALITY private key or a certificate key never
// leaves the node, and per-user secrets come from Credentials.
type Inbound struct {
	Tag  string `json:"tag"`
	Type string `json:"type"`
	Port uint16 `json:"port"`
	// Network is the config's "network" ("tcp" or "udp"; empty: both),
	// which TCPProbeable needs: a Shadowsocks inbound may listen on UDP
	// alone.
	Network string `json:"network,omitempty"`

	// VLESS: flow every user of the inbound gets (xtls-rprx-vision with REALITY).
	Flow string `json:"flow,omitempty"`
	// Shadowsocks: method, and for 2022 multi-user inbounds the server PSK,
	// which clients prepend to their own key ("server:user"). Every user of the
	// inbound needs it, so it is shared rather than secret per user.
	Method    string `json:"method,omitempty"`
	ServerPSK string `json:"server_psk,omitempty"`

	TLS       *TLS       `json:"tls,omitempty"`
	Transport *Transport `json:"transport,omitempty"`

	// Hysteria2.
	Obfs     *Obfs `json:"obfs,omitempty"`
	UpMbps   int   `json:"up_mbps,omitempty"`
	DownMbps int   `json:"down_mbps,omitempty"`

	// TUIC.
	CongestionControl string `json:"congestion_control,omitempty"`
}

// TCPProbeable reports whether the inbound accepts TCP connections, so
// that a TCP connect (blackbox's tcp_connect, the agent's check after a
// reload) says whether it is up: Hysteria2 and TUIC run over QUIC, which is
// UDP, and an inbound with network "udp" listens on UDP alone.
func (in Inbound) TCPProbeable() bool {
	return in.Port != 0 && in.Type != TypeHysteria2 && in.Type != TypeTUIC && in.Network != "udp"
}

// TLS is the client-visible side of an inbound's TLS settings.
type TLS struct {
	ServerName string   `json:"server_name,omitempty"`
	ALPN       []string `json:"alpn,omitempty"`
	// Insecure tells clients to skip certificate verification: for
	// self-signed demo certificates only, set by the operator.
	Insecure bool     `json:"insecure,omitempty"`
	Reality  *Reality `json:"reality,omitempty"`
}

// LabelTLSInsecure is the node label by which an operator marks a node's
// certificates as ones clients cannot verify (self-signed): "true" for
// every TLS inbound of the node, or a comma-separated list of inbound tags.
// Subscriptions then set insecure (skip-cert-verify) for those inbounds;
// REALITY inbounds are never affected. Set it on the node with
// --node.label tls_insecure=true.
const LabelTLSInsecure = "tls_insecure"

// TLSInsecure reports whether a node's labels mark the inbound tagged tag
// as insecure.
func TLSInsecure(labels map[string]string, tag string) bool {
	v := strings.TrimSpace(labels[LabelTLSInsecure])
	if v == "" || strings.EqualFold(v, "false") {
		return false
	}
	if strings.EqualFold(v, "true") {
		return true
	}
	for t := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(t) == tag {
			return true
		}
	}
	return false
}

// ValidHost reports whether s is what a node may give as the address
// clients dial: an IP address (IPv6 without brackets) or an ASCII host name
// (internationalized names in their xn-- form), with nothing that would
// add parts to a URL or a config (user info, port, path, query, spaces).
func ValidHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Reality carries the public half of a REALITY key pair and the short IDs the
// server accepts.
type Reality struct {
	PublicKey string   `json:"public_key"`
	ShortIDs  []string `json:"short_ids,omitempty"`
}

// Transport is a V2Ray transport (ws, grpc, http, httpupgrade).
type Transport struct {
	Type        string `json:"type"`
	Path        string `json:"path,omitempty"`
	Host        string `json:"host,omitempty"`
	ServiceName string `json:"service_name,omitempty"`
}

// Obfs is Hysteria2's salamander obfuscation.
type Obfs struct {
	Type     string `json:"type"`
	Password string `json:"password"`
}

// Credentials are one user's secrets, generated by the controller. Each
// inbound type takes what it needs: VLESS/VMess the UUID, Trojan/Hysteria2 the
// password, TUIC both, Shadowsocks 2022 the key whose length its method wants.
type Credentials struct {
	UUID     string `json:"uuid"`
	Password string `json:"password"`
	SSKey16  string `json:"ss_key_16"` // base64 of 16 bytes: 2022-blake3-aes-128-gcm
	SSKey32  string `json:"ss_key_32"` // base64 of 32 bytes: 2022-blake3-aes-256-gcm, 2022-blake3-chacha20-poly1305
}

// User is one entry of a node's desired user set.
type User struct {
	Name string `json:"name"`
	Credentials
}

// NodeUsers is the body of GET /api/v1/nodes/{name}/users: the users a node
// must serve. Revision grows with every change of the fleet's user set; the
// response's ETag is a hash of Users, so an unchanged set answers 304.
type NodeUsers struct {
	Revision int64  `json:"revision"`
	Users    []User `json:"users"`
}

// Registration is the body of PUT /api/v1/nodes/{name}: what a node's
// exporter reports about itself.
type Registration struct {
	// Address is the public host clients dial.
	Address string `json:"address"`
	// Exporter is the host:port Prometheus scrapes (HTTP service discovery).
	Exporter string            `json:"exporter"`
	Labels   map[string]string `json:"labels,omitempty"`
	Inbounds []Inbound         `json:"inbounds"`
	Version  string            `json:"version,omitempty"` // sing-box version
}
