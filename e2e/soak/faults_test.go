package soak

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// fault is one entry of the schedule. Faults run one after another, Gap
// apart, except an outage, which runs beside the others (they wait for its
// target).
type fault struct {
	Kind   string // sigkill, sigterm, sigstop, prom-unreachable, state-readonly, state-full, outage, cut
	Target string // sing-box:n1, exporter:n2, node:n1, controller:c1, controller:leader, prometheus, alertmanager, mariadb
	Hold   time.Duration
	Gap    time.Duration
}

// concurrent faults run beside the others: they hold a node, a link or
// MariaDB down for longer than the others take.
func (f fault) concurrent() bool { return f.Kind == "outage" || f.Kind == "cut" }

func (f fault) String() string {
	return fmt.Sprintf("%-16s %-18s hold %-6s after %s", f.Kind, f.Target, f.Hold.Round(100*time.Millisecond), f.Gap.Round(100*time.Millisecond))
}

// schedule draws the faults from seed: decks of every kind on every
// target, each deck shuffled, until the estimated time fills duration
// (at least one deck). Holds and gaps are drawn too, so a seed replays the
// same faults in the same order with the same holds.
func schedule(seed uint64, duration time.Duration, cuts bool) []fault {
	rng := rand.New(rand.NewPCG(seed, 14))
	procs := []string{"sing-box:n1", "sing-box:n2", "exporter:n1", "exporter:n2", "controller:c1", "controller:c2",
		"prometheus", "alertmanager", "mariadb"}
	promGap := 20 * time.Second
	if duration >= 20*time.Minute {
		promGap = 330 * time.Second // past Prometheus's 5 min lookback
	}
	var out []fault
	var spent time.Duration
	for len(out) == 0 || spent < duration {
		var deck []fault
		for _, p := range procs {
			for _, k := range []string{"sigkill", "sigterm"} {
				deck = append(deck, fault{Kind: k, Target: p, Hold: time.Duration(500+rng.IntN(3500)) * time.Millisecond})
			}
		}
		n := []string{"n1", "n2"}
		deck = append(deck,
			fault{Kind: "sigstop", Target: "controller:leader", Hold: 7 * time.Second}, // past the 3 s lease, twice
			fault{Kind: "prom-unreachable", Target: "prometheus", Hold: promGap},
			fault{Kind: "state-readonly", Target: "exporter:" + n[rng.IntN(2)], Hold: 10 * time.Second},
			fault{Kind: "state-full", Target: "exporter:" + n[rng.IntN(2)], Hold: 10 * time.Second},
			// Down past NodeDown's 30 s: the node is drained and must come back.
			fault{Kind: "outage", Target: "sing-box:" + n[rng.IntN(2)], Hold: 50 * time.Second},
		)
		if cuts {
			deck = append(deck,
				// The node's link down past NodeDown's 30 s, its processes
				// running: drained, then back.
				fault{Kind: "cut", Target: "node:" + n[rng.IntN(2)], Hold: 45 * time.Second},
				// MariaDB's link: every query of both controllers hangs
				// on a connection whose packets vanish, past their 2 s
				// readiness and 10 s metrics timeouts.
				fault{Kind: "cut", Target: "mariadb", Hold: 20 * time.Second},
				// The lease holder's link, five leases long: the other
				// controller takes the lease, and the cut one must stop
				// acting as leader (it can reach nothing to find out).
				fault{Kind: "cut", Target: "controller:leader", Hold: 15 * time.Second},
			)
		}
		rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		for i := range deck {
			deck[i].Gap = time.Duration(500+rng.IntN(2500)) * time.Millisecond
			spent += deck[i].Gap + 6*time.Second // a typical restart and wait
			if !deck[i].concurrent() {
				spent += deck[i].Hold
			}
		}
		out = append(out, deck...)
	}
	return out
}

// window is a time a node was down on purpose: a drain is right only then.
type window struct {
	node       string
	start, end time.Time
}

// injector carries out a schedule against the fleet.
type injector struct {
	t       *testing.T
	f       *fleet
	locks   map[string]*sync.Mutex // per target: an outage holds its own
	mu      sync.Mutex
	counts  map[string]int
	outages []window
	wg      sync.WaitGroup
	// Worst figures of the cuts of MariaDB and of the lease holder.
	dbAnswer, dbMetrics, dbRecover, takeover time.Duration
	// underTraffic kills sing-box while its node moves traffic instead of
	// once it is idle and polled; crashes are those kills.
	underTraffic bool
	crashes      []crash
}

// crash is a stop of sing-box while its node moved traffic. sing-box keeps
// its counters in memory, so what it counted since the exporter's last
// successful poll (from) is lost with it, by design (README, Stops and
// crashes); to is just after it stopped. The window is all a crash may
// cost: the ledger must hold everything that crossed before it.
type crash struct {
	node     *node
	from, to time.Time
}

