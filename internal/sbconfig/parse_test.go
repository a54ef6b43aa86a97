package sbconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

// A REALITY key pair printed by `sing-box generate reality-keypair`.
const (
	realityPrivate = "WFfKfHnHkKTV8mw6Gp5LxP77s9xaOw8KYOmLBUfKMU4"
	realityPublic  = "eGuNIGxQSHQt9mlhA9CrMS7TomnX1hWOrtPMWYYeEUk"
	ssServerPSK    = "MTIzNDU2Nzg5MDEyMzQ1Ng=="
)

// serverConfig is an operator's file the way people write them: comments
// of all three kinds, trailing commas, an inbound the fleet does not manage,
// one inbound laid out on a single line and one without a users key.
const serverConfig = `{
  // managed by hand, users by boxfleet
  "log": {"level": "info", "timestamp": true},
  "inbounds": [
    {
      "type": "vless",
      "tag": "vless-reality",
      "listen": "::",
      "listen_port": 443,
      "users": [
        {"name": "old", "uuid": "2f1a7e4c-5b7d-4e0f-9a51-3c6f1d2e8b90", "flow": "xtls-rprx-vision"},
      ],
      "tls": {
        "enabled": true,
        "alpn": "h2",
        "reality": {
          "enabled": true,
          "handshake": {"server": "www.example.com", "server_port": 443},
          "private_key": "` + realityPrivate + `",
          "short_id": ["", "0123abcd"], # trailing comment
        },
      },
    },
    {"type": "vmess", "tag": "vmess-ws", "listen": "127.0.0.1", "listen_port": 8080, "transport": {"type": "ws", "path": "/ray", "headers": {"Host": "cdn.example.com"}}},
    {
      "type": "trojan", "tag": "trojan-grpc", "listen_port": 8443,
      "users": [],
      "transport": {"type": "grpc", "service_name": "TunService"}
    },
    {
      "type": "shadowsocks",
      "tag": "ss",
      "listen_port": 8388,
      "method": "2022-blake3-aes-128-gcm",
      "password": "` + ssServerPSK + `", /* the server PSK */
      "multiplex": {"enabled": true}
    },
    {
      "type": "hysteria2", "tag": "hy2", "listen_port": 8443,
      "up_mbps": 100, "down_mbps": 200,
      "obfs": {"type": "salamander", "password": "obfs-secret"},
      "users": [{"name": "x", "password": "y"}],
      "tls": {"enabled": true, "server_name": "hy.example.com", "alpn": ["h3"], "certificate_path": "CERT", "key_path": "KEY"}
    },
    {
      "type": "tuic", "tag": "tuic", "listen_port": 8444,
      "congestion_control": "bbr",
      "users": [],
      "tls": {"enabled": true, "server_name": "tuic.example.com", "alpn": ["h3"], "certificate_path": "CERT", "key_path": "KEY"}
    },
    {"type": "mixed", "tag": "local", "listen": "127.0.0.1", "listen_port": 1080},
  ],
  "outbounds": [{"type": "direct", "tag": "direct"}],
}
`

func TestRealityPublicKey(t *testing.T) {
	got, err := RealityPublicKey(realityPrivate)
	if err != nil {
		t.Fatal(err)
	}
	if got != realityPublic {
		t.Errorf("public key %s, want %s", got, realityPublic)
	}
	for _, bad := range []string{"", "not base64!", "AAAA", realityPrivate + "="} {
		if _, err := RealityPublicKey(bad); err == nil {
			t.Errorf("RealityPublicKey(%q): no error", bad)
		}
	}
}

// TestRealityPublicKeyMatchesSingBox checks the derivation against fresh
// key pairs from the real binary.
func TestRealityPublicKeyMatchesSingBox(t *testing.T) {
	bin := testbin.Path(t, "sing-box")
	for range 3 {
		out, err := exec.Command(bin, "generate", "reality-keypair").Output()
		if err != nil {
			t.Fatal(err)
		}
		var private, public string
		for line := range strings.SplitSeq(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "PrivateKey: "); ok {
				private = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "PublicKey: "); ok {
				public = strings.TrimSpace(v)
			}
		}
		got, err := RealityPublicKey(private)
		if err != nil {
			t.Fatal(err)
		}
		if got != public {
			t.Errorf("private %s: derived %s, sing-box says %s", private, got, public)
		}
	}
}

