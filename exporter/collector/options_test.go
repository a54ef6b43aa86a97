package collector

import (
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/meter"
)

func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// usersExposed returns the users with traffic series, and the number of
// series.
func usersExposed(t *testing.T, c prometheus.Collector) (map[string]bool, int) {
	t.Helper()
	users := map[string]bool{}
	mf := gather(t, c)["singbox_user_traffic_bytes_total"]
	for _, m := range mf.GetMetric() {
		users[label(m, "user")] = true
	}
	return users, len(mf.GetMetric())
}

// --collector.user-min-bytes hides users below the threshold, both series
// at once, and says how many it hid; 0 hides nobody.
func TestUserMinBytes(t *testing.T) {
	v := sampleView()
	v.Counters.Users = map[string]attribution.Traffic{
		"idle":     {},
		"one-byte": {Up: 1},
		"upload":   {Up: 999},
		"both":     {Up: 500, Down: 500},
		"big":      {Up: 1 << 40, Down: 1 << 41},
	}
	for _, tc := range []struct {
		min    uint64
		want   []string
		hidden float64
	}{
		{0, []string{"idle", "one-byte", "upload", "both", "big"}, 0},
		{1, []string{"one-byte", "upload", "both", "big"}, 1},
		{1000, []string{"both", "big"}, 3},
	} {
		c := NewWithOptions(fixed(v), Options{UserMinBytes: tc.min})
		got, series := usersExposed(t, c)
		if len(got) != len(tc.want) || series != 2*len(tc.want) {
			t.Errorf("min %d: %d users, %d series exposed (%v), want %v with two series each", tc.min, len(got), series, got, tc.want)
		}
		for _, u := range tc.want {
			if !got[u] {
				t.Errorf("min %d: %s hidden, want exposed", tc.min, u)
			}
		}
		if h := hiddenBy(t, c, "min_bytes"); h != tc.hidden {
			t.Errorf("min %d: singbox_exporter_users_hidden{reason=\"min_bytes\"} %v, want %v", tc.min, h, tc.hidden)
		}
	}
}

func hiddenBy(t *testing.T, c prometheus.Collector, reason string) float64 {
	t.Helper()
	for _, m := range gather(t, c)["singbox_exporter_users_hidden"].GetMetric() {
		if label(m, "reason") == reason {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no singbox_exporter_users_hidden{reason=%q}", reason)
	return 0
}

// clock is a time the test moves, read by scrapes.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// --collector.user-idle-timeout hides a user whose counters stood still
// that long, and shows the user again, with the whole value, at the next
// byte. Users the exporter forgot are forgotten here too.
func TestUserIdleTimeout(t *testing.T) {
	c, lv, clk := idleCollector()
	exposed := func(want ...string) {
		t.Helper()
		got, _ := usersExposed(t, c)
		if len(got) != len(want) {
			t.Fatalf("at %s: users %v exposed, want %v", clk.now().Format("15:04"), got, want)
		}
		for _, u := range want {
			if !got[u] {
				t.Fatalf("at %s: %s hidden, want exposed (%v)", clk.now().Format("15:04"), u, got)
			}
		}
	}
	exposed("alice", "bob")
	clk.add(40 * time.Minute)
	lv.set(func(v *meter.View) { v.Counters.Users["alice"] = attribution.Traffic{Up: 11, Down: 20} })
	exposed("alice", "bob")
	clk.add(30 * time.Minute) // bob idle for 70 minutes, alice for 30
	exposed("alice")
	if h := hiddenBy(t, c, "idle"); h != 1 {
		t.Errorf("singbox_exporter_users_hidden{reason=\"idle\"} = %v, want 1", h)
	}
	clk.add(time.Hour)
	exposed()
	lv.set(func(v *meter.View) { v.Counters.Users["bob"] = attribution.Traffic{Up: 1, Down: 5} })
	exposed("bob")
	for _, m := range gather(t, c)["singbox_user_traffic_bytes_total"].GetMetric() {
		if label(m, "direction") == "download" && m.GetCounter().GetValue() != 5 {
			t.Errorf("bob came back with download %v, want his whole counter, 5", m.GetCounter().GetValue())
		}
	}
	lv.set(func(v *meter.View) { delete(v.Counters.Users, "alice") })
	exposed("bob")
	if _, ok := c.moved["alice"]; ok {
		t.Error("a user gone from the counters is still remembered")
	}
}

var fleetKey = []byte("0123456789abcdef-fleet-secret")

// buckets returns user -> buckets exposed.
func bucketsOf(t *testing.T, c prometheus.Collector) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range gather(t, c)["singbox_user_source_ip_bucket"].GetMetric() {
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("bucket series with value %v, want 1", m.GetGauge().GetValue())
		}
		out[label(m, "user")] = append(out[label(m, "user")], label(m, "bucket"))
	}
	return out
}

