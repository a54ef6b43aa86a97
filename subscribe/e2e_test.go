package subscribe

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// e2eFleet is one real sing-box server on loopback with one inbound per
// protocol variant, serving the user the profiles are rendered for.
type e2eFleet struct {
	dir     string
	profile *Profile
	origin  *httptest.Server
	log     *testsupport.SyncBuffer // the server's log, where it names authenticated users
}

// e2e variants: inbound tag → how the server side of it is configured.
const e2eUser = "alice"

func startFleet(t *testing.T, bin string) *e2eFleet {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	// REALITY handshake target. The REALITY server closes these handshakes
	// half-way by design, which the target would log as errors.
	target := httptest.NewUnstartedServer(http.NotFoundHandler())
	target.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	target.StartTLS()
	t.Cleanup(target.Close)
	targetPort := target.Listener.Addr().(*net.TCPAddr).Port

	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin says %s", r.URL.Path)
	}))
	t.Cleanup(origin.Close)

	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	creds := sbconfig.NewCredentials()
	serverPSK := base64.StdEncoding.EncodeToString(randomKey(t, 16))
	tlsIn := func(alpn ...string) *sbconfig.TLS {
		return &sbconfig.TLS{ServerName: "edge.test", ALPN: alpn, Insecure: true}
	}
	inbounds := []sbconfig.Inbound{
		{Tag: "vless-reality", Type: sbconfig.TypeVLESS, Port: freeTCP(t), Flow: "xtls-rprx-vision",
			TLS: &sbconfig.TLS{ServerName: "reality.test", Reality: &sbconfig.Reality{
				PublicKey: base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()), ShortIDs: []string{"0123456789abcdef"}}}},
		{Tag: "vless-ws", Type: sbconfig.TypeVLESS, Port: freeTCP(t), TLS: tlsIn(),
			Transport: &sbconfig.Transport{Type: "ws", Path: "/ws", Host: "edge.test"}},
		{Tag: "vless-grpc", Type: sbconfig.TypeVLESS, Port: freeTCP(t), TLS: tlsIn(),
			Transport: &sbconfig.Transport{Type: "grpc", ServiceName: "tun"}},
		{Tag: "vmess-ws", Type: sbconfig.TypeVMess, Port: freeTCP(t), TLS: tlsIn(),
			Transport: &sbconfig.Transport{Type: "ws", Path: "/vm"}},
		{Tag: "trojan", Type: sbconfig.TypeTrojan, Port: freeTCP(t), TLS: tlsIn()},
		{Tag: "ss2022", Type: sbconfig.TypeShadowsocks, Port: freeTCP(t), Method: "2022-blake3-aes-128-gcm", ServerPSK: serverPSK},
		{Tag: "hysteria2", Type: sbconfig.TypeHysteria2, Port: freeUDP(t), TLS: tlsIn("h3"),
			Obfs: &sbconfig.Obfs{Type: "salamander", Password: "obfs-secret"}},
		{Tag: "tuic", Type: sbconfig.TypeTUIC, Port: freeUDP(t), TLS: tlsIn("h3"), CongestionControl: "bbr"},
	}

	server := map[string]any{
		"log":       map[string]any{"level": "info"},
		"inbounds":  serverInbounds(inbounds, creds, certFile, keyFile, priv, targetPort),
		"outbounds": []any{map[string]any{"type": "direct", "tag": "direct"}},
	}
	cfg := writeJSON(t, dir, "server.json", server)
	singBoxCheck(t, bin, cfg)
	log := &testsupport.SyncBuffer{}
	startProcess(t, bin, dir, log, "run", "-c", cfg)
	for _, in := range inbounds {
		if in.Type != sbconfig.TypeHysteria2 && in.Type != sbconfig.TypeTUIC {
			waitTCP(t, int(in.Port))
		}
	}
	p := fixtureProfile(inbounds...)
	p.User, p.Credentials = e2eUser, creds
	p.Nodes[0].Address = "127.0.0.1"
	return &e2eFleet{dir: dir, profile: p, origin: origin, log: log}
}