func TestParseInbounds(t *testing.T) {
	got, err := ParseInbounds([]byte(serverConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Inbound{
		{Tag: "vless-reality", Type: "vless", Port: 443, Flow: FlowVision, TLS: &TLS{
			ServerName: "www.example.com", ALPN: []string{"h2"},
			Reality: &Reality{PublicKey: realityPublic, ShortIDs: []string{"", "0123abcd"}},
		}},
		{Tag: "vmess-ws", Type: "vmess", Port: 8080, Transport: &Transport{Type: "ws", Path: "/ray", Host: "cdn.example.com"}},
		{Tag: "trojan-grpc", Type: "trojan", Port: 8443, Transport: &Transport{Type: "grpc", ServiceName: "TunService"}},
		{Tag: "ss", Type: "shadowsocks", Port: 8388, Method: "2022-blake3-aes-128-gcm", ServerPSK: ssServerPSK},
		{Tag: "hy2", Type: "hysteria2", Port: 8443, UpMbps: 100, DownMbps: 200, Obfs: &Obfs{Type: "salamander", Password: "obfs-secret"},
			TLS: &TLS{ServerName: "hy.example.com", ALPN: []string{"h3"}}},
		{Tag: "tuic", Type: "tuic", Port: 8444, CongestionControl: "bbr", TLS: &TLS{ServerName: "tuic.example.com", ALPN: []string{"h3"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
	if strings.Contains(mustJSON(t, got), realityPrivate) {
		t.Error("the REALITY private key leaked into the public parameters")
	}
}

func TestParseInboundsManagedTags(t *testing.T) {
	got, err := ParseInbounds([]byte(serverConfig), []string{"ss", "tuic"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Tag != "ss" || got[1].Tag != "tuic" {
		t.Errorf("got %+v, want ss and tuic", got)
	}
	for _, tags := range [][]string{{"nope"}, {"local"}} {
		if _, err := ParseInbounds([]byte(serverConfig), tags); err == nil {
			t.Errorf("tags %q: no error", tags)
		}
	}
}

func TestParseVLESSFlow(t *testing.T) {
	for _, c := range []struct{ name, inbound, want string }{
		{"existing users decide", `{"type":"vless","tag":"v","users":[{"name":"a","uuid":"u"}],"tls":{"enabled":true,"reality":{"enabled":true,"private_key":"` + realityPrivate + `"}}}`, ""},
		{"reality over tcp defaults to vision", `{"type":"vless","tag":"v","tls":{"enabled":true,"reality":{"enabled":true,"private_key":"` + realityPrivate + `"}}}`, FlowVision},
		{"reality over a transport has no flow", `{"type":"vless","tag":"v","transport":{"type":"grpc"},"tls":{"enabled":true,"reality":{"enabled":true,"private_key":"` + realityPrivate + `"}}}`, ""},
		{"plain", `{"type":"vless","tag":"v"}`, ""},
	} {
		got, err := ParseInbounds([]byte(`{"inbounds":[`+c.inbound+`]}`), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got[0].Flow != c.want {
			t.Errorf("%s: flow %q, want %q", c.name, got[0].Flow, c.want)
		}
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, src := range []string{
		``, `{`, `{"inbounds": [}`, `{"inbounds": "x"}`, `{"a": "unterminated}`, `{/* open`,
		`{"inbounds":[{"type":"vless","tag":"v","tls":{"enabled":true,"reality":{"enabled":true,"private_key":"bad"}}}]}`,
	} {
		if _, err := ParseInbounds([]byte(src), nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

func TestTCPAddresses(t *testing.T) {
	got, err := TCPAddresses([]byte(serverConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[::1]:443", "127.0.0.1:8080", "127.0.0.1:8443", "127.0.0.1:8388"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStandardizeKeepsOffsets(t *testing.T) {
	src := "{\"a\": \"// not a comment\", # c\n \"b\": [1, 2, /* x\n */], \"c\": \"#\\\"/*\",}"
	std, err := standardize([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(std) != len(src) {
		t.Fatalf("length changed: %d -> %d", len(src), len(std))
	}
	want := "{\"a\": \"// not a comment\",    \n \"b\": [1, 2      \n   ], \"c\": \"#\\\"/*\" }"
	if string(std) != want {
		t.Errorf("got  %q\nwant %q", std, want)
	}
}

// certFiles writes a self-signed certificate for the TLS inbounds that
// sing-box check loads.
func certFiles(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"hy.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}