func activeView(active map[string][]string) fixed {
	v := sampleView()
	v.Active = map[string]attribution.Activity{}
	for u, srcs := range active {
		set := map[string]bool{}
		for _, s := range srcs {
			set[s] = true
		}
		v.Active[u] = attribution.Activity{Connections: len(srcs), SourceIPs: len(set), Sources: set}
	}
	return fixed(v)
}

// One device connected to two nodes is one bucket on both, so the union
// across nodes counts it once; two devices are two buckets. Nodes must
// share the key: with another key the same address lands elsewhere.
func TestDeviceBucketsAcrossNodes(t *testing.T) {
	nodeA := NewWithOptions(activeView(map[string][]string{"alice": {"198.51.100.7"}, "bob": {"203.0.113.1", "203.0.113.2"}}), Options{DeviceKey: fleetKey})
	nodeB := NewWithOptions(activeView(map[string][]string{"alice": {"198.51.100.7"}, "bob": {"203.0.113.1"}}), Options{DeviceKey: fleetKey})
	a, b := bucketsOf(t, nodeA), bucketsOf(t, nodeB)
	union := func(user string) int {
		set := map[string]bool{}
		for _, x := range append(a[user], b[user]...) {
			set[x] = true
		}
		return len(set)
	}
	if len(a["alice"]) != 1 || fmt.Sprint(a["alice"]) != fmt.Sprint(b["alice"]) {
		t.Fatalf("alice's one address: buckets %v on A and %v on B, want the same single bucket", a["alice"], b["alice"])
	}
	if n := union("alice"); n != 1 {
		t.Errorf("alice: %d devices across two nodes, want 1", n)
	}
	if n := union("bob"); n != 2 {
		t.Errorf("bob: %d devices across two nodes, want 2", n)
	}
	moved := false
	for i := range 20 { // a different key moves most addresses; 20 tries make a coincidence negligible
		addr := fmt.Sprintf("198.51.100.%d", i)
		x := bucketsOf(t, NewWithOptions(activeView(map[string][]string{"u": {addr}}), Options{DeviceKey: fleetKey}))["u"]
		y := bucketsOf(t, NewWithOptions(activeView(map[string][]string{"u": {addr}}), Options{DeviceKey: []byte("another-key-of-sixteen-bytes")}))["u"]
		moved = moved || fmt.Sprint(x) != fmt.Sprint(y)
	}
	if !moved {
		t.Error("buckets do not depend on the key")
	}
}

// What is one device: an IPv4 address (also written IPv4-mapped), an
// IPv6 /64. Unparseable addresses count as nothing.
func TestDeviceAddresses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs []string
		want  int
	}{
		{"mapped IPv4 is the IPv4 address", []string{"192.0.2.1", "::ffff:192.0.2.1"}, 1},
		{"privacy addresses of one /64", []string{"2001:db8:1:2::1", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "fe80::1%eth0"}, 2},
		{"two /64s", []string{"2001:db8:1:2::1", "2001:db8:1:3::1"}, 2},
		{"garbage", []string{"", "not-an-ip"}, 0},
	} {
		got := len(bucketsOf(t, NewWithOptions(activeView(map[string][]string{"u": tc.addrs}), Options{DeviceKey: fleetKey}))["u"])
		if got != tc.want {
			t.Errorf("%s: %d buckets, want %d", tc.name, got, tc.want)
		}
	}
}

