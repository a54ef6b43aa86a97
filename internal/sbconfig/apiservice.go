package sbconfig

import (
	"encoding/json"
	"net"
	"strconv"
)

// APIService finds sing-box's API service in a config (sing-box 1.14+,
// `"services": [{"type": "api", "listen": …, "listen_port": …, "secret": …}]`)
// and returns the address to dial it at and its secret. A service listening
// on every address is dialled on loopback. ok is false when the config has
// none, or one without a port.
func APIService(config []byte) (addr, secret string, ok bool) {
	std, err := standardize(config)
	if err != nil {
		return "", "", false
	}
	var c struct {
		Services []struct {
			Type       string `json:"type"`
			Listen     string `json:"listen"`
			ListenPort int    `json:"listen_port"`
			Secret     string `json:"secret"`
		} `json:"services"`
	}
	if json.Unmarshal(std, &c) != nil {
		return "", "", false
	}
	for _, s := range c.Services {
		if s.Type != "api" || s.ListenPort <= 0 || s.ListenPort > 65535 {
			continue
		}
		host := s.Listen
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		return net.JoinHostPort(host, strconv.Itoa(s.ListenPort)), s.Secret, true
	}
	return "", "", false
}
