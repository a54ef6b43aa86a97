package soak

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netns is a node's network namespace of its own, joined to the host by a
// veth pair shaped with tbf (testing-network.md): the node has an address
// of its own, and setting the host end down cuts it off while its
// processes keep running, as nodes really fail.
type netns struct {
	name, hostIf, hostIP, nsIP string
}

// netnsUsable says whether the soak can give nodes namespaces: root and
// iproute2. BOXFLEET_SOAK_NETNS=0 keeps every node on 127.0.0.1.
func netnsUsable() (bool, string) {
	if os.Getenv("BOXFLEET_SOAK_NETNS") == "0" {
		return false, "BOXFLEET_SOAK_NETNS=0"
	}
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "no ip (iproute2)"
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return false, "no tc (iproute2)"
	}
	return true, ""
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a namespace and its link in 10.213.X.0/30, X drawn so
// that two soaks at once do not collide; everything is removed when the
// test ends, failed or not.
func newNetns(t *testing.T, i int) *netns {
	t.Helper()
	tag := fmt.Sprintf("bfsk%d%04x", i, rand.IntN(1<<16))
	x := 4 * rand.IntN(64)
	n := &netns{name: tag, hostIf: tag + "h", hostIP: fmt.Sprintf("10.213.%d.%d", x/4, 1), nsIP: fmt.Sprintf("10.213.%d.%d", x/4, 2)}
	nsIf := tag + "n"
	ipCmd(t, "ip", "netns", "add", tag)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", tag).Run() })
	ipCmd(t, "ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", n.hostIf).Run() })
	ipCmd(t, "ip", "link", "set", nsIf, "netns", tag)
	ipCmd(t, "ip", "addr", "add", n.hostIP+"/30", "dev", n.hostIf)
	ipCmd(t, "ip", "link", "set", n.hostIf, "up")
	ipCmd(t, "ip", "netns", "exec", tag, "ip", "addr", "add", n.nsIP+"/30", "dev", nsIf)
	ipCmd(t, "ip", "netns", "exec", tag, "ip", "link", "set", nsIf, "up")
	ipCmd(t, "ip", "netns", "exec", tag, "ip", "link", "set", "lo", "up")
	ipCmd(t, "ip", "netns", "exec", tag, "ip", "route", "add", "default", "via", n.hostIP)
	ipCmd(t, "tc", "qdisc", "add", "dev", n.hostIf, "root", "tbf", "rate", "80mbit", "burst", "32kbit", "latency", "50ms")
	return n
}

// wrap runs bin inside the namespace (ip netns exec execs it: the pid is
// the program's).
func (n *netns) wrap(bin string, args []string) (string, []string) {
	if n == nil {
		return bin, args
	}
	return "ip", append([]string{"netns", "exec", n.name, bin}, args...)
}

// cut sets the host end of the link down (true) or up again.
func (n *netns) cut(t *testing.T, down bool) {
	state := "up"
	if down {
		state = "down"
	}
	ipCmd(t, "ip", "link", "set", n.hostIf, state)
}
