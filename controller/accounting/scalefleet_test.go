package accounting

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/promtest"
)

// scale is the size of a scale test, from the environment so that the same
// test runs at the size (the defaults) or smaller on a laptop.
type scale struct {
	nodes, users, perNode, dirs int
	scrape                      time.Duration
	// window is the fake exporters' --collector.user-recent-window
	// (BOXFLEET_SCALE_RECENT_WINDOW, 0 for none).
	window time.Duration
}

func scaleFromEnv(t *testing.T) scale {
	if os.Getenv("BOXFLEET_SCALE") != "1" {
		t.Skip("scale test: set BOXFLEET_SCALE=1 (and optionally BOXFLEET_SCALE_NODES, _USERS, _USERS_PER_NODE, _DIRECTIONS, _SCRAPE)")
	}
	sc := scale{
		nodes:   envInt(t, "BOXFLEET_SCALE_NODES", 200),
		users:   envInt(t, "BOXFLEET_SCALE_USERS", 100_000),
		perNode: envInt(t, "BOXFLEET_SCALE_USERS_PER_NODE", 2_500),
		dirs:    envInt(t, "BOXFLEET_SCALE_DIRECTIONS", 2),
		scrape:  envDuration(t, "BOXFLEET_SCALE_SCRAPE", 15*time.Second),
		window:  envDuration(t, "BOXFLEET_SCALE_RECENT_WINDOW", 2*time.Minute),
	}
	if sc.perNode > sc.users || sc.dirs < 1 || sc.dirs > 2 {
		t.Fatalf("scale %+v: users per node must not exceed users, directions must be 1 or 2", sc)
	}
	return sc
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration", name, v)
	}
	return d
}

func (sc scale) series() int { return sc.nodes * sc.perNode * sc.dirs }

var directions = [2]string{"upload", "download"}

// scaleFleet is sc.nodes fake exporters scraped by one real Prometheus.
// Every counter's value is a function of the generation, so the test knows
// the true traffic without keeping a million numbers.
type scaleFleet struct {
	sc      scale
	prom    *promtest.Server
	targets []*promtest.BodyTarget
	gen     int
	// changed is each node's change timestamp, which moves, as the real
	// exporter's does, only when one of its per-user values changes.
	changed []float64
	// moved is when each series last moved, by series index (see
	// seriesIndex), for the recent series; published when the last
	// generation was, and recent how many series it listed as recent.
	moved     []time.Time
	published time.Time
	recent    int
}

func (sc scale) seriesIndex(n, i, d int) int { return (n*sc.perNode+i)*sc.dirs + d }

func newScaleFleet(t *testing.T, sc scale) *scaleFleet {
	f := &scaleFleet{sc: sc, changed: make([]float64, sc.nodes), moved: make([]time.Time, sc.series())}
	var static []promtest.StaticTarget
	for n := range sc.nodes {
		tg := promtest.NewBodyTarget(t)
		f.targets = append(f.targets, tg)
		static = append(static, promtest.StaticTarget{Addr: tg.Addr(), Labels: map[string]string{"node": nodeName(n)}})
	}
	f.prom = promtest.Start(t, sc.scrape, static...)
	return f
}

func nodeName(n int) string { return fmt.Sprintf("node%03d", n) }
func userName(u int) string { return fmt.Sprintf("u%06d", u) }

// userOf is the i-th user node n serves: consecutive nodes serve
// consecutive slices of the users, so each user is on
// nodes*perNode/users nodes.
func (sc scale) userOf(n, i int) int { return (n*sc.perNode + i) % sc.users }

// value is a counter's value in generation gen: it grows by a different
// amount per series in generations 1 and 2 (every series moves), and in
// generations 3 and 4 only a tenth of the series move (a busy minute), not
// the same tenth.
func value(gen, n, u, d int) int64 {
	moves := min(gen, 2)
	if gen >= 3 && movesIn3(n, u, d) {
		moves++
	}
	if gen >= 4 && movesIn4(n, u, d) {
		moves++
	}
	return int64(moves) * int64(1_000+(u*7+n*13+d*5)%9_000) * 1_000
}

// movesIn3 picks the tenth of the series that move in generation 3.
func movesIn3(n, u, d int) bool { return (u*7+n*3+d)%10 == 0 }

// movesIn4 picks the tenth that moves in generation 4.
func movesIn4(n, u, d int) bool { return (u*7+n*3+d)%10 == 5 }

// publish makes every target serve generation gen and waits until
// Prometheus has scraped all of them.
func (f *scaleFleet) publish(t *testing.T, gen int) {
	t.Helper()
	start := time.Now()
	prev := f.gen
	f.gen, f.published, f.recent = gen, start, 0
	for n, tg := range f.targets {
		if f.moves(n, prev, gen) {
			f.changed[n] = float64(time.Now().UnixMilli()) / 1e3
		}
		tg.SetBody(f.render(gen, n))
	}
	if f.sc.window > 0 {
		t.Logf("generation %d: %d series listed as moved within the exporters' %s window", gen, f.recent, f.sc.window)
	}
	f.prom.WaitFor(t, fmt.Sprintf(`count(boxfleet_scale_generation == %d)`, gen), 5*time.Minute, func(v model.Vector) bool {
		return len(v) == 1 && int(v[0].Value) == f.sc.nodes
	})
	t.Logf("generation %d: %d series in Prometheus after %s", gen, f.sc.series(), time.Since(start).Round(time.Second))
}

