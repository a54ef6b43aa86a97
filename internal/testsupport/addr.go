package testsupport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports handed out by FreeAddr come from below Linux's default ephemeral
// range (32768–60999). The kernel never gives these to a listener on port 0
// or to an outgoing connection, so between FreeAddr's check and the moment
// the program under test binds the port, nothing in another test process
// (packages run in parallel) takes it, except another FreeAddr drawing the
// same port of 12,000 at random in that window.
const (
	portLow  = 20000
	portHigh = 32000
)

var handedOut = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// FreeAddr returns a loopback address nothing listens on, never the same
// one twice in a process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(portLow+rand.IntN(portHigh-portLow)))
		if handedOut.m[addr] {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		l.Close()
		// UDP too: some of the programs (sing-box's hysteria2, tuic)
		// listen on the same port number over UDP.
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		u.Close()
		handedOut.m[addr] = true
		return addr
	}
	t.Fatal("no free loopback port")
	return ""
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}
