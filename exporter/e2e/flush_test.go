package e2e

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// A planned stop of sing-box loses nothing when POST /-/flush comes first,
// as sing-box's systemd drop-in does it. The exporter here polls ten
// minutes apart, so every byte of the transfer is moved after its last
// poll: without the flush all of it would be lost with sing-box's counters.
func TestFlushBeforeStopClashAPI(t *testing.T) {
	testFlushBeforeStop(t, "sing-box", false)
}

func TestFlushBeforeStopV2RayAPI(t *testing.T) {
	testFlushBeforeStop(t, "sing-box-v2ray", true)
}

func testFlushBeforeStop(t *testing.T, singbox string, exact bool) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startNode(t, singbox, exact)
	n.exporter.args = append(n.exporter.args, "--singbox.poll-interval=10m", "--singbox.poll-max-interval=10m")
	n.exporter.restart()
	waitHTTP(t, n.metricsURL, 20*time.Second)
	n.waitUp()
	n.users = n.users[:1] // alice alone; bob's origin sees nothing
	alice := n.users[0]

	// Short connections leave a remainder for the flush to settle; the
	// paced transfers end right before it.
	alice.short(t, 20, 20_000)
	alice.upload(t, 2<<20, pace)
	alice.download(t, 8<<20, pace)
	before, crossed := userBytes(n.scrape(), alice.name), float64(sum(alice.origin.truth()))
	t.Logf("before the flush: %.0f of %.0f bytes counted", before, crossed)
	if before > crossed/2 {
		t.Fatalf("the exporter already counted %.0f bytes before the flush: the test cannot tell a flush from a poll", before)
	}

	flush(t, strings.TrimSuffix(n.metricsURL, "/metrics")+"/-/flush")
	n.server.stop() // SIGTERM, as systemd sends it after ExecStop

	// The flush wrote the state: an exporter killed right after still has
	// every byte.
	n.exporter.cmd.Process.Kill()
	n.exporter.cmd.Wait()
	n.exporter.cmd = nil
	n.exporter.start()
	waitHTTP(t, n.metricsURL, 20*time.Second)

	mf := n.scrape()
	up, down := alice.origin.truth()
	for _, d := range []struct {
		dir  string
		want uint64
	}{{"upload", up}, {"download", down}} {
		got, _ := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": alice.name, "direction": d.dir})
		// In Clash API mode the user of what closed connections moved
		// between snapshots comes from sing-box's log; a remainder whose
		// connection the log had not named by the flush's snapshot is
		// declared unattributed (seen once in a rehearsal of .ci/run:
		// 20 KB of one short connection). That is not lost, and n.check
		// below holds the node total to it; only a shortfall beyond it,
		// or any excess, is.
		short := 4096.0
		if !exact {
			u, _ := value(mf, "singbox_unattributed_traffic_bytes_total", map[string]string{"direction": d.dir})
			short += u
		}
		if got > float64(d.want)+4096 || float64(d.want)-got > short {
			t.Errorf("%s: metered %.0f bytes after the stop, %d crossed", d.dir, got, d.want)
		}
	}
	n.check(mf, math.Inf(1)) // node total and users + unattributed
}

// flush POSTs to the exporter's /-/flush, which answers once it has polled
// sing-box and written its state.
func flush(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("flush: %s: %s", resp.Status, body)
	}
}

func userBytes(mf map[string]*dto.MetricFamily, user string) float64 {
	return sumDirections(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": user})
}

func sum(up, down uint64) uint64 { return up + down }

// In API service mode closed connections are counted as they close; what a
// stop could lose is what open connections moved since their last update
// (every second). A download is cut by a flushed stop in mid-transfer: the
// flush counts its bytes up to that moment from /connections, so what is
// lost is only what moved between the flush's answer and sing-box's exit.
func TestFlushBeforeStopAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sing-box processes")
	}
	n := startOverlapNode(t, modeAPI)
	ana := n.users[0]
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := socksClient(ana.proxy, true)
		resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=%d&pause=%s", ana.origin.addr, 200<<20, pace))
		if err != nil {
			return
		}
		io.Copy(io.Discard, resp.Body) // cut short by the stop
		resp.Body.Close()
	}()
	time.Sleep(2500 * time.Millisecond) // mid-transfer, between two updates
	flush(t, n.flushURL)
	_, sent := ana.origin.truth()
	n.server.stop()
	<-done
	mf := n.quiesce()
	got, _ := value(mf, "singbox_user_traffic_bytes_total", map[string]string{"user": ana.name, "direction": "download"})
	_, crossed := ana.origin.truth()
	t.Logf("download: %.0f metered; %d written by the origin at the flush, %d in all", got, sent, crossed)
	// The origin writes into socket buffers ahead of sing-box, so it has
	// written up to a few buffers more than sing-box forwarded.
	if got < float64(sent)-1<<20 || got > float64(crossed) {
		t.Errorf("metered %.0f bytes, want the %d sent before the flush (within 1 MiB of socket buffers) and at most %d", got, sent, crossed)
	}
}
