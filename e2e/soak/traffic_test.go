package soak

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// origin is the far end of one user's traffic: a TCP server that reads a
// header (upload and download sizes), the upload, writes the download and
// closes. It counts every byte that crosses its sockets, as the node's
// outbound hands them over: with what the client counted, the truth the
// ledger is held to.
type origin struct {
	addr          string
	read, written atomic.Int64
	l             net.Listener
}

func startOrigin(t *testing.T, listen string) *origin {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{addr: l.Addr().String(), l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go o.serve(c)
		}
	}()
	return o
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

var payload = func() []byte {
	b := make([]byte, 16<<10)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

func (o *origin) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	r := countingReader{c, &o.read}
	var hdr [8]byte
	if n, err := io.ReadFull(c, hdr[:]); err != nil {
		o.read.Add(int64(n)) // a transfer cut in its header
		return
	}
	up, down := int64(binary.BigEndian.Uint32(hdr[:4])), int(binary.BigEndian.Uint32(hdr[4:]))
	if up > maxUpload || down > maxDownload {
		// Not a transfer: a stranger on the origin's ephemeral port, such
		// as a Prometheus still scraping a dead target that had it ("GET "
		// is 1.2 GB of upload). It never crossed a node, so it is not
		// counted.
		return
	}
	o.read.Add(int64(len(hdr)))
	if _, err := io.CopyN(io.Discard, r, up); err != nil {
		return
	}
	for down > 0 {
		n, err := c.Write(payload[:min(down, len(payload))])
		o.written.Add(int64(n))
		if err != nil {
			return
		}
		down -= n
	}
}

// user is one proxy user with a real sing-box client of its own, bound to
// one node, moving paced transfers through it.
type user struct {
	name    string
	node    *node
	limit   int64 // 0: unlimited
	client  string
	origin  *origin
	target  string       // the origin as the node reaches it
	sent    atomic.Int64 // what the client wrote (header and upload)
	recv    atomic.Int64 // what the client read
	ok, bad atomic.Int64 // transfers that completed, that did not
	refused atomic.Bool  // the last transfer failed
	hist    history      // what had crossed lately
	crashed [2]int64     // bytes up and down that crashes under traffic may have lost (see crash)
}

// truth is the range the node's per-user bytes must lie in. A completed
// transfer makes both ends agree; one cut short (a reload, a refusal)
// leaves bytes that only one end saw, which the node may or may not have
// carried.
func (u *user) truth() (upLo, upHi, downLo, downHi int64) {
	return u.origin.read.Load(), u.sent.Load(), u.recv.Load(), u.origin.written.Load()
}

// socksConnect opens a connection to target through the SOCKS5 (mixed)
// inbound at proxy.
func socksConnect(proxy, target string, deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxy, 2*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	host, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	fail := func(err error) (net.Conn, error) { c.Close(); return nil, err }
	var b [4]byte
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fail(err)
	}
	if b[1] != 0 {
		return fail(fmt.Errorf("socks method %d refused", b[1]))
	}
	req := append([]byte{5, 1, 0, 1}, net.ParseIP(host).To4()...)
	if _, err := c.Write(append(req, byte(p>>8), byte(p))); err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return fail(err)
	}
	if b[1] != 0 {
		return fail(fmt.Errorf("socks connect refused: reply %d", b[1]))
	}
	rest := 2 // the bound address, then its port
	switch b[3] {
	case 1:
		rest += 4
	case 4:
		rest += 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return fail(err)
		}
		rest += int(l[0])
	}
	if _, err := io.CopyN(io.Discard, c, int64(rest)); err != nil {
		return fail(err)
	}
	return c, nil
}