func newInjector(t *testing.T, f *fleet) *injector {
	in := &injector{t: t, f: f, locks: map[string]*sync.Mutex{}, counts: map[string]int{},
		underTraffic: os.Getenv("BOXFLEET_SOAK_IDLE_CRASHES") == ""}
	for _, k := range []string{"sing-box:n1", "sing-box:n2", "exporter:n1", "exporter:n2", "controller:c1", "controller:c2",
		"prometheus", "alertmanager", "mariadb"} {
		in.locks[k] = &sync.Mutex{}
	}
	return in
}

func (in *injector) run(faults []fault) {
	for i, ft := range faults {
		time.Sleep(ft.Gap)
		in.t.Logf("fault %d/%d at %s: %s", i+1, len(faults), time.Now().Format("15:04:05.0"), ft)
		if ft.concurrent() {
			in.wg.Go(func() {
				in.inject(ft)
				in.awaitUndrain(in.f.nodeOf(ft.Target))
			})
			continue
		}
		in.inject(ft)
	}
	in.wg.Wait()
}

func (in *injector) count(kind string) {
	in.mu.Lock()
	in.counts[kind]++
	in.mu.Unlock()
}

// inject carries out one fault and waits until the fleet has recovered by
// itself (restarted as systemd would, nothing else).
func (in *injector) inject(ft fault) {
	t := in.t
	target := ft.Target
	switch {
	case ft.Kind == "cut" && target == "mariadb":
		in.cutMariaDB(ft)
		return
	case ft.Kind == "cut" && target == "controller:leader":
		in.cutLeader(ft)
		return
	case ft.Kind == "cut":
		in.cut(ft, in.f.nodeOf(target))
		return
	case target == "controller:leader":
		target = "controller:" + in.f.leader()
	}
	lock := in.locks[target]
	lock.Lock()
	defer lock.Unlock()
	s := in.f.svcs[target]
	key := ft.Kind + " " + strings.Split(target, ":")[0]
	switch ft.Kind {
	case "sigkill", "sigterm", "outage":
		var cr *crash
		if n := in.f.nodeOf(target); n != nil && strings.HasPrefix(target, "sing-box:") {
			// sing-box keeps its counters in memory: a crash loses what
			// moved since the exporter's last look (README, Stops and
			// crashes). Under traffic the loss is held to that window;
			// otherwise (BOXFLEET_SOAK_IDLE_CRASHES=1, or when the
			// exporter cannot tell its last poll) the crash comes when
			// the node is idle and has been looked at, so the ledger can
			// be held to the byte.
			if v, ok := readExporter(n.exporterAddr); in.underTraffic && ok && v.lastPoll > 0 {
				cr = &crash{node: n, from: time.Unix(0, int64(v.lastPoll*1e9))}
			} else {
				n.gate.Lock()
				defer n.gate.Unlock()
				n.waitPolled(t, time.Now())
				in.f.checkpoint(n, "before "+ft.Kind)
			}
		}
		begin := time.Now()
		if ft.Kind == "sigterm" {
			s.proc.Stop()
		} else {
			s.proc.Kill()
		}
		if cr != nil {
			// Every hold is at least 500 ms: the crossings sampled by
			// then (every 100 ms) include all that reached the node
			// before it stopped, and nothing after its restart.
			cr.to = time.Now().Add(300 * time.Millisecond)
			in.mu.Lock()
			in.crashes = append(in.crashes, *cr)
			in.mu.Unlock()
		}
		time.Sleep(ft.Hold)
		s.start()
		s.waitReady(90 * time.Second)
		if ft.Kind == "outage" {
			in.mu.Lock()
			in.outages = append(in.outages, window{strings.TrimPrefix(target, "sing-box:"), begin, time.Now()})
			in.mu.Unlock()
		}
	case "sigstop", "prom-unreachable":
		s.signal(syscall.SIGSTOP)
		time.Sleep(ft.Hold)
		s.signal(syscall.SIGCONT)
		s.waitReady(60 * time.Second)
	case "state-readonly":
		// In the exporter's own mount namespace: ip netns exec gives it
		// one, and a mount made outside may not reach it.
		dir := in.f.nodeOf(target).stateDir
		mnt := func(args ...string) error {
			out, err := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(s.pid()), "--mount", "--"}, args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		if err := mnt("mount", "--bind", dir, dir); err != nil {
			t.Fatal(err)
		}
		unmount := func() { _ = mnt("umount", dir) }
		if err := mnt("mount", "-o", "remount,bind,ro", dir, dir); err != nil {
			unmount()
			t.Fatal(err)
		}
		errs := stateWriteErrors(in.f.nodeOf(target).exporterAddr)
		time.Sleep(ft.Hold)
		in.checkStateFailed(target, errs)
		unmount()
	case "state-full":
		// A file size limit of 64 bytes: every write of the state file
		// fails with EFBIG, as on a full disk.
		pid := s.pid()
		var old unix.Rlimit
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, nil, &old); err != nil {
			t.Fatalf("prlimit %s: %v", target, err)
		}
		lim := unix.Rlimit{Cur: 64, Max: old.Max}
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
			t.Fatalf("prlimit %s: %v", target, err)
		}
		errs := stateWriteErrors(in.f.nodeOf(target).exporterAddr)
		time.Sleep(ft.Hold)
		in.checkStateFailed(target, errs)
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &old, nil); err != nil && s.alive() {
			t.Fatalf("prlimit %s: %v", target, err)
		}
	default:
		t.Fatalf("unknown fault %q", ft.Kind)
	}
	in.count(key)
}

