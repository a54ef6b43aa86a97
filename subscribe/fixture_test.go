package subscribe

import (
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// fixtureCreds are fixed so golden files stay stable.
var fixtureCreds = sbconfig.Credentials{
	UUID:     "bf000d23-0752-40b4-affe-68f7707a9661",
	Password: "Zm9vYmFyLXRlc3QtcGFzcw",
	SSKey16:  "PCD2Z4o12bKUoFa3cC97Hw==",
	SSKey32:  "YctPZ6U7xPPcU+gp3u+0tx/tRizJN9K8y+uKlW2qjlI=",
}

// fixtureInbounds holds one inbound per protocol variant the fleet serves,
// keyed by the name golden files use.
func fixtureInbounds() []sbconfig.Inbound {
	tls := func(alpn ...string) *sbconfig.TLS {
		return &sbconfig.TLS{ServerName: "edge.example.com", ALPN: alpn}
	}
	return []sbconfig.Inbound{
		{Tag: "vless-reality", Type: sbconfig.TypeVLESS, Port: 443, Flow: "xtls-rprx-vision",
			TLS: &sbconfig.TLS{ServerName: "www.example.com", Reality: &sbconfig.Reality{
				PublicKey: "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0", ShortIDs: []string{"0123456789abcdef", "ab"}}}},
		{Tag: "vless-ws", Type: sbconfig.TypeVLESS, Port: 8443, TLS: tls(),
			Transport: &sbconfig.Transport{Type: "ws", Path: "/ws?ed=2048", Host: "cdn.example.com"}},
		{Tag: "vless-grpc", Type: sbconfig.TypeVLESS, Port: 8444, TLS: tls(),
			Transport: &sbconfig.Transport{Type: "grpc", ServiceName: "tun"}},
		{Tag: "vmess-ws", Type: sbconfig.TypeVMess, Port: 8445, TLS: tls("http/1.1"),
			Transport: &sbconfig.Transport{Type: "ws", Path: "/vm"}},
		{Tag: "trojan", Type: sbconfig.TypeTrojan, Port: 8446, TLS: tls("h2", "http/1.1")},
		{Tag: "ss2022", Type: sbconfig.TypeShadowsocks, Port: 8388, Method: "2022-blake3-aes-128-gcm",
			ServerPSK: "8JCsPssfgS8tiRwiMlhARg=="},
		{Tag: "hysteria2", Type: sbconfig.TypeHysteria2, Port: 8447, TLS: tls("h3"),
			Obfs: &sbconfig.Obfs{Type: "salamander", Password: "cry_me_a_r1ver"}},
		{Tag: "tuic", Type: sbconfig.TypeTUIC, Port: 8448, TLS: tls("h3"), CongestionControl: "bbr"},
	}
}

func fixtureProfile(inbounds ...sbconfig.Inbound) *Profile {
	if len(inbounds) == 0 {
		inbounds = fixtureInbounds()
	}
	return &Profile{
		User:           "alice",
		Credentials:    fixtureCreds,
		Status:         StatusActive,
		Upload:         1 << 30,
		Download:       5 << 30,
		Total:          100 << 30,
		Expire:         time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		Title:          "boxfleet",
		SubURL:         "https://sub.example.com/sub/tok3n",
		UpdateInterval: 6 * time.Hour,
		Nodes: []Node{
			{Name: "de-1", Address: "203.0.113.10", Labels: map[string]string{"region": "eu"}, Inbounds: inbounds},
		},
	}
}
