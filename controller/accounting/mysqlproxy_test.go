package accounting

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// commitDelayProxy stands between one controller and MariaDB and holds
// every COMMIT the controller sends for a while before passing it on: the
// fault injection that used to be a hidden flag of the binary, now done
// from outside the process. While a COMMIT is held, the transaction has
// done its reads and writes and is not yet committed, so a kill at that
// moment lands between query and commit.
type commitDelayProxy struct {
	t       *testing.T
	ln      net.Listener
	backend string
	delay   time.Duration
	held    atomic.Int32 // COMMITs being held now
	total   atomic.Int64 // COMMITs held so far
	mu      sync.Mutex
	conns   []net.Conn
}

func newCommitDelayProxy(t *testing.T, backend string, delay time.Duration) *commitDelayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitDelayProxy{t: t, ln: ln, backend: backend, delay: delay}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// dsn is dsn with its address replaced by the proxy's.
func (p *commitDelayProxy) dsn(dsn string) string {
	p.t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		p.t.Fatal(err)
	}
	cfg.Addr = p.ln.Addr().String()
	return cfg.FormatDSN()
}

func (p *commitDelayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(c, s); c.Close() }()
		go func() { p.forward(s, c); s.Close() }()
	}
}

// forward copies the client's packets to the server one by one (the MySQL
// protocol frames every packet with a 3-byte length and a sequence byte),
// holding a COM_QUERY "COMMIT".
func (p *commitDelayProxy) forward(dst io.Writer, src io.Reader) {
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(append(hdr[:3:3], 0)))
		payload := make([]byte, n)
		if _, err := io.ReadFull(src, payload); err != nil {
			return
		}
		if n > 0 && payload[0] == 0x03 && bytes.EqualFold(bytes.TrimSpace(payload[1:]), []byte("COMMIT")) {
			p.held.Add(1)
			p.total.Add(1)
			time.Sleep(p.delay)
			p.held.Add(-1)
		}
		if _, err := dst.Write(append(hdr, payload...)); err != nil {
			return
		}
	}
}

// waitHeld waits until a COMMIT is being held, and reports whether one was
// within d.
func (p *commitDelayProxy) waitHeld(d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if p.held.Load() > 0 {
			return true
		}
	}
	return false
}

func (p *commitDelayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}
