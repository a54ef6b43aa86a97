package meter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/collector"
	"github.com/boxfleet/boxfleet/exporter/meter"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

const apiSecret = "meter-test-secret"

// activeDevice is one sing-box client of a user: its own process, whose
// connections to the server come from its own loopback address, as two
// devices of one user come from two addresses.
type activeDevice struct {
	user, uuid, bind string
	socks            string
}

// In API service mode the users online, their connections and their
// client addresses come from the connection events, which name the user
// of every connection (there is no log stream to name them). Two users at
// once on a real sing-box, through real sing-box clients: ana on two
// devices with two connections each, bo on one device with one; then bo
// leaves.
func TestActiveUsersAPIMode(t *testing.T) {
	sb := testbin.Path(t, "sing-box")
	dir := t.TempDir()
	clashAddr := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	apiPort, vlessPort := testsupport.FreePort(t), testsupport.FreePort(t)
	devices := []*activeDevice{
		{user: "ana", uuid: "0b6d3c1e-8f2a-4c5b-9d7e-1a2b3c4d5e6f", bind: "127.0.0.2"},
		{user: "ana", uuid: "0b6d3c1e-8f2a-4c5b-9d7e-1a2b3c4d5e6f", bind: "127.0.0.3"},
		{user: "bo", uuid: "7c9e2f4a-1b3d-4e5f-8a6b-9c0d1e2f3a4b", bind: "127.0.0.4"},
	}
	server := writeConfig(t, dir, "server", map[string]any{
		"log": map[string]any{"level": "warn"},
		"inbounds": []any{map[string]any{"type": "vless", "tag": "vless-in", "listen": "127.0.0.1", "listen_port": vlessPort,
			"users": []any{
				map[string]any{"name": "ana", "uuid": devices[0].uuid},
				map[string]any{"name": "bo", "uuid": devices[2].uuid},
			}}},
		"outbounds":    []any{map[string]any{"type": "direct", "tag": "direct"}},
		"experimental": map[string]any{"clash_api": map[string]any{"external_controller": clashAddr, "secret": apiSecret}},
		"services":     []any{map[string]any{"type": "api", "tag": "api", "listen": "127.0.0.1", "listen_port": apiPort, "secret": apiSecret}},
	})
	testsupport.Start(t, dir, "server", sb, "run", "-c", server)
	for i, d := range devices {
		d.socks = fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
		conf := writeConfig(t, dir, fmt.Sprintf("client-%d", i), map[string]any{
			"log":      map[string]any{"level": "warn"},
			"inbounds": []any{map[string]any{"type": "socks", "tag": "in", "listen": "127.0.0.1", "listen_port": port(d.socks)}},
			"outbounds": []any{map[string]any{"type": "vless", "tag": "out", "server": "127.0.0.1", "server_port": vlessPort,
				"uuid": d.uuid, "inet4_bind_address": d.bind}},
		})
		testsupport.Start(t, dir, fmt.Sprintf("client-%d", i), sb, "run", "-c", conf)
	}
	waitTCP(t, clashAddr)
	for _, d := range devices {
		waitTCP(t, d.socks)
	}

	clash, err := clashapi.NewClient("http://"+clashAddr, apiSecret)
	if err != nil {
		t.Fatal(err)
	}
	events, err := sbapi.Dial(fmt.Sprintf("127.0.0.1:%d", apiPort), apiSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := meter.New(meter.Config{Clash: clash, Events: events, EventInterval: 200 * time.Millisecond,
		MinInterval: 100 * time.Millisecond, MaxInterval: 500 * time.Millisecond, Budget: 1, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	testsupport.Until(t, "the event stream", 20*time.Second, func() bool { return m.View().LogStreamUp })

	sink := holdingSink(t)
	open := func(d *activeDevice, n int) []net.Conn {
		var cs []net.Conn
		for range n {
			c, err := socksDial(d.socks, sink)
			if err != nil {
				t.Fatalf("%s via %s: %v", d.user, d.bind, err)
			}
			t.Cleanup(func() { c.Close() })
			cs = append(cs, c)
		}
		return cs
	}
	open(devices[0], 2)
	open(devices[1], 2)
	bo := open(devices[2], 1)

	want := map[string]attribution.Activity{"ana": {Connections: 4, SourceIPs: 2}, "bo": {Connections: 1, SourceIPs: 1}}
	waitActive(t, m, want)
	v := m.View()
	if got := v.Active["ana"].Sources; !got["127.0.0.2"] || !got["127.0.0.3"] {
		t.Errorf("ana's sources %v, want 127.0.0.2 and 127.0.0.3", got)
	}
	if v.Unowned != 0 {
		t.Errorf("%d open connections without a user, want 0: every connection is a user's", v.Unowned)
	}

	// The collector's view of the same: users online, and with the
	// fleet's device key one bucket per client address.
	key := []byte("a fleet device key of enough bytes")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.NewWithOptions(m, collector.Options{DeviceKey: key}))
	conns, ips, buckets := gatherUsers(t, reg)
	for user, a := range want {
		if conns[user] != float64(a.Connections) || ips[user] != float64(a.SourceIPs) || buckets[user] != a.SourceIPs {
			t.Errorf("%s: singbox_user_connections %v, singbox_user_source_ips %v, %d buckets; want %d, %d, %d",
				user, conns[user], ips[user], buckets[user], a.Connections, a.SourceIPs, a.SourceIPs)
		}
	}

	// bo leaves: his user is no longer online; ana's count is unchanged.
	for _, c := range bo {
		c.Close()
	}
	waitActive(t, m, map[string]attribution.Activity{"ana": want["ana"]})
}

func waitActive(t *testing.T, m *meter.Meter, want map[string]attribution.Activity) {
	t.Helper()
	testsupport.Until(t, fmt.Sprintf("active users %v", want), 20*time.Second, func() bool {
		got := m.View().Active
		if len(got) != len(want) {
			return false
		}
		for user, w := range want {
			if g := got[user]; g.Connections != w.Connections || g.SourceIPs != w.SourceIPs {
				return false
			}
		}
		return true
	}, func() string {
		v := m.View()
		return fmt.Sprintf("active %v, unowned %d, connections %v, events up %v", v.Active, v.Unowned, v.Connections, v.LogStreamUp)
	})
}

// gatherUsers returns, per user, singbox_user_connections,
// singbox_user_source_ips and how many singbox_user_source_ip_bucket
// series it has.
func gatherUsers(t *testing.T, reg *prometheus.Registry) (conns, ips map[string]float64, buckets map[string]int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	conns, ips, buckets = map[string]float64{}, map[string]float64{}, map[string]int{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var user string
			for _, l := range mt.GetLabel() {
				if l.GetName() == "user" {
					user = l.GetValue()
				}
			}
			switch mf.GetName() {
			case "singbox_user_connections":
				conns[user] = mt.GetGauge().GetValue()
			case "singbox_user_source_ips":
				ips[user] = mt.GetGauge().GetValue()
			case "singbox_user_source_ip_bucket":
				buckets[user]++
			}
		}
	}
	return conns, ips, buckets
}

func writeConfig(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	testsupport.Until(t, addr+" to listen", 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// holdingSink accepts connections and keeps them open until they close.
func holdingSink(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// socksDial opens a connection to dst through a SOCKS5 proxy and sends one
// byte, which makes the VLESS client send its request: only then does the
// server see the connection.
func socksDial(proxy, dst string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxy, 10*time.Second)
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		c.Close()
		return nil, err
	}
	ip := ap.Addr().As4()
	p := ap.Port()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := []byte{5, 1, 0, 5, 1, 0, 1, ip[0], ip[1], ip[2], ip[3], byte(p >> 8), byte(p)}
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	var reply [12]byte // method choice (2) and the CONNECT reply (10)
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("socks handshake: %w", err)
	}
	if reply[1] != 0 || reply[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("socks handshake refused: % x", reply)
	}
	if _, err := c.Write([]byte{'x'}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