// A user with very many addresses costs at most MaxBucketsPerUser series,
// the lowest buckets, so nodes that cut agree on what they keep.
func TestDeviceBucketsBounded(t *testing.T) {
	var addrs []string
	for i := range 1000 {
		addrs = append(addrs, fmt.Sprintf("10.%d.%d.1", i/256, i%256))
	}
	c := NewWithOptions(activeView(map[string][]string{"crowd": addrs}), Options{DeviceKey: fleetKey})
	all := newDeviceHasher(fleetKey).buckets(map[string][]string{"crowd": addrs})["crowd"]
	got := bucketsOf(t, c)["crowd"]
	slices.SortFunc(got, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	if len(got) != MaxBucketsPerUser {
		t.Fatalf("%d bucket series for 1,000 addresses, want %d", len(got), MaxBucketsPerUser)
	}
	for i, b := range all {
		if fmt.Sprint(b) != got[i] {
			t.Fatalf("bucket %d is %s, want %d: the lowest must be kept", i, got[i], b)
		}
	}
}

// Without a key nothing is exposed, and with one no address ever is.
func TestDeviceBucketsNeedKeyAndHideAddresses(t *testing.T) {
	v := activeView(map[string][]string{"alice": {"198.51.100.7", "2001:db8::5"}})
	if n := testutil.CollectAndCount(New(v), "singbox_user_source_ip_bucket"); n != 0 {
		t.Errorf("%d bucket series without a key, want 0", n)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewWithOptions(v, Options{DeviceKey: fleetKey}))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, "singbox_user_source_ip_bucket{") {
		t.Fatal("no bucket series with a key")
	}
	for _, s := range []string{"198.51.100.7", "2001:db8", string(fleetKey)} {
		if strings.Contains(body, s) {
			t.Errorf("the exposition contains %q", s)
		}
	}
}

func TestLoadDeviceKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := dir + "/" + name
		if err := osWriteFile(p, s); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if k, err := LoadDeviceKey(write("ok", "  0123456789abcdef0123\n")); err != nil || string(k) != "0123456789abcdef0123" {
		t.Errorf("key %q, %v; want the trimmed contents", k, err)
	}
	if _, err := LoadDeviceKey(write("short", "tooshort\n")); err == nil {
		t.Error("an 8-byte key was accepted")
	} else if strings.Contains(err.Error(), "tooshort") {
		t.Errorf("the error shows the key: %v", err)
	}
	if _, err := LoadDeviceKey(dir + "/missing"); err == nil {
		t.Error("a missing key file was accepted")
	}
}

// BenchmarkDeviceBuckets is the device part of one scrape: 5,000 users
// online, two addresses each, most of them seen by the previous scrape.
func BenchmarkDeviceBuckets(b *testing.B) {
	src := map[string][]string{}
	for i := range 5000 {
		src[fmt.Sprintf("user%04d", i)] = []string{fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("2001:db8:%x::1", i)}
	}
	h := newDeviceHasher(fleetKey)
	b.ReportAllocs()
	for b.Loop() {
		h.buckets(src)
	}
}

func osWriteFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }

