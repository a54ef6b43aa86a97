package subscribe

import (
	"strconv"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/internal/esc"
)

// mihomo ignores keys it does not know but fails on missing required ones
// (vmess alterId and cipher; both public-key and short-id in reality-opts),
// and leaves UDP off unless udp: true. Every value that comes from outside is
// written double-quoted, so no name or password can turn into YAML syntax.

// appendMihomoProxies writes the block sequence of proxies (indented two
// spaces, each line ending in a newline) and a flow-list body of their names.
func appendMihomoProxies(proxies, names []byte, p *Profile) ([]byte, []byte) {
	first := true
	p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
		if !first {
			names = append(names, ", "...)
		}
		first = false
		names = e.appendYAMLName(names)
		proxies = appendMihomoProxy(proxies, e, c)
	})
	return proxies, names
}

func yamlStr(b []byte, key, value string) []byte {
	b = append(b, "    "...)
	b = append(b, key...)
	b = append(b, ':', ' ')
	b = esc.YAML(b, value)
	return append(b, '\n')
}

// yamlRaw writes a value that is a constant of this package.
func yamlRaw(b []byte, key, value string) []byte {
	b = append(b, "    "...)
	b = append(b, key...)
	b = append(b, ':', ' ')
	b = append(b, value...)
	return append(b, '\n')
}

func yamlList(b []byte, key string, values []string) []byte {
	b = append(b, "    "...)
	b = append(b, key...)
	b = append(b, ": ["...)
	for i, v := range values {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = esc.YAML(b, v)
	}
	return append(b, "]\n"...)
}

var mihomoTypes = map[string]string{
	sbconfig.TypeVLESS:       "vless",
	sbconfig.TypeVMess:       "vmess",
	sbconfig.TypeTrojan:      "trojan",
	sbconfig.TypeShadowsocks: "ss",
	sbconfig.TypeHysteria2:   "hysteria2",
	sbconfig.TypeTUIC:        "tuic",
}

func appendMihomoProxy(b []byte, e *endpoint, c *sbconfig.Credentials) []byte {
	in := e.in
	b = append(b, "  - name: "...)
	b = e.appendYAMLName(b)
	b = append(b, '\n')
	b = yamlRaw(b, "type", mihomoTypes[in.Type])
	b = yamlStr(b, "server", e.node.Address)
	b = append(b, "    port: "...)
	b = strconv.AppendUint(b, uint64(in.Port), 10)
	b = append(b, '\n')
	b = yamlRaw(b, "udp", "true")
	switch in.Type {
	case sbconfig.TypeVLESS:
		b = yamlStr(b, "uuid", c.UUID)
		if in.Flow != "" && in.Transport == nil && in.TLS != nil {
			b = yamlStr(b, "flow", in.Flow)
		}
	case sbconfig.TypeVMess:
		b = yamlStr(b, "uuid", c.UUID)
		b = yamlRaw(b, "alterId", "0")
		b = yamlRaw(b, "cipher", "auto")
	case sbconfig.TypeTrojan:
		b = yamlStr(b, "password", c.Password)
	case sbconfig.TypeShadowsocks:
		b = yamlStr(b, "cipher", in.Method)
		b = yamlStr(b, "password", password(in, c))
		return b
	case sbconfig.TypeHysteria2:
		b = yamlStr(b, "password", c.Password)
		if o := in.Obfs; o != nil {
			b = yamlStr(b, "obfs", o.Type)
			b = yamlStr(b, "obfs-password", o.Password)
		}
	case sbconfig.TypeTUIC:
		b = yamlStr(b, "uuid", c.UUID)
		b = yamlStr(b, "password", c.Password)
		if in.CongestionControl != "" {
			b = yamlStr(b, "congestion-controller", in.CongestionControl)
		}
		b = yamlRaw(b, "udp-relay-mode", "native")
	}
	b = appendMihomoTLS(b, in)
	if t := in.Transport; t != nil && !quic(in.Type) {
		b = appendMihomoTransport(b, t)
	}
	return b
}

// appendMihomoTLS writes TLS keys. Trojan, hysteria2 and tuic name the SNI
// "sni"; vless and vmess "servername".
func appendMihomoTLS(b []byte, in *sbconfig.Inbound) []byte {
	t := in.TLS
	if quic(in.Type) {
		if t != nil && t.ServerName != "" {
			b = yamlStr(b, "sni", t.ServerName)
		}
		if t != nil && len(t.ALPN) > 0 {
			b = yamlList(b, "alpn", t.ALPN)
		} else {
			b = yamlRaw(b, "alpn", "[h3]")
		}
		if t != nil && t.Insecure {
			b = yamlRaw(b, "skip-cert-verify", "true")
		}
		return b
	}
	if t == nil {
		return b
	}
	if in.Type != sbconfig.TypeTrojan {
		b = yamlRaw(b, "tls", "true")
	}
	if t.ServerName != "" {
		key := "servername"
		if in.Type == sbconfig.TypeTrojan {
			key = "sni"
		}
		b = yamlStr(b, key, t.ServerName)
	}
	if len(t.ALPN) > 0 && t.Reality == nil {
		b = yamlList(b, "alpn", t.ALPN)
	}
	if t.Insecure {
		b = yamlRaw(b, "skip-cert-verify", "true")
	}
	b = yamlRaw(b, "client-fingerprint", "chrome")
	if r := t.Reality; r != nil {
		b = append(b, "    reality-opts:\n      public-key: "...)
		b = esc.YAML(b, r.PublicKey)
		b = append(b, "\n      short-id: "...)
		b = esc.YAML(b, firstShortID(r))
		b = append(b, '\n')
	}
	return b
}

// appendMihomoTransport maps V2Ray transports onto mihomo's network names:
// sing-box "http" is mihomo "h2", and httpupgrade is ws with a flag.
func appendMihomoTransport(b []byte, t *sbconfig.Transport) []byte {
	switch t.Type {
	case "ws", "httpupgrade":
		b = yamlRaw(b, "network", "ws")
		path := t.Path
		if path == "" {
			path = "/"
		}
		b = append(b, "    ws-opts:\n      path: "...)
		b = esc.YAML(b, path)
		b = append(b, '\n')
		if t.Host != "" {
			b = append(b, "      headers:\n        Host: "...)
			b = esc.YAML(b, t.Host)
			b = append(b, '\n')
		}
		if t.Type == "httpupgrade" {
			b = append(b, "      v2ray-http-upgrade: true\n"...)
		}
	case "grpc":
		b = yamlRaw(b, "network", "grpc")
		b = append(b, "    grpc-opts:\n      grpc-service-name: "...)
		b = esc.YAML(b, t.ServiceName)
		b = append(b, '\n')
	case "http":
		b = yamlRaw(b, "network", "h2")
		b = append(b, "    h2-opts:\n"...)
		if t.Path != "" {
			b = append(b, "      path: "...)
			b = esc.YAML(b, t.Path)
			b = append(b, '\n')
		}
		if t.Host != "" {
			b = append(b, "      host: ["...)
			b = esc.YAML(b, t.Host)
			b = append(b, "]\n"...)
		}
	}
	return b
}
