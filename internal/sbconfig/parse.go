package sbconfig

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
)

// FlowVision is the VLESS flow a managed REALITY inbound over plain TCP
// gets when the operator's file names none.
const FlowVision = "xtls-rprx-vision"

// Supported reports whether the fleet manages users of this inbound type.
func Supported(typ string) bool {
	switch typ {
	case TypeVLESS, TypeVMess, TypeTrojan, TypeShadowsocks, TypeHysteria2, TypeTUIC:
		return true
	}
	return false
}

// listable is sing-box's "one value or a list of them".
type listable []string

func (l *listable) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = listable{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

// rawInbound holds the fields of a server inbound that clients need to know
// or that decide how users are written.
type rawInbound struct {
	Type       string `json:"type"`
	Tag        string `json:"tag"`
	Listen     string `json:"listen"`
	ListenPort uint16 `json:"listen_port"`
	Network    string `json:"network"`
	Users      []struct {
		Flow string `json:"flow"`
	} `json:"users"`
	Method   string `json:"method"`
	Password string `json:"password"`
	TLS      *struct {
		Enabled    bool     `json:"enabled"`
		ServerName string   `json:"server_name"`
		ALPN       listable `json:"alpn"`
		Reality    *struct {
			Enabled   bool `json:"enabled"`
			Handshake struct {
				Server string `json:"server"`
			} `json:"handshake"`
			PrivateKey string   `json:"private_key"`
			ShortID    listable `json:"short_id"`
		} `json:"reality"`
	} `json:"tls"`
	Transport *struct {
		Type        string              `json:"type"`
		Path        string              `json:"path"`
		Host        listable            `json:"host"`
		ServiceName string              `json:"service_name"`
		Headers     map[string]listable `json:"headers"`
	} `json:"transport"`
	Obfs *struct {
		Type     string `json:"type"`
		Password string `json:"password"`
	} `json:"obfs"`
	UpMbps            int    `json:"up_mbps"`
	DownMbps          int    `json:"down_mbps"`
	CongestionControl string `json:"congestion_control"`
}

// managedInbound is one inbound the fleet writes users into.
type managedInbound struct {
	raw  rawInbound
	span span
}

// managedInbounds decodes the inbounds named by tags, or every inbound of a
// supported type when tags is empty. A named tag that is missing or of an
// unsupported type is an error: a typo must not silently leave an inbound
// out of the fleet.
func (d *document) managedInbounds(tags []string) ([]managedInbound, error) {
	var out []managedInbound
	seen := map[string]bool{}
	for i, s := range d.inbounds {
		var raw rawInbound
		if err := json.Unmarshal(d.std[s.start:s.end], &raw); err != nil {
			return nil, fmt.Errorf("inbounds[%d]: %w", i, err)
		}
		if len(tags) > 0 && !slices.Contains(tags, raw.Tag) {
			continue
		}
		if !Supported(raw.Type) {
			if len(tags) > 0 {
				return nil, fmt.Errorf("inbound %q: type %q cannot carry managed users", raw.Tag, raw.Type)
			}
			continue
		}
		seen[raw.Tag] = true
		out = append(out, managedInbound{raw: raw, span: s})
	}
	for _, t := range tags {
		if !seen[t] {
			return nil, fmt.Errorf("managed inbound %q is not in the config", t)
		}
	}
	return out, nil
}

// ParseInbounds reads a sing-box server config and returns the public
// parameters of its managed inbounds (tags, or every inbound of a supported
// type when tags is empty).
func ParseInbounds(config []byte, tags []string) ([]Inbound, error) {
	d, err := readDocument(config)
	if err != nil {
		return nil, err
	}
	managed, err := d.managedInbounds(tags)
	if err != nil {
		return nil, err
	}
	out := make([]Inbound, 0, len(managed))
	for _, m := range managed {
		in, err := m.raw.public()
		if err != nil {
			return nil, fmt.Errorf("inbound %q: %w", m.raw.Tag, err)
		}
		out = append(out, in)
	}
	return out, nil
}

func (r rawInbound) public() (Inbound, error) {
	in := Inbound{
		Tag:               r.Tag,
		Type:              r.Type,
		Port:              r.ListenPort,
		Network:           r.Network,
		UpMbps:            r.UpMbps,
		DownMbps:          r.DownMbps,
		CongestionControl: r.CongestionControl,
	}
	if r.Type == TypeVLESS {
		in.Flow = r.flow()
	}
	if r.Type == TypeShadowsocks {
		in.Method = r.Method
		// With users, a 2022 inbound's own password is the server PSK that
		// every client prepends to its key; other methods have none.
		if IsSS2022(r.Method) {
			in.ServerPSK = r.Password
		}
	}
	if r.Obfs != nil && r.Obfs.Type != "" {
		in.Obfs = &Obfs{Type: r.Obfs.Type, Password: r.Obfs.Password}
	}
	if r.Transport != nil && r.Transport.Type != "" {
		in.Transport = r.transport()
	}
	if r.TLS != nil && r.TLS.Enabled {
		tls := &TLS{ServerName: r.TLS.ServerName, ALPN: r.TLS.ALPN}
		if rl := r.TLS.Reality; rl != nil && rl.Enabled {
			pub, err := RealityPublicKey(rl.PrivateKey)
			if err != nil {
				return Inbound{}, err
			}
			tls.Reality = &Reality{PublicKey: pub, ShortIDs: rl.ShortID}
			if tls.ServerName == "" {
				tls.ServerName = rl.Handshake.Server
			}
		}
		in.TLS = tls
	}
	return in, nil
}

// flow is the flow of the inbound's existing users, so that a file the fleet
// wrote before reads back the same; an inbound without users gets Vision
// when it is REALITY over plain TCP, the one setting where clients expect it.
func (r rawInbound) flow() string {
	if len(r.Users) > 0 {
		return r.Users[0].Flow
	}
	if r.TLS != nil && r.TLS.Reality != nil && r.TLS.Reality.Enabled && r.Transport == nil {
		return FlowVision
	}
	return ""
}

func (r rawInbound) transport() *Transport {
	t := r.Transport
	out := &Transport{Type: t.Type, Path: t.Path, ServiceName: t.ServiceName}
	if len(t.Host) > 0 {
		out.Host = t.Host[0]
	}
	for _, k := range []string{"Host", "host"} {
		if v := t.Headers[k]; out.Host == "" && len(v) > 0 {
			out.Host = v[0]
		}
	}
	return out
}

// TCPAddresses returns host:port addresses where the managed inbounds accept
// TCP connections, as seen from the node itself: a check that sing-box came
// back after a reload dials them. Wildcard listens are dialled on loopback.
func TCPAddresses(config []byte, tags []string) ([]string, error) {
	d, err := readDocument(config)
	if err != nil {
		return nil, err
	}
	managed, err := d.managedInbounds(tags)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range managed {
		r := m.raw
		if !(Inbound{Type: r.Type, Port: r.ListenPort, Network: r.Network}).TCPProbeable() {
			continue
		}
		host := r.Listen
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
			if ip != nil && ip.To4() == nil {
				host = "::1"
			}
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(int(r.ListenPort))))
	}
	return out, nil
}
