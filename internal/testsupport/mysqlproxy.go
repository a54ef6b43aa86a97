package testsupport

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// MySQLProxy stands between a program under test and MariaDB and shows a
// test every packet of the MySQL protocol on the way, so that the test can
// count statements or hold a COMMIT from outside the process (a fault a
// hidden flag of the binary would otherwise have to inject).
type MySQLProxy struct {
	t       testing.TB
	ln      net.Listener
	backend string
	hooks   func() PacketHooks

	mu    sync.Mutex
	conns []net.Conn
}

// PacketHooks see one connection's packets, each before it is passed on;
// a hook that blocks holds that direction of its connection. Either may be
// nil. hdr is the 4-byte header: 3 bytes of length and the sequence number
// (0 on the first packet of a command).
type PacketHooks struct {
	FromClient func(hdr, payload []byte)
	FromServer func(hdr, payload []byte)
}

// StartMySQLProxy listens on a loopback port and forwards to dsn's server;
// hooks is called once per accepted connection, so per-connection state
// (prepared statement ids) lives in its closures.
func StartMySQLProxy(t testing.TB, dsn string, hooks func() PacketHooks) *MySQLProxy {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &MySQLProxy{t: t, ln: ln, backend: cfg.Addr, hooks: hooks}
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// DSN is dsn with its address replaced by the proxy's.
func (p *MySQLProxy) DSN(dsn string) string {
	p.t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		p.t.Fatal(err)
	}
	cfg.Addr = p.ln.Addr().String()
	return cfg.FormatDSN()
}

func (p *MySQLProxy) accept() {
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
		h := p.hooks()
		go func() { relay(c, s, h.FromServer); c.Close() }()
		go func() { relay(s, c, h.FromClient); s.Close() }()
	}
}

// relay copies src to dst packet by packet, showing each to hook first.
func relay(dst io.Writer, src io.Reader, hook func(hdr, payload []byte)) {
	for {
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		payload := make([]byte, int(binary.LittleEndian.Uint32(append(hdr[:3:3], 0))))
		if _, err := io.ReadFull(src, payload); err != nil {
			return
		}
		if hook != nil {
			hook(hdr, payload)
		}
		if _, err := dst.Write(append(hdr, payload...)); err != nil {
			return
		}
	}
}

// Close stops listening and cuts every connection.
func (p *MySQLProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// Link is a network link a test can cut: while cut, no packet crosses it
// either way and every connection stays open, as when packets vanish
// (not refused: nothing answers, and only timeouts end the wait). Its
// Hooks go into a MySQLProxy.
type Link struct {
	mu sync.Mutex
	up chan struct{} // closed while the link is up
}

// NewLink returns a link that is up.
func NewLink() *Link {
	l := &Link{up: make(chan struct{})}
	close(l.up)
	return l
}

// Hooks hold every packet, both ways, while the link is cut.
func (l *Link) Hooks() PacketHooks { return PacketHooks{FromClient: l.pass, FromServer: l.pass} }

func (l *Link) pass(_, _ []byte) {
	l.mu.Lock()
	up := l.up
	l.mu.Unlock()
	<-up
}

// Cut stops every packet until Mend.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.up:
		l.up = make(chan struct{})
	default:
	}
}

// Mend lets the held packets and every later one through.
func (l *Link) Mend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.up:
	default:
		close(l.up)
	}
}