// serverInbounds writes the node side of each variant, with the user the
// profile is for.
func serverInbounds(ins []sbconfig.Inbound, c sbconfig.Credentials, cert, key string, priv *ecdh.PrivateKey, targetPort int) []any {
	var out []any
	for _, in := range ins {
		m := map[string]any{"type": in.Type, "tag": in.Tag, "listen": "127.0.0.1", "listen_port": in.Port}
		user := map[string]any{"name": e2eUser}
		switch in.Type {
		case sbconfig.TypeVLESS:
			user["uuid"], user["flow"] = c.UUID, in.Flow
		case sbconfig.TypeVMess:
			user["uuid"], user["alterId"] = c.UUID, 0
		case sbconfig.TypeTrojan, sbconfig.TypeHysteria2:
			user["password"] = c.Password
		case sbconfig.TypeShadowsocks:
			m["method"], m["password"] = in.Method, in.ServerPSK
			user["password"] = c.SSKey(in.Method)
		case sbconfig.TypeTUIC:
			user["uuid"], user["password"] = c.UUID, c.Password
			m["congestion_control"] = in.CongestionControl
		}
		m["users"] = []any{user}
		if in.Obfs != nil {
			m["obfs"] = map[string]any{"type": in.Obfs.Type, "password": in.Obfs.Password}
		}
		if t := in.TLS; t != nil {
			tls := map[string]any{"enabled": true, "server_name": t.ServerName}
			if t.Reality != nil {
				tls["reality"] = map[string]any{
					"enabled":     true,
					"handshake":   map[string]any{"server": "127.0.0.1", "server_port": targetPort},
					"private_key": base64.RawURLEncoding.EncodeToString(priv.Bytes()),
					"short_id":    t.Reality.ShortIDs,
				}
			} else {
				tls["certificate_path"], tls["key_path"] = cert, key
				if len(t.ALPN) > 0 {
					tls["alpn"] = t.ALPN
				}
			}
			m["tls"] = tls
		}
		if tr := in.Transport; tr != nil {
			m["transport"] = map[string]any{"type": tr.Type, "path": tr.Path}
			if tr.Type == "grpc" {
				m["transport"] = map[string]any{"type": tr.Type, "service_name": tr.ServiceName}
			}
		}
		out = append(out, m)
	}
	return out
}

// TestSingBoxProfilesCarryTraffic renders the user's sing-box profile in each
// shape the test binary accepts, checks it with `sing-box check`, then runs
// it as a real client (its TUN inbound swapped for one mixed inbound per
// outbound, since TUN needs root) and fetches a page through every outbound.
// The server's log must show the user authenticated on that very inbound.
func TestSingBoxProfilesCarryTraffic(t *testing.T) {
	bin := testbin.Path(t, "sing-box")
	f := startFleet(t, bin)
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []Version{Version112, Version113} {
		t.Run(v.String(), func(t *testing.T) {
			runClient(t, bin, r, f, v)
		})
	}
}

// TestSingBoxOlderClients does the same with older sing-box releases, which
// tools/build.sh does not build; they are looked up in the tools cache as
// sing-box-<version> and the test is skipped, saying so, when absent.
func TestSingBoxOlderClients(t *testing.T) {
	server := testbin.Path(t, "sing-box")
	dir := os.Getenv("BOXFLEET_TOOLS_DIR")
	for _, c := range []struct {
		release string
		shape   Version
	}{{"1.11.15", Version111}, {"1.12.25", Version112}} {
		t.Run(c.release, func(t *testing.T) {
			bin := filepath.Join(dir, "sing-box-"+c.release)
			if _, err := os.Stat(bin); dir == "" || err != nil {
				t.Skipf("no %s (build sing-box %s with with_quic,with_utls,with_gvisor into BOXFLEET_TOOLS_DIR)", bin, c.release)
			}
			f := startFleet(t, server)
			r, err := New("")
			if err != nil {
				t.Fatal(err)
			}
			runClient(t, bin, r, f, c.shape)
			// The newest shape must not load here, or tailoring would be moot.
			var newest bytes.Buffer
			if err := r.Render(&newest, Client{Format: FormatSingBox, SingBox: Version113}, f.profile); err != nil {
				t.Fatal(err)
			}
			if c.shape == Version111 {
				cmd := exec.Command(bin, "check", "-c", writeFile(t, t.TempDir(), "newest.json", newest.Bytes()))
				if out, err := cmd.CombinedOutput(); err == nil {
					t.Errorf("sing-box %s accepted the 1.13 profile shape; the 1.11 branch is not needed?\n%s", c.release, out)
				}
			}
		})
	}
}

