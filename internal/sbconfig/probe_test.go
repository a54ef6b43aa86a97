package sbconfig

import (
	"reflect"
	"testing"
)

// TestTCPProbeableUDPOnly: an inbound that listens on UDP alone is left out
// of the agent's TCP check and carried in the registration, so that the
// controller leaves it out of blackbox's targets too.
func TestTCPProbeableUDPOnly(t *testing.T) {
	const config = `{"inbounds": [
		{"type": "shadowsocks", "tag": "ss-udp", "listen": "::", "listen_port": 8389, "network": "udp", "method": "aes-128-gcm", "password": "p"},
		{"type": "shadowsocks", "tag": "ss-tcp", "listen": "127.0.0.1", "listen_port": 8390, "network": "tcp", "method": "aes-128-gcm", "password": "p"},
		{"type": "trojan", "tag": "tr", "listen": "127.0.0.1", "listen_port": 8443}]}`
	addrs, err := TCPAddresses([]byte(config), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:8390", "127.0.0.1:8443"}; !reflect.DeepEqual(addrs, want) {
		t.Errorf("TCP addresses %q, want %q", addrs, want)
	}
	ins, err := ParseInbounds([]byte(config), nil)
	if err != nil {
		t.Fatal(err)
	}
	var probeable []string
	for _, in := range ins {
		if in.TCPProbeable() {
			probeable = append(probeable, in.Tag)
		}
	}
	if want := []string{"ss-tcp", "tr"}; !reflect.DeepEqual(probeable, want) {
		t.Errorf("probeable inbounds %q, want %q", probeable, want)
	}
	for _, typ := range []string{TypeHysteria2, TypeTUIC} {
		if (Inbound{Type: typ, Port: 443}).TCPProbeable() {
			t.Errorf("%s is QUIC, not TCP-probeable", typ)
		}
	}
}
