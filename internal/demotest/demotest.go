// Package demotest helps tests that run scripts/demo.sh, the whole loop on
// loopback: the demo test itself and the browser test that drives its
// fleet.
package demotest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// offsets are the ports the demo derives from BOXFLEET_DEMO_PORT: the
// controller, Prometheus, Alertmanager, blackbox, and per node its three
// inbounds, Clash API, exporter and (demo-1) API service.
var offsets = []int{0, 1010, 1013, 1035, 12010, 12011, 12012, 12015, 12016, 12017, 12020, 12021, 12022, 12025, 12026}

// FreeBase picks a base port such that every port the demo derives from it
// is free now.
//
// Every derived port stays below 20,000: under Linux's ephemeral range
// (32768-60999), from which the kernel hands local ports to outgoing
// connections, so no connection of the demo's own programs takes one
// between this check and the bind (a base of 27736 once lost its exporter's
// port, 39762, that way), and under testsupport.FreeAddr's 20,000-32,000,
// so no test running beside it draws one.
func FreeBase(t testing.TB) int {
	t.Helper()
	for range 50 {
		base := 2000 + rand.IntN(5000) // the highest port: base + 12026 < 20,000
		ok := true
		for _, off := range offsets {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// ReadUntil reads the demo's output until a line contains marker and
// returns what it read; it fails the test if the demo exits or the marker
// does not come in time.
func ReadUntil(t testing.TB, r io.Reader, marker string, timeout time.Duration) string {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var b strings.Builder
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo exited before %q:\n%s", marker, b.String())
			}
			b.WriteString(l + "\n")
			if strings.Contains(l, marker) {
				return b.String()
			}
		case <-deadline:
			t.Fatalf("no %q within %s:\n%s", marker, timeout, b.String())
		}
	}
}
