package links

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzRoundTrip: whatever the name and secrets, every protocol's link parses
// back to the Link it was built from.
func FuzzRoundTrip(f *testing.F) {
	f.Add("de-1 main", "pass", "/ws")
	f.Add("a:b@c/d?e#f%20", "x:y@z#%", "/p?ed=2048&x=y")
	f.Add("Ünï 🚀\n\"'", "+/=", "")
	f.Fuzz(func(t *testing.T, name, secret, path string) {
		if !utf8.ValidString(name) || !utf8.ValidString(secret) || !utf8.ValidString(path) {
			t.Skip("vmess carries these in JSON, which is UTF-8")
		}
		for _, l := range []Link{
			{Protocol: VLESS, Name: name, Host: "2001:db8::1", Port: 443, UUID: secret, Flow: "xtls-rprx-vision", Security: "reality",
				SNI: "a.example", Fingerprint: "chrome", PublicKey: "pk", ShortID: "ab", Network: "tcp"},
			{Protocol: VLESS, Name: name, Host: "h.example", Port: 8443, UUID: "u", Security: "tls", SNI: "s", ALPN: []string{"h2", "http/1.1"},
				Fingerprint: "chrome", Insecure: true, Network: "ws", Path: path, HostHeader: "cdn.example"},
			{Protocol: VMess, Name: name, Host: "h.example", Port: 1, UUID: secret, Security: "tls", SNI: "s", Network: "grpc", ServiceName: path},
			{Protocol: Trojan, Name: name, Host: "h.example", Port: 2, Password: secret, Network: "tcp"},
			{Protocol: Shadowsocks, Name: name, Host: "192.0.2.1", Port: 3, Method: "2022-blake3-aes-256-gcm", Password: secret},
			{Protocol: Shadowsocks, Name: name, Host: "192.0.2.1", Port: 4, Method: "aes-128-gcm", Password: secret},
			{Protocol: Hysteria2, Name: name, Host: "h.example", Port: 5, Password: secret, Security: "tls", Obfs: "salamander", ObfsPassword: secret},
			{Protocol: TUIC, Name: name, Host: "h.example", Port: 6, UUID: "u", Password: secret, Security: "tls",
				CongestionControl: "bbr", UDPRelayMode: "native", ALPN: []string{"h3"}},
		} {
			if (l.Protocol == VLESS && l.Network == "tcp" || l.Protocol == TUIC) && secret == "" {
				continue // an empty uuid is not a link anyone serves
			}
			got, err := Parse(l.String())
			if err != nil {
				t.Fatalf("%s: %v", l.String(), err)
			}
			if !reflect.DeepEqual(got, l) {
				t.Fatalf("%s:\n got %+v\nwant %+v", l.String(), got, l)
			}
		}
	})
}
