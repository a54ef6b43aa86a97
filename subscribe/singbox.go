package subscribe

import (
	"strconv"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/internal/esc"
)

// sing-box rejects a whole profile over one field it does not know, and the
// graphical clients keep the old profile when the new one fails their check.
// So every field written here exists in sing-box 1.11, the oldest shape this
// package serves, unless a version test says otherwise.

// appendSingBoxOutbounds writes one outbound per endpoint, comma-separated,
// and the JSON list of their tags.
func appendSingBoxOutbounds(outs, tags []byte, p *Profile, v Version) ([]byte, []byte) {
	first := true
	p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
		if !first {
			outs = append(outs, ",\n    "...)
			tags = append(tags, ", "...)
		}
		first = false
		tags = e.appendJSONName(tags)
		outs = appendSingBoxOutbound(outs, e, c, v)
	})
	return outs, tags
}

func jsonStr(b []byte, key, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return esc.JSON(b, value)
}

func jsonInt(b []byte, key string, n int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, n, 10)
}

func jsonList(b []byte, key string, values []string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = esc.JSON(b, v)
	}
	return append(b, ']')
}

func appendSingBoxOutbound(b []byte, e *endpoint, c *sbconfig.Credentials, v Version) []byte {
	in := e.in
	b = append(b, `{"type":`...)
	b = esc.JSON(b, in.Type)
	b = append(b, `,"tag":`...)
	b = e.appendJSONName(b)
	b = jsonStr(b, "server", e.node.Address)
	b = jsonInt(b, "server_port", int64(in.Port))
	switch in.Type {
	case sbconfig.TypeVLESS:
		b = jsonStr(b, "uuid", c.UUID)
		if in.Flow != "" && in.Transport == nil && in.TLS != nil {
			b = jsonStr(b, "flow", in.Flow)
		}
	case sbconfig.TypeVMess:
		b = jsonStr(b, "uuid", c.UUID)
		b = jsonStr(b, "security", "auto")
	case sbconfig.TypeTrojan, sbconfig.TypeHysteria2:
		b = jsonStr(b, "password", c.Password)
	case sbconfig.TypeShadowsocks:
		b = jsonStr(b, "method", in.Method)
		b = jsonStr(b, "password", password(in, c))
	case sbconfig.TypeTUIC:
		b = jsonStr(b, "uuid", c.UUID)
		b = jsonStr(b, "password", c.Password)
		if in.CongestionControl != "" {
			b = jsonStr(b, "congestion_control", in.CongestionControl)
		}
		b = jsonStr(b, "udp_relay_mode", "native")
	}
	if o := in.Obfs; o != nil && in.Type == sbconfig.TypeHysteria2 {
		b = append(b, `,"obfs":{"type":`...)
		b = esc.JSON(b, o.Type)
		b = jsonStr(b, "password", o.Password)
		b = append(b, '}')
	}
	b = appendSingBoxTLS(b, in, v)
	if t := in.Transport; t != nil && in.Type != sbconfig.TypeShadowsocks && !quic(in.Type) {
		b = appendSingBoxTransport(b, t)
	}
	return append(b, '}')
}

func quic(typ string) bool { return typ == sbconfig.TypeHysteria2 || typ == sbconfig.TypeTUIC }

// appendSingBoxTLS writes the client TLS block. REALITY needs uTLS on the
// client; plain TLS gets a browser fingerprint before 1.13, whose docs stop
// recommending uTLS where it is optional. QUIC protocols always run TLS and
// default to ALPN h3.
func appendSingBoxTLS(b []byte, in *sbconfig.Inbound, v Version) []byte {
	t := in.TLS
	if t == nil && !quic(in.Type) {
		return b
	}
	b = append(b, `,"tls":{"enabled":true`...)
	if t != nil {
		if t.ServerName != "" {
			b = jsonStr(b, "server_name", t.ServerName)
		}
		if t.Insecure {
			b = append(b, `,"insecure":true`...)
		}
	}
	switch {
	case t != nil && len(t.ALPN) > 0 && t.Reality == nil:
		b = jsonList(b, "alpn", t.ALPN)
	case quic(in.Type):
		b = append(b, `,"alpn":["h3"]`...)
	}
	if t != nil && t.Reality != nil {
		b = append(b, `,"utls":{"enabled":true,"fingerprint":"chrome"},"reality":{"enabled":true`...)
		b = jsonStr(b, "public_key", t.Reality.PublicKey)
		b = jsonStr(b, "short_id", firstShortID(t.Reality))
		b = append(b, '}')
	} else if !quic(in.Type) && !v.AtLeast(13) {
		b = append(b, `,"utls":{"enabled":true,"fingerprint":"chrome"}`...)
	}
	return append(b, '}')
}

func appendSingBoxTransport(b []byte, t *sbconfig.Transport) []byte {
	b = append(b, `,"transport":{"type":`...)
	b = esc.JSON(b, t.Type)
	switch t.Type {
	case "ws":
		if t.Path != "" {
			b = jsonStr(b, "path", t.Path)
		}
		if t.Host != "" {
			b = append(b, `,"headers":{"Host":`...)
			b = esc.JSON(b, t.Host)
			b = append(b, '}')
		}
	case "httpupgrade":
		if t.Path != "" {
			b = jsonStr(b, "path", t.Path)
		}
		if t.Host != "" {
			b = jsonStr(b, "host", t.Host)
		}
	case "http":
		if t.Path != "" {
			b = jsonStr(b, "path", t.Path)
		}
		if t.Host != "" {
			b = jsonList(b, "host", []string{t.Host})
		}
	case "grpc":
		if t.ServiceName != "" {
			b = jsonStr(b, "service_name", t.ServiceName)
		}
	}
	return append(b, '}')
}
