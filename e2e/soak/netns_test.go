package soak

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netns is a network namespace of the soak's own, joined to the host by a
// veth pair shaped with tbf (testing-network.md): the program in it (a
// node's sing-box and exporter, MariaDB, a controller) has an address of
// its own, and a cut takes it off the network while it keeps running, as
// machines really fail. The host forwards between the soak's links only
// (per-link forwarding; net.ipv4.ip_forward stays as it is), so a node
// reaches a controller and a controller MariaDB through the host, each over
// its own link.
type netns struct {
	name, hostIf, nsIf, hostIP, nsIP, hostMAC, nsMAC string
}

// soakNet is the first of the five /24s of 10.213.0.0/16 this soak's links
// use (one /30 in each), drawn so that two soaks at once rarely collide.
var soakNet = 5 * rand.IntN(50)

// Link numbers: one namespace each.
const (
	linkN1 = iota
	linkN2
	linkMariaDB
	linkC1
	linkC2
)

// netnsUsable says whether the soak can give programs namespaces: root and
// iproute2. BOXFLEET_SOAK_NETNS=0 keeps everything on 127.0.0.1.
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

// shaped is the link's usual queueing discipline.
var shaped = []string{"tbf", "rate", "80mbit", "burst", "32kbit", "latency", "50ms"}

// newNetns creates namespace i and its link in 10.213.(soakNet+i).0/30;
// everything is removed when the test ends, failed or not. Each end knows
// the other's MAC address for good (a permanent neighbour entry): during a
// cut, ARP fails too, and the kernel would then answer senders at once
// with "no route to host" instead of letting their packets vanish.
func newNetns(t *testing.T, i int) *netns {
	t.Helper()
	tag := fmt.Sprintf("bfsk%d%04x", i, rand.IntN(1<<16))
	x := soakNet + i
	n := &netns{name: tag, hostIf: tag + "h", nsIf: tag + "n",
		hostIP: fmt.Sprintf("10.213.%d.1", x), nsIP: fmt.Sprintf("10.213.%d.2", x),
		hostMAC: fmt.Sprintf("02:bf:0a:d5:%02x:01", x), nsMAC: fmt.Sprintf("02:bf:0a:d5:%02x:02", x)}
	ipCmd(t, "ip", "netns", "add", tag)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", tag).Run() })
	ipCmd(t, "ip", "link", "add", n.hostIf, "address", n.hostMAC, "type", "veth", "peer", "name", n.nsIf, "address", n.nsMAC)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", n.hostIf).Run() })
	ipCmd(t, "ip", "link", "set", n.nsIf, "netns", tag)
	ipCmd(t, "ip", "addr", "add", n.hostIP+"/30", "dev", n.hostIf)
	ipCmd(t, "ip", "link", "set", n.hostIf, "up")
	ipCmd(t, "ip", "neigh", "replace", n.nsIP, "lladdr", n.nsMAC, "dev", n.hostIf, "nud", "permanent")
	// What arrives on this link may leave by another of the soak's links
	// (a node's agent calling a controller): forwarding on this interface
	// only, which the interface takes with it when it is deleted.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+n.hostIf+"/forwarding", []byte("1"), 0o644); err != nil {
		t.Fatalf("forwarding on %s: %v", n.hostIf, err)
	}
	in := func(args ...string) { ipCmd(t, append([]string{"ip", "netns", "exec", tag}, args...)...) }
	in("ip", "addr", "add", n.nsIP+"/30", "dev", n.nsIf)
	in("ip", "link", "set", n.nsIf, "up")
	in("ip", "link", "set", "lo", "up")
	in("ip", "neigh", "replace", n.hostIP, "lladdr", n.hostMAC, "dev", n.nsIf, "nud", "permanent")
	in("ip", "route", "add", "default", "via", n.hostIP)
	ipCmd(t, append([]string{"tc", "qdisc", "add", "dev", n.hostIf, "root"}, shaped...)...)
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

// cut drops every packet on the link, both ways, silently (down), or lets
// them through again. A tbf whose bucket holds one byte passes no packet:
// each is larger than the bucket, and tbf drops it. Setting the link down
// would not do: the host would lose the route to the namespace and send
// what it has for it out of its default route, off the machine.
func (n *netns) cut(t *testing.T, down bool) {
	t.Helper()
	drop := []string{"tbf", "rate", "8bit", "burst", "1", "limit", "1"}
	if down {
		ipCmd(t, append([]string{"tc", "qdisc", "replace", "dev", n.hostIf, "root"}, drop...)...)
		ipCmd(t, append([]string{"ip", "netns", "exec", n.name, "tc", "qdisc", "replace", "dev", n.nsIf, "root"}, drop...)...)
		return
	}
	ipCmd(t, "ip", "netns", "exec", n.name, "tc", "qdisc", "del", "dev", n.nsIf, "root")
	ipCmd(t, append([]string{"tc", "qdisc", "replace", "dev", n.hostIf, "root"}, shaped...)...)
}