func runClient(t *testing.T, bin string, r *Renderer, f *e2eFleet, v Version) {
	var body bytes.Buffer
	if err := r.Render(&body, Client{Format: FormatSingBox, SingBox: v}, f.profile); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	singBoxCheck(t, bin, writeFile(t, dir, "profile.json", body.Bytes()))

	var cfg map[string]any
	if err := json.Unmarshal(body.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, o := range cfg["outbounds"].([]any) {
		o := o.(map[string]any)
		if typ := o["type"]; typ != "selector" && typ != "urltest" && typ != "direct" {
			tags = append(tags, o["tag"].(string))
		}
	}
	if len(tags) != len(f.profile.Nodes[0].Inbounds) {
		t.Fatalf("profile has %d proxy outbounds, want one per inbound (%d)", len(tags), len(f.profile.Nodes[0].Inbounds))
	}
	ports := map[string]int{}
	var inbounds, rules []any
	for i, tag := range append(tags, "proxy") {
		in := fmt.Sprintf("mixed-%d", i)
		ports[tag] = int(freeTCP(t))
		inbounds = append(inbounds, map[string]any{"type": "mixed", "tag": in, "listen": "127.0.0.1", "listen_port": ports[tag]})
		rules = append(rules, map[string]any{"inbound": in, "outbound": tag})
	}
	cfg["inbounds"] = inbounds
	route := cfg["route"].(map[string]any)
	route["rules"] = append(rules, route["rules"].([]any)...)
	delete(route, "auto_detect_interface")
	cfg["log"] = map[string]any{"level": "warn"}
	clientCfg := writeJSON(t, dir, "client.json", cfg)

	clientLog := &testsupport.SyncBuffer{}
	startProcess(t, bin, dir, clientLog, "run", "-c", clientCfg)
	for _, tag := range tags {
		waitTCP(t, ports[tag])
	}
	for _, tag := range tags {
		inboundTag := strings.TrimPrefix(tag, "de-1 ")
		t.Run(inboundTag, func(t *testing.T) {
			path := "/" + strings.ReplaceAll(inboundTag, "-", "") + "-" + v.String()
			got := fetchVia(t, ports[tag], f.origin.URL+path)
			if want := "origin says " + path; got != want {
				t.Fatalf("through %s got %q, want %q\nclient log:\n%s", tag, got, want, clientLog)
			}
			// "inbound/vless[vless-ws]: [alice] inbound connection to 127.0.0.1:…"
			mark := "[" + inboundTag + "]: [" + e2eUser + "] inbound"
			if !strings.Contains(f.log.String(), mark) {
				t.Fatalf("server log does not show %s authenticated on %s:\n%s", e2eUser, inboundTag, f.log)
			}
		})
	}
	// The selector the profile routes everything to reaches the server too.
	if got := fetchVia(t, ports["proxy"], f.origin.URL+"/via-selector"); got != "origin says /via-selector" {
		t.Fatalf("through the selector got %q\nclient log:\n%s", got, clientLog)
	}
}

// fetchVia GETs target through the client's mixed inbound, retrying while
// the QUIC servers (which cannot be polled for readiness) come up.
func fetchVia(t *testing.T, port int, target string) string {
	t.Helper()
	proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(target)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %s, body %q", resp.Status, b)
			if rerr != nil {
				err = fmt.Errorf("status %s, reading the body: %w", resp.Status, rerr)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s via 127.0.0.1:%d: %v", target, port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func singBoxCheck(t *testing.T, bin, cfg string) {
	t.Helper()
	cmd := exec.Command(bin, "check", "-c", cfg)
	cmd.Dir = filepath.Dir(cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		b, _ := os.ReadFile(cfg)
		t.Fatalf("sing-box check %s: %v\n%s\nconfig:\n%s", cfg, err, out, b)
	}
}

func startProcess(t *testing.T, bin, dir string, log io.Writer, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
}

func waitTCP(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d never opened: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeTCP(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func freeUDP(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func randomKey(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "edge.test"},
		DNSNames:     []string{"edge.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, "cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile = writeFile(t, dir, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, b)
}