// transfer sends up bytes and receives down bytes through the user's
// client, counting what crossed on the client's side.
func (u *user) transfer(up, down int) error {
	c, err := socksConnect(u.client, u.target, time.Now().Add(20*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(up))
	binary.BigEndian.PutUint32(hdr[4:], uint32(down))
	n, err := c.Write(hdr[:])
	u.sent.Add(int64(n))
	if err != nil {
		return err
	}
	for left := up; left > 0; {
		n, err := c.Write(payload[:min(left, len(payload))])
		u.sent.Add(int64(n))
		if err != nil {
			return err
		}
		left -= n
	}
	got, err := io.Copy(io.Discard, countingReader{c, &u.recv})
	if err == nil && got != int64(down) {
		err = fmt.Errorf("received %d of %d bytes", got, down)
	}
	return err
}

// gate lets a node's traffic be held: transfers take it shared, a fault
// that must find the node idle takes it alone.
type gate struct{ sync.RWMutex }

// A transfer's upload and download are at most these.
const (
	maxUpload   = 4096
	maxDownload = 96 << 10
)

// maxTransfer bounds the bytes of one transfer: header, upload, download.
const maxTransfer = 8 + maxUpload + maxDownload

// run moves transfers until stop closes: 0.5–4 KiB up, 16–96 KiB down,
// 100–300 ms apart, about 250 KB/s. A user refused (over quota) keeps
// trying with header-only probes, so what it sends while cut off stays
// small.
func (u *user) run(stop <-chan struct{}, wg *sync.WaitGroup, seed uint64) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(seed, 1))
	for {
		select {
		case <-stop:
			return
		default:
		}
		up, down := 512+rng.IntN(3584), 16<<10+rng.IntN(80<<10)
		if u.refused.Load() {
			up, down = 0, 1024
		}
		u.node.gate.RLock()
		err := u.transfer(up, down)
		u.node.gate.RUnlock()
		if err != nil {
			u.bad.Add(1)
		} else {
			u.ok.Add(1)
		}
		u.refused.Store(err != nil && u.limit > 0)
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
	}
}

// served tries a transfer up to three times (a reload refuses new
// connections for some milliseconds).
func (u *user) served() error {
	var err error
	for range 3 {
		if err = u.transfer(100, 1000); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return errors.Join(errors.New("3 transfers failed"), err)
}

// crossing is what had crossed for a user at one instant, as truth gives
// it.
type crossing struct {
	at                         time.Time
	upLo, upHi, downLo, downHi int64
}

// history keeps a user's recent crossings (sampled every 100 ms, the last
// 5 min), so that the window a crash declares (since the exporter's last
// poll) can be told in bytes afterwards.
type history struct {
	mu sync.Mutex
	s  []crossing
}

func (h *history) add(c crossing) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s = append(h.s, c)
	i := 0
	for i < len(h.s) && c.at.Sub(h.s[i].at) > 5*time.Minute {
		i++
	}
	h.s = h.s[i:]
}

// at returns the last crossing at or before t (before) or the first at or
// after it (!before); ok is false when the history holds none.
func (h *history) at(t time.Time, before bool) (c crossing, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.s {
		if before && !h.s[i].at.After(t) {
			c, ok = h.s[i], true
		}
		if !before && !h.s[i].at.Before(t) {
			return h.s[i], true
		}
	}
	return c, ok
}

// sampleCrossings records every user's crossings every 100 ms until stop
// closes.
func sampleCrossings(users []*user, stop <-chan struct{}) {
	for {
		now := time.Now()
		for _, u := range users {
			upLo, upHi, downLo, downHi := u.truth()
			u.hist.add(crossing{now, upLo, upHi, downLo, downHi})
		}
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestOriginIgnoresStrangers: a Prometheus scrape that reaches an origin's
// port directly never crossed a node and must not count; a transfer still
// counts every byte.
func TestOriginIgnoresStrangers(t *testing.T) {
	o := startOrigin(t, "127.0.0.1:0")
	exchange := func(b []byte) int64 {
		t.Helper()
		c, err := net.Dial("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, c)
		return n
	}
	// A scrape waits for an answer that never comes: the origin reads it
	// as a header asking for 1.2 GB of upload, and closes.
	exchange([]byte("GET /metrics HTTP/1.1\r\nHost: " + o.addr + "\r\nUser-Agent: Prometheus/3.14.0\r\n\r\n"))
	if r, w := o.read.Load(), o.written.Load(); r != 0 || w != 0 {
		t.Errorf("a scrape counted %d bytes read and %d written", r, w)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], 100)
	binary.BigEndian.PutUint32(hdr[4:], 1000)
	if got := exchange(append(hdr[:], make([]byte, 100)...)); got != 1000 {
		t.Fatalf("a transfer received %d bytes, want 1000", got)
	}
	if r, w := o.read.Load(), o.written.Load(); r != 108 || w != 1000 {
		t.Errorf("a transfer counted %d bytes read and %d written, want 108 and 1000", r, w)
	}
}
