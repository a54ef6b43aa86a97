package accounting

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testbin"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// controllerProc is one `boxfleet serve` process, talking to MariaDB
// through its own proxy that holds each COMMIT for 150 ms.
type controllerProc struct {
	id    string
	cmd   *exec.Cmd
	proxy *commitDelayProxy
}

func startController(t *testing.T, bin, dsn, promURL, id string) *controllerProc {
	t.Helper()
	proxy := newCommitDelayProxy(t, dsn, 150*time.Millisecond)
	addr := testsupport.FreeAddr(t)
	cmd := exec.Command(bin, "serve", "--db.dsn", proxy.DSN(dsn), "--data.dir", t.TempDir(),
		"--prometheus.url", promURL, "--controller.id", id, "--web.listen-address", addr,
		"--accounting.interval", "200ms", "--lease.ttl", "3s", "--log.level", "warn")
	cmd.Stderr = os.Stderr
	testsupport.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &controllerProc{id: id, cmd: cmd, proxy: proxy}
	t.Cleanup(p.kill)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("controller %s never became ready", id)
	return nil
}

// kill is SIGKILL: no lease release, no clean shutdown, whatever the
// process was doing.
func (p *controllerProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// TestFailoverKeepsLedgerExact runs two controllers on one MariaDB while
// traffic flows, kills whichever leads, several times, in the middle of its
// cycles (a proxy in front of MariaDB holds each COMMIT, and the kill
// lands while the leader's COMMIT is held: between query and commit), and
// checks that the other takes over within the lease TTL and
// that the ledger ends exactly equal to the traffic.
func TestFailoverKeepsLedgerExact(t *testing.T) {
	db := storetest.NewMySQLDB(t)
	s := db.Open(t)
	bin := testbin.GoBuild(t, "./cmd/boxfleet", t.TempDir())
	f := newFleet(t)

	procs := map[string]*controllerProc{}
	n := 0
	spawn := func() {
		n++
		id := fmt.Sprintf("c%d", n)
		procs[id] = startController(t, bin, db.DSN, f.prom.URL, id)
	}
	spawn()
	spawn()

	ctx := context.Background()
	users := []string{"alice", "bob", "carol"}
	stop := time.Now().Add(12 * time.Second)
	nextKill := time.Now().Add(2 * time.Second)
	kills, midCommit := 0, 0
	for time.Now().Before(stop) {
		node := []string{"n1", "n2"}[rand.IntN(2)]
		f.move(node, users[rand.IntN(len(users))], []string{"upload", "download"}[rand.IntN(2)], rand.Int64N(1<<30))
		time.Sleep(50 * time.Millisecond)
		if time.Now().Before(nextKill) {
			continue
		}
		holder, _, err := s.LeaseHolder(ctx, LeaseName)
		if err != nil || procs[holder] == nil {
			continue
		}
		if procs[holder].proxy.waitHeld(2 * time.Second) {
			midCommit++
		}
		procs[holder].kill()
		delete(procs, holder)
		kills++
		killedAt := time.Now()
		waitLeader(t, s, holder, 3*time.Second+2*time.Second, killedAt)
		spawn()
		nextKill = time.Now().Add(2 * time.Second)
	}
	if kills < 2 || midCommit < 2 {
		t.Fatalf("only %d leader kills happened, %d of them while a COMMIT was held", kills, midCommit)
	}
	f.settle(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, u := range users {
			up, down := ledger(t, s, u)
			if up != f.truth[u+"/upload"] || down != f.truth[u+"/download"] {
				ok = false
				if up > f.truth[u+"/upload"] || down > f.truth[u+"/download"] {
					t.Fatalf("%s counted twice: ledger up=%d down=%d, true up=%d down=%d", u, up, down, f.truth[u+"/upload"], f.truth[u+"/download"])
				}
			}
		}
		if ok {
			t.Logf("%d leader kills (%d while a COMMIT was held); ledger exact", kills, midCommit)
			return
		}
		if time.Now().After(deadline) {
			checkExact(t, s, f, users...)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitLeader waits until a controller other than dead holds the lease, and
// fails when that takes longer than bound.
func waitLeader(t *testing.T, s interface {
	LeaseHolder(context.Context, string) (string, int64, error)
}, dead string, bound time.Duration, since time.Time) {
	t.Helper()
	for time.Since(since) < bound {
		h, exp, err := s.LeaseHolder(context.Background(), LeaseName)
		if err == nil && h != "" && h != dead && exp > time.Now().UnixMilli() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no controller took the lease within %s of killing %s", bound, dead)
}