// BenchmarkScrape5kUsersDevices is BenchmarkScrape5kUsers with the device
// key set: the same scrape plus 5,000 bucket series.
func BenchmarkScrape5kUsersDevices(b *testing.B) {
	v := sampleView()
	for i := range 5000 {
		u := fmt.Sprintf("user%04d", i)
		v.Counters.Users[u] = attribution.Traffic{Up: uint64(i) << 20, Down: uint64(i) << 24}
		v.Active[u] = attribution.Activity{Connections: 2, SourceIPs: 1, Sources: map[string]bool{fmt.Sprintf("10.0.%d.%d", i/256, i%256): true}}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewWithOptions(fixed(v), Options{UserMinBytes: 1, DeviceKey: fleetKey}))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

// idleCollector exposes alice and bob with --collector.user-min-bytes 1
// and a one-hour --collector.user-idle-timeout, over a view and a clock
// the test moves.
func idleCollector() (*Collector, *liveView, *clock) {
	v := sampleView()
	v.Counters.Users = map[string]attribution.Traffic{"alice": {Up: 10, Down: 20}, "bob": {Up: 1, Down: 1}}
	lv := &liveView{v: v}
	clk := &clock{t: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	c := NewWithOptions(lv, Options{UserMinBytes: 1, UserIdleTimeout: time.Hour})
	c.now = clk.now
	return c, lv, clk
}

// recentOf returns the users in singbox_user_traffic_recent_bytes_total
// with their download value, and checks that each has both directions
// and the value of its singbox_user_traffic_bytes_total series.
func recentOf(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	mfs := gather(t, c)
	all := map[string]float64{}
	for _, m := range mfs["singbox_user_traffic_bytes_total"].GetMetric() {
		all[label(m, "user")+"/"+label(m, "direction")] = m.GetCounter().GetValue()
	}
	out, dirs := map[string]float64{}, map[string]int{}
	for _, m := range mfs["singbox_user_traffic_recent_bytes_total"].GetMetric() {
		u, d := label(m, "user"), label(m, "direction")
		v, ok := all[u+"/"+d]
		if !ok || v != m.GetCounter().GetValue() {
			t.Errorf("recent %s/%s = %v, the user's traffic series %v (exposed %v)", u, d, m.GetCounter().GetValue(), v, ok)
		}
		dirs[u]++
		if d == "download" {
			out[u] = v
		}
	}
	for u, n := range dirs {
		if n != 2 {
			t.Errorf("recent %s: %d directions, want 2", u, n)
		}
	}
	if n := mfs["singbox_exporter_user_recent_series"].GetMetric()[0].GetGauge().GetValue(); int(n) != 2*len(out) {
		t.Errorf("singbox_exporter_user_recent_series %v, with %d users listed", n, len(out))
	}
	return out
}

// --collector.user-recent-window lists again the users whose counters
// moved within the window, with the same values: every user at first (a
// restarted exporter cannot know who moved before it), then only movers,
// including one that comes back from idle and one newly exposed by the
// byte threshold, never a hidden user.
func TestUserRecentWindow(t *testing.T) {
	v := sampleView()
	v.Counters.Users = map[string]attribution.Traffic{"alice": {Up: 10, Down: 20}, "bob": {Up: 1, Down: 1}, "carol": {}}
	lv := &liveView{v: v}
	clk := &clock{t: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}
	c := NewWithOptions(lv, Options{UserMinBytes: 1, UserIdleTimeout: time.Hour, UserRecentWindow: 2 * time.Minute})
	c.now = clk.now
	recent := func(want ...string) {
		t.Helper()
		got := recentOf(t, c)
		if len(got) != len(want) {
			t.Fatalf("at %s: recent %v, want %v", clk.now().Format("15:04:05"), got, want)
		}
		for _, u := range want {
			if _, ok := got[u]; !ok {
				t.Fatalf("at %s: %s not recent, want %v (got %v)", clk.now().Format("15:04:05"), u, want, got)
			}
		}
	}
	recent("alice", "bob") // carol never moved a byte: hidden, so not recent either
	if w := gather(t, c)["singbox_exporter_user_recent_window_seconds"].GetMetric()[0].GetGauge().GetValue(); w != 120 {
		t.Errorf("window %v s, want 120", w)
	}
	clk.add(119 * time.Second)
	recent("alice", "bob")
	lv.set(func(v *meter.View) { v.Counters.Users["alice"] = attribution.Traffic{Up: 11, Down: 21} })
	clk.add(time.Second)
	recent("alice") // bob's two minutes are over
	lv.set(func(v *meter.View) { v.Counters.Users["carol"] = attribution.Traffic{Down: 7} })
	clk.add(119 * time.Second)
	recent("alice", "carol")
	clk.add(time.Second)
	recent("carol")
	clk.add(2 * time.Hour) // everyone idle and hidden
	recent()
	lv.set(func(v *meter.View) { v.Counters.Users["bob"] = attribution.Traffic{Up: 1, Down: 9} })
	if got := recentOf(t, c); len(got) != 1 || got["bob"] != 9 {
		t.Fatalf("bob back from idle: recent %v, want bob with his whole counter, 9", got)
	}

	// Off, neither the series nor the window is there.
	off := NewWithOptions(lv, Options{UserMinBytes: 1})
	mfs := gather(t, off)
	if mfs["singbox_user_traffic_recent_bytes_total"] != nil || mfs["singbox_exporter_user_recent_window_seconds"] != nil || mfs["singbox_exporter_user_recent_series"] != nil {
		t.Error("recent series exposed without a window")
	}
}