// checkStateFailed makes sure a state fault was one: the exporter (it
// tries every 2 s) saw writes of its state file fail during the hold.
func (in *injector) checkStateFailed(target string, before int64) {
	if after := stateWriteErrors(in.f.nodeOf(target).exporterAddr); before < 0 || after <= before {
		in.t.Errorf("%s: no failed state write during the fault (errors %d before, %d after): the fault did nothing", target, before, after)
	} else {
		in.t.Logf("%s: %d state writes failed during the fault", target, after-before)
	}
}

// cut takes a node off the network while it runs. Its processes are left
// alone meanwhile (no other fault restarts them), and the clients' open
// transfers hang and fail as they would.
func (in *injector) cut(ft fault, n *node) {
	for _, k := range []string{"sing-box:", "exporter:"} {
		in.locks[k+n.name].Lock()
		defer in.locks[k+n.name].Unlock()
	}
	begin := time.Now()
	n.ns.cut(in.t, true)
	time.Sleep(ft.Hold)
	n.ns.cut(in.t, false)
	n.singbox.waitReady(60 * time.Second)
	n.exporter.waitReady(60 * time.Second)
	in.mu.Lock()
	in.outages = append(in.outages, window{n.name, begin, time.Now()})
	in.counts["cut node"]++
	in.mu.Unlock()
}

// awaitUndrain keeps Prometheus and Alertmanager from being restarted
// between a node's return and its undrain, for at most 2 min. Neither keeps
// a resolved alert across a restart (a Prometheus restarted during the
// outage even drops the alert it restored as pending without resolving
// it), so a restart there leaves the undrain to the controllers' reconcile
// loop, whose clock every restart of Prometheus sets back: the wait lets
// most outages end the ordinary way. BOXFLEET_SOAK_LOSE_RESOLUTION=1 leaves
// the window open, so that every lost resolution falls to the loop.
func (in *injector) awaitUndrain(n *node) {
	if n == nil || os.Getenv("BOXFLEET_SOAK_LOSE_RESOLUTION") != "" {
		return
	}
	for _, k := range []string{"prometheus", "alertmanager"} {
		in.locks[k].Lock()
		defer in.locks[k].Unlock()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		nd, err := in.f.store.GetNode(ctx, n.name)
		cancel()
		if err == nil && !nd.Drained {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitPolled waits until the node's exporter has completed a poll of
// sing-box that began after since (the exporter stamps a poll with its
// start, and reads the counters after).
func (n *node) waitPolled(t *testing.T, since time.Time) {
	t.Helper()
	after := float64(since.UnixNano())/1e9 + 0.001
	testsupport.Until(t, n.name+" polled after going idle", 60*time.Second, func() bool {
		v, ok := readExporter(n.exporterAddr)
		return ok && v.lastPoll > after
	})
}

// meter accumulates a counter an exporter declares across its restarts
// (the counter starts again at zero with a new process unless it was kept
// in the state file).
type meter struct {
	mu               sync.Mutex
	first, last, acc float64
	sampledAny       bool
}

func (m *meter) sample(v float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.sampledAny:
		m.acc, m.first = v, v
	case v >= m.last:
		m.acc += v - m.last
	default:
		m.acc += v
	}
	m.last, m.sampledAny = v, true
}

func (m *meter) total() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(math.Ceil(m.acc))
}

// sinceFirst is what the counter added after the first sample.
func (m *meter) sinceFirst() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(math.Ceil(m.acc - m.first))
}

// chargeCrashes adds each crash's window, in bytes that crossed for the
// node's users between the exporter's last poll and the stop, to what
// those users' ledgers may lack. It returns how many crashes there were
// and their bytes.
func (in *injector) chargeCrashes() (n int, bytes int64) {
	for _, c := range in.crashes {
		for _, u := range in.f.users {
			if u.node != c.node {
				continue
			}
			lo, ok := u.hist.at(c.from, true)
			if !ok {
				in.t.Logf("%s: no crossing sampled before the crash window from %s; charging it from the start", u.name, c.from.Format("15:04:05.0"))
			}
			hi, ok := u.hist.at(c.to, false)
			if !ok {
				in.t.Errorf("%s: no crossing sampled after the crash at %s", u.name, c.to.Format("15:04:05.0"))
				continue
			}
			up, down := hi.upHi-lo.upLo, hi.downHi-lo.downLo
			u.crashed[0] += up
			u.crashed[1] += down
			bytes += up + down
		}
	}
	return len(in.crashes), bytes
}