// moves tells whether any of node n's per-user values differ between
// generations from and to (from 0: the first), and notes when each series
// that did moved.
func (f *scaleFleet) moves(n, from, to int) bool {
	moved := false
	for i := range f.sc.perNode {
		u := f.sc.userOf(n, i)
		for d := range f.sc.dirs {
			if from == 0 || value(from, n, u, d) != value(to, n, u, d) {
				f.moved[f.sc.seriesIndex(n, i, d)] = f.published
				moved = true
			}
		}
	}
	return moved
}

func (f *scaleFleet) render(gen, n int) []byte {
	b := make([]byte, 0, f.sc.perNode*f.sc.dirs*80+200)
	b = fmt.Appendf(b, "%s 1.7e+09\nboxfleet_scale_generation %d\n", epochMetric, gen)
	b = fmt.Appendf(b, "%s %s\n", changeMetric, strconv.FormatFloat(f.changed[n], 'f', -1, 64))
	if f.sc.window > 0 {
		b = fmt.Appendf(b, "%s %g\n", windowMetric, f.sc.window.Seconds())
	}
	listed := 0
	for i := range f.sc.perNode {
		u := f.sc.userOf(n, i)
		for d := range f.sc.dirs {
			names := []string{metric}
			// As singbox_exporter lists them, from the publication on: a
			// body stays until the next one, so it lists at least what
			// the exporter would.
			if f.sc.window > 0 && f.published.Sub(f.moved[f.sc.seriesIndex(n, i, d)]) < f.sc.window {
				names = append(names, recentMetric)
				listed++
			}
			for _, name := range names {
				b = append(b, name...)
				b = append(b, `{user="`...)
				b = append(b, userName(u)...)
				b = append(b, `",direction="`...)
				b = append(b, directions[d]...)
				b = append(b, `"} `...)
				b = strconv.AppendInt(b, value(gen, n, u, d), 10)
				b = append(b, '\n')
			}
		}
	}
	if f.sc.window > 0 {
		b = fmt.Appendf(b, "%s %d\n", listedMetric, listed)
	}
	f.recent += listed
	return b
}

// truth is every user's true [upload, download] total after generation
// gen, counted from zero.
func (f *scaleFleet) truth(gen int) [][2]int64 {
	out := make([][2]int64, f.sc.users)
	for n := range f.sc.nodes {
		for i := range f.sc.perNode {
			u := f.sc.userOf(n, i)
			for d := range f.sc.dirs {
				out[u][d] += value(gen, n, u, d)
			}
		}
	}
	return out
}

func sum(t [][2]int64) (total int64) {
	for _, v := range t {
		total += v[0] + v[1]
	}
	return total
}

// rawDB opens the store's database beside the store, for bulk set-up and
// for reading the ledger whole.
func rawDB(t testing.TB, db storetest.DB) *sql.DB {
	var raw *sql.DB
	var err error
	if db.Backend == "mysql" {
		raw, err = sql.Open("mysql", db.DSN)
	} else {
		raw, err = sql.Open("sqlite", "file:"+filepath.Join(db.Dir, "boxfleet.db")+"?_pragma=busy_timeout(10000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// insertUsers adds n active users in bulk: creating them one by one through
// the store would take longer than the test. They never reset and have no
// limit, so the sweeps of the cycle leave them alone.
func insertUsers(t testing.TB, raw *sql.DB, n int) {
	const cols, chunk = 13, 500
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		args := make([]any, 0, cols*(end-start))
		for u := start; u < end; u++ {
			name := userName(u)
			args = append(args, name, fmt.Sprintf("00000000-0000-4000-8000-%012d", u), name, name, name, "tok-"+name,
				store.StatusActive, 0, "no_reset", 0, "", 0, 0)
		}
		_, err := tx.Exec(`INSERT INTO users (name, uuid, password, ss_key_16, ss_key_32, sub_token,
		  status, traffic_limit, reset_strategy, period_start, groups_csv, created_at, updated_at) VALUES `+
			strings.TrimSuffix(strings.Repeat(row+",", end-start), ","), args...)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkLedger compares the whole ledger and every user's period usage with
// the truth.
func checkLedger(t *testing.T, raw *sql.DB, want [][2]int64) {
	t.Helper()
	var up, down int64
	if err := raw.QueryRow(`SELECT COALESCE(SUM(upload), 0), COALESCE(SUM(download), 0) FROM usage_days`).Scan(&up, &down); err != nil {
		t.Fatal(err)
	}
	var wantUp, wantDown int64
	for _, v := range want {
		wantUp += v[0]
		wantDown += v[1]
	}
	if up != wantUp || down != wantDown {
		t.Errorf("ledger holds up=%d down=%d, true traffic up=%d down=%d", up, down, wantUp, wantDown)
	}
	rows, err := raw.Query(`SELECT name, used_up, used_down FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	wrong, seen := 0, 0
	for rows.Next() {
		var name string
		var u, d int64
		if err := rows.Scan(&name, &u, &d); err != nil {
			t.Fatal(err)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(name, "u"))
		if err != nil || i >= len(want) {
			continue
		}
		seen++
		if u != want[i][0] || d != want[i][1] {
			if wrong++; wrong <= 5 {
				t.Errorf("%s: period usage up=%d down=%d, true up=%d down=%d", name, u, d, want[i][0], want[i][1])
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if wrong > 0 || seen != len(want) {
		t.Errorf("%d of %d users have a wrong period usage; %d users found", wrong, len(want), seen)
	}
}
