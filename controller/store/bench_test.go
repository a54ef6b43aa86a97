package store_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

const (
	benchUsers = 5000
	benchNodes = 200
)

// BenchmarkCommitNode commits one node's counters for 5,000 users in both
// directions, cycling over 200 nodes as an accounting cycle does. One op is
// one node: an accounting cycle over 1,000,000 series is 200 ops, so the
// 10 s budget is 50 ms per op.
func BenchmarkCommitNode(b *testing.B) {
	backends := map[string]func(testing.TB) *store.Store{"sqlite": storetest.SQLite, "mysql": storetest.MySQL}
	for _, backend := range []string{"sqlite", "mysql"} {
		for _, active := range []int{100, 10, 0} {
			b.Run(fmt.Sprintf("%s/active=%dpct", backend, active), func(b *testing.B) {
				s := backends[backend](b)
				s.Now = func() time.Time { return date(2025, 6, 1, 12, 0, 0) }
				insertBenchUsers(b, s, benchUsers, func(int) string { return "" })
				benchCommits(b, s, active)
			})
		}
	}
}

// benchCommits first gives every node its checkpoints, then measures
// commits in which active percent of the users moved traffic.
func benchCommits(b *testing.B, s *store.Store, active int) {
	samples := make([]store.Sample, 0, 2*benchUsers)
	for u := range benchUsers {
		name := fmt.Sprintf("user%05d", u)
		samples = append(samples, store.Sample{User: name, Direction: "upload"}, store.Sample{User: name, Direction: "download"})
	}
	commitAll := func(node int) {
		if _, err := s.CommitNode(bg, "", "", fmt.Sprintf("node%03d", node), 1, samples, s.Now()); err != nil {
			b.Fatal(err)
		}
	}
	for n := range benchNodes {
		commitAll(n)
	}
	cpu := cpuTime()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range samples {
			if active > 0 && (j/2)%100 < active {
				samples[j].Value += 1000
			}
		}
		commitAll(i % benchNodes)
	}
	b.ReportMetric(float64(len(samples))*float64(b.N)/b.Elapsed().Seconds(), "series/s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*benchNodes, "s/cycle")
	// On a shared machine wall time swings with the neighbours' load; the
	// process's own CPU time (all of SQLite's work, only the client's for
	// MySQL) compares runs more fairly.
	b.ReportMetric(float64((cpuTime()-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// insertBenchUsers adds users in bulk: creating them one by one would
// measure the setup, not the ledger.
func insertBenchUsers(b *testing.B, s *store.Store, n int, group func(int) string) {
	const cols = 13
	const chunk = 400
	for start := 0; start < n; start += chunk {
		var rows []string
		var args []any
		for u := start; u < min(start+chunk, n); u++ {
			rows = append(rows, "("+strings.TrimSuffix(strings.Repeat("?,", cols), ",")+")")
			name := fmt.Sprintf("user%05d", u)
			args = append(args, name, fmt.Sprintf("00000000-0000-4000-8000-%012d", u), name, name, name, name,
				store.StatusActive, int64(100)<<30, "month", 0, group(u), 0, 0)
		}
		_, err := s.DB().Exec(`INSERT INTO users (name, uuid, password, ss_key_16, ss_key_32, sub_token,
		  status, traffic_limit, reset_strategy, period_start, groups_csv, created_at, updated_at) VALUES `+strings.Join(rows, ","), args...)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNodeUsers reads the user set of a node serving 5,000 of 100,000
// users (20 groups), what GET /api/v1/nodes/{name}/users answers; the
// target is 50 ms at p99.
func BenchmarkNodeUsers(b *testing.B) {
	backends := map[string]func(testing.TB) *store.Store{"sqlite": storetest.SQLite, "mysql": storetest.MySQL}
	for _, backend := range []string{"sqlite", "mysql"} {
		b.Run(backend, func(b *testing.B) {
			s := backends[backend](b)
			insertBenchUsers(b, s, 20*benchUsers, func(u int) string { return fmt.Sprintf("g%02d", u%20) })
			if _, _, err := s.CreateNode(bg, "admin", "n1", map[string]string{"group": "g07"}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				nu, err := s.NodeUsers(bg, "n1")
				if err != nil {
					b.Fatal(err)
				}
				if len(nu.Users) != benchUsers {
					b.Fatalf("%d users, want %d", len(nu.Users), benchUsers)
				}
			}
		})
	}
}

// BenchmarkSweepPeriodReset is the first sweep of a month: all 5,000 users
// on a monthly strategy start a new period. One op is the whole sweep.
func BenchmarkSweepPeriodReset(b *testing.B) {
	backends := map[string]func(testing.TB) *store.Store{"sqlite": storetest.SQLite, "mysql": storetest.MySQL}
	for _, backend := range []string{"sqlite", "mysql"} {
		b.Run(backend, func(b *testing.B) {
			s := backends[backend](b)
			insertBenchUsers(b, s, benchUsers, func(int) string { return "" })
			month := date(2025, 1, 1, 0, 0, 0)
			for b.Loop() {
				month = month.AddDate(0, 1, 0)
				s.Now = func() time.Time { return month }
				ch, err := s.Sweep(bg, "sweep")
				if err != nil {
					b.Fatal(err)
				}
				if len(ch) != benchUsers {
					b.Fatalf("%d users reset, want %d", len(ch), benchUsers)
				}
			}
		})
	}
}

// BenchmarkCycleFold is the database's part of an accounting cycle in
// which every series moved, at a tenth of TestScale's size: 40 node
// commits of 2,500 users in both directions among 20,000 users (each user
// on five nodes), their usage left pending, then the fold that adds it to
// the users, as the SQLite accountant runs them; on MySQL also with the
// usage added at each commit instead (store.FoldEachCommit), as it ran
// before pending usage was one row per commit.
// One op is one cycle.
func BenchmarkCycleFold(b *testing.B) {
	const users, nodes, perNode = 20_000, 40, 2_500
	backends := map[string]func(testing.TB) *store.Store{"sqlite": storetest.SQLite, "mysql": storetest.MySQL}
	for _, v := range []struct {
		backend    string
		eachCommit bool
	}{{"sqlite", false}, {"mysql", false}, {"mysql", true}} {
		name := v.backend
		if v.eachCommit {
			name += "/added-at-each-commit"
		}
		b.Run(name, func(b *testing.B) {
			s := backends[v.backend](b)
			s.FoldEachCommit = v.eachCommit
			s.Now = func() time.Time { return date(2025, 6, 1, 12, 0, 0) }
			insertBenchUsers(b, s, users, func(int) string { return "" })
			samples := make([][]store.Sample, nodes)
			for n := range nodes {
				for i := range perNode {
					name := fmt.Sprintf("user%05d", (n*perNode+i)%users)
					samples[n] = append(samples[n], store.Sample{User: name, Direction: "upload"}, store.Sample{User: name, Direction: "download"})
				}
			}
			cycle := func() {
				for n := range nodes {
					for j := range samples[n] {
						samples[n][j].Value += 1000
					}
					if _, err := s.Commit(bg, store.NodeCommit{Node: fmt.Sprintf("node%03d", n), Epoch: 1, Samples: samples[n], At: s.Now()}); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := s.FoldUsage(bg); err != nil {
					b.Fatal(err)
				}
			}
			cycle() // every series new
			for b.Loop() {
				cycle()
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/cycle")
		})
	}
}

// BenchmarkBusyMinute is the database's part of an accounting cycle in
// which a tenth of TestScale's 1,000,000 series moved (its "10 % changed"
// cycle): 200 nodes of 2,500 users each among 100,000 users, every node
// committing only its moved series (a partial commit, as a node read
// through its recent series is), then the sweep that folds the usage and
// re-derives statuses, and the next cycle's first sweep. "before" commits
// one node to a transaction and has no index on the users' periods (as
// before CommitNodes and migration 73), "pooled" ten nodes to a
// transaction, as the accountant groups an answer's nodes, "after" that
// too through SQLite's one writer connection ("pooled" writes through the
// readers' pool, as before it). Meanwhile, as in boxfleet serve, users'
// clients fetch their subscriptions (a read every 50 ms) and the leader
// renews its lease (a write every second), and the longest renewal is
// reported. One op is one cycle; commit and sweep are reported apart.
func BenchmarkBusyMinute(b *testing.B) {
	const users, nodes, perNode = 100_000, 200, 2_500
	backends := map[string]func(testing.TB) *store.Store{"sqlite": storetest.SQLite, "mysql": storetest.MySQL}
	for _, backend := range []string{"sqlite", "mysql"} {
		for _, v := range []struct {
			name   string
			group  int
			pooled bool
		}{{"before", 1, true}, {"pooled", 10, true}, {"after", 10, false}} {
			if backend == "mysql" && v.name == "pooled" {
				continue // MySQL has no writer connection of its own
			}
			group := v.group
			b.Run(backend+"/"+v.name, func(b *testing.B) {
				s := backends[backend](b)
				if v.pooled {
					s.WriteThroughPool()
				}
				if v.name == "before" {
					q := map[string]string{"sqlite": `DROP INDEX users_period`, "mysql": `DROP INDEX users_period ON users`}[backend]
					if _, err := s.DB().Exec(q); err != nil {
						b.Fatal(err)
					}
				}
				s.Now = func() time.Time { return date(2025, 6, 1, 12, 0, 0) }
				insertBenchUsers(b, s, users, func(int) string { return "" })
				values := make([][]int64, nodes)
				commit := func(n int, partial bool, moved func(i, d int) bool) store.NodeCommit {
					var samples []store.Sample
					for i := range perNode {
						name := fmt.Sprintf("user%05d", (n*perNode+i)%users)
						for d, dir := range []string{"upload", "download"} {
							if moved(i, d) {
								values[n][2*i+d] += 1000
								samples = append(samples, store.Sample{User: name, Direction: dir, Value: values[n][2*i+d]})
							}
						}
					}
					return store.NodeCommit{Node: fmt.Sprintf("node%03d", n), Epoch: 1, Samples: samples, Partial: partial, At: s.Now()}
				}
				for n := range nodes {
					values[n] = make([]int64, 2*perNode)
					if _, err := s.Commit(bg, commit(n, false, func(int, int) bool { return true })); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := s.Sweep(bg, "system:sweep"); err != nil {
					b.Fatal(err)
				}
				stop := serveNeighbours(b, s)
				var commits, sweeps time.Duration
				for op := 0; b.Loop(); op++ {
					var cs []store.NodeCommit
					for n := range nodes {
						cs = append(cs, commit(n, true, func(i, d int) bool { return (i*7+n*3+d+op)%10 == 0 }))
					}
					start := time.Now()
					for len(cs) > 0 {
						k := min(group, len(cs))
						if _, err := s.CommitNodes(bg, cs[:k]); err != nil {
							b.Fatal(err)
						}
						cs = cs[k:]
					}
					commits += time.Since(start)
					start = time.Now()
					for range 2 {
						if _, err := s.Sweep(bg, "system:sweep"); err != nil {
							b.Fatal(err)
						}
					}
					sweeps += time.Since(start)
				}
				b.ReportMetric(float64(stop().Milliseconds()), "renewal-max-ms")
				b.ReportMetric(commits.Seconds()/float64(b.N), "commit-s/cycle")
				b.ReportMetric(sweeps.Seconds()/float64(b.N), "sweep-s/cycle")
			})
		}
	}
}

// serveNeighbours reads a user every 50 ms and renews a lease every second
// until stopped, as a controller's subscription requests and lease loop do
// beside its accounting cycle. stop returns the longest renewal: the
// leader's lease waits behind the cycle's writes.
func serveNeighbours(b *testing.B, s *store.Store) (stop func() time.Duration) {
	done, finished := make(chan struct{}), make(chan struct{})
	var longest time.Duration
	go func() {
		defer close(finished)
		read, renew := time.NewTicker(50*time.Millisecond), time.NewTicker(time.Second)
		defer read.Stop()
		defer renew.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-read.C:
				if _, err := s.GetUser(bg, fmt.Sprintf("user%05d", i*7919%100_000)); err != nil {
					b.Error(err)
					return
				}
			case <-renew.C:
				start := time.Now()
				if ok, err := s.TryLease(bg, "bench", "neighbour", time.Minute.Milliseconds()); err != nil || !ok {
					b.Errorf("lease: %v %v", ok, err)
					return
				}
				longest = max(longest, time.Since(start))
			}
		}
	}()
	return func() time.Duration { close(done); <-finished; return longest }
}
