// Package accounting turns the exporters' per-user counters, as Prometheus
// stores them, into the controller's exact ledger, and runs the loops that
// must run on one controller at a time (accounting, quota and expiry
// sweeps, period resets) under a lease held in the database.
package accounting

import (
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// LeaseName is the lease that elects the controller running the
// singleton loops.
const LeaseName = "singletons"

const (
	metric      = "singbox_user_traffic_bytes_total"
	epochMetric = "singbox_exporter_counters_start_timestamp_seconds"
	// changeMetric changes in the very scrape whose per-user series differ
	// from the scrape before (a value moved, a series came or went), and
	// never takes the same value twice, across exporter restarts too.
	changeMetric = "singbox_exporter_user_counters_change_timestamp_seconds"
	// recentMetric is metric again for only the users whose counters
	// moved within the exporter's window, windowMetric (see askRecent).
	recentMetric = "singbox_user_traffic_recent_bytes_total"
	windowMetric = "singbox_exporter_user_recent_window_seconds"
	listedMetric = "singbox_exporter_user_recent_series" // how many recentMetric has
	// Every singbox_exporter exports its counters' epoch: listing the
	// nodes by it reads one series per node, not a million.
	// The timestamp is the node's last scrape.
	nodesQuery = `timestamp(` + epochMetric + `)`
)

// Accountant reads Prometheus and writes the ledger.
type Accountant struct {
	Store  *store.Store
	Prom   promv1.API
	Log    logrus.FieldLogger
	Holder string // this controller's identity in the lease
	// Called for each node about to be committed, before the transaction
	// that holds it; tests use it to stop a controller mid-cycle.
	BeforeCommit func(node string)
	// FullReads reads every series of every node each cycle instead of
	// only those that moved since the node's last commit.
	FullReads bool

	// SkipQuiet lets a node whose exporter's change timestamp stood still
	// since its cursor go unread (see gate). Off, every moved node's series
	// are asked for, as before the gate (boxfleet serve turns it on unless
	// --no-accounting.skip-quiet-nodes).
	SkipQuiet   bool
	gateRefused atomic.Bool // warned once
	// busy holds the nodes whose last commit changed busyChanged series
	// or more: this cycle reads them whole at once, without first asking
	// Prometheus which series moved, a pass over every series of the node
	// that costs it more than sending them all once that many move. Only
	// the cycle's goroutine touches it.
	busy map[string]bool
	// baseline turns off what the scale test measures side by side; the
	// zero value is the accountant as it runs.
	baseline baseline

	client      promapi.Client // for the per-node queries, decoded by queryVector
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
	errors      prometheus.Counter
	bytes       prometheus.Counter
	resets      prometheus.Counter
	// reads counts the nodes the cycles read, by how (readHows).
	reads *prometheus.CounterVec
	// phases is the time spent in each part of the cycles, nearly all of
	// a cycle's time between them. Queries run ahead of the commits
	// (prefetch), so query time is only what the commits waited for
	// Prometheus.
	phases *prometheus.CounterVec
}

// baseline is what an accountant leaves out to run as an earlier build
// did: the scale test's "before" columns.
type baseline struct {
	noBusy     bool // ask which series moved on busy nodes too, not read them whole
	noRecent   bool // leave the exporters' recent series unread
	nodesPerTx int  // when set, cap how many nodes share a commit transaction
}

// The phases of a cycle, as phases labels them.
const (
	phaseSweep  = "sweep"  // users' statuses and pending usage
	phaseQuery  = "query"  // waiting for Prometheus's answers, decoded
	phaseCommit = "commit" // the nodes' ledger transactions
)

var phaseNames = []string{phaseSweep, phaseQuery, phaseCommit}

// How a node was read, as reads labels it.
const (
	readQuiet  = "quiet"  // its change timestamp stood still: nothing read
	readRecent = "recent" // its exporter's recent series (askRecent)
	readMoved  = "moved"  // asked which series moved, then those (askSeries)
	readWhole  = "whole"  // every series
)

var readHows = []string{readQuiet, readRecent, readMoved, readWhole}

// New connects to Prometheus at url and registers the accountant's metrics.
func New(st *store.Store, url, holder string, log logrus.FieldLogger, reg prometheus.Registerer) (*Accountant, error) {
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("--prometheus.url: %w", err)
	}
	f := promauto.With(reg)
	a := &Accountant{
		Store: st, Prom: promv1.NewAPI(c), Log: log, Holder: holder, client: c, busy: map[string]bool{},
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "boxfleet_accounting_last_success_timestamp_seconds",
			Help: "When an accounting cycle last completed on this controller.",
		}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "boxfleet_accounting_duration_seconds",
			Help:    "Time one accounting cycle took.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: "boxfleet_accounting_errors_total",
			Help: "Accounting cycles that failed (Prometheus or database unreachable, lease lost).",
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "boxfleet_accounting_bytes_total",
			Help: "Bytes added to the ledger.",
		}),
		resets: f.NewCounter(prometheus.CounterOpts{
			Name: "boxfleet_accounting_counter_resets_total",
			Help: "Counter resets seen in exporters' per-user counters (an exporter lost its state file).",
		}),
		phases: f.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_accounting_phase_seconds_total",
			Help: "Time accounting cycles spent per phase: sweep, query (waiting for Prometheus's answers) and commit (database).",
		}, []string{"phase"}),
	}
	for _, p := range phaseNames {
		a.phases.WithLabelValues(p)
	}
	a.reads = f.NewCounterVec(prometheus.CounterOpts{
		Name: "boxfleet_accounting_node_reads_total",
		Help: "Nodes the accounting cycles read, by how: quiet (the change timestamp stood still, nothing read), recent (the exporter's recent series), moved (asked which series moved, then those) and whole (every series).",
	}, []string{"how"})
	for _, h := range readHows {
		a.reads.WithLabelValues(h)
	}
	return a, nil
}

// Cycle runs one accounting pass: sweep period resets, commit every node's
// deltas, then, if any bytes were added, sweep statuses again so that a
// quota crossed in this cycle takes effect at once. Nodes commit a few to
// a transaction (commitNodes), each transaction all or nothing, so a
// failure part-way leaves the transactions before it done and the rest
// for the next cycle.
func (a *Accountant) Cycle(ctx context.Context) error {
	start := time.Now()
	err := a.cycle(ctx)
	a.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		a.errors.Inc()
		return err
	}
	a.lastSuccess.SetToCurrentTime()
	return nil
}

func (a *Accountant) cycle(ctx context.Context) error {
	if err := a.sweep(ctx); err != nil {
		return err
	}
	// Every query of the cycle is evaluated at the same instant.
	at := time.Now()
	nodes, scraped, err := a.nodes(ctx, at)
	if err != nil {
		return err
	}
	cursors, err := a.Store.NodeCursors(ctx)
	if err != nil {
		return err
	}
	// Returning early stops the prefetching goroutine.
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var added int64
	moves := map[string]store.NodeCursor{} // quiet nodes' cursors to move forward
	answers := a.prefetch(qctx, at, plan(nodes, scraped, cursors, a.FullReads, a.busy))
	for {
		wait := time.Now()
		q, ok := <-answers
		a.phases.WithLabelValues(phaseQuery).Add(time.Since(wait).Seconds())
		if !ok {
			break
		}
		if q.err != nil {
			return fmt.Errorf("nodes %s: %w", strings.Join(q.nodes, ", "), q.err)
		}
		n, err := a.commitNodes(ctx, q, cursors, moves)
		if err != nil {
			return err
		}
		added += n
	}
	start := time.Now()
	err = a.Store.MoveCursors(ctx, LeaseName, a.Holder, moves)
	a.phases.WithLabelValues(phaseCommit).Add(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("moving quiet nodes' cursors: %w", err)
	}
	if added == 0 {
		// No usage changed since the first sweep: a second would find
		// what it found (0.3 s on MySQL with 100,000 users); anything
		// else due is swept at the next cycle's start, as always.
		return nil
	}
	return a.sweep(ctx)
}

// A query asks Prometheus for one node's every series (full) or, for
// nodes with a cursor, for only the series that moved since it.
type query struct {
	nodes  []string
	moved  bool
	since  []int64 // for moved: each node's cursor (ms)
	epochs []int64 // and stored epoch
	busy   []bool  // and whether it is read whole unless quiet
}

// movedGroup is how many nodes one query for moved series covers: fewer
// round trips, and an answer small enough to wait in the prefetch queue
// even when every series moved (10 nodes x 5,000 series, a few MB).
const movedGroup = 10

// plan splits the nodes, in order, into queries. A node not scraped
// since its last commit has nothing new to read. Busy nodes are marked
// here, before the queries start, as the cycle's commits change a.busy.
func plan(nodes []string, scraped map[string]int64, cursors map[string]store.NodeCursor, full bool, busy map[string]bool) []query {
	var out []query
	for _, n := range nodes {
		c := cursors[n]
		if full || c.Epoch == 0 || c.Scraped == 0 || scraped[n] < 0 {
			out = append(out, query{nodes: []string{n}})
			continue
		}
		if scraped[n] == c.Scraped {
			continue
		}
		if len(out) == 0 || !out[len(out)-1].moved || len(out[len(out)-1].nodes) == movedGroup {
			out = append(out, query{moved: true})
		}
		out[len(out)-1].nodes = append(out[len(out)-1].nodes, n)
		out[len(out)-1].since = append(out[len(out)-1].since, c.Scraped)
		out[len(out)-1].epochs = append(out[len(out)-1].epochs, c.Epoch)
		out[len(out)-1].busy = append(out[len(out)-1].busy, busy[n])
	}
	return out
}

// queried is Prometheus's answer to one query, per node.
type queried struct {
	query
	answers map[string]*nodeAnswer
	err     error
}

// prefetchDepth is how many answers wait for their commits.
//
// Querying the next nodes during a commit makes a cycle take about the
// longer of Prometheus's and the database's work instead of their sum.
// Each waiting answer holds at most a few nodes' series, so memory stays
// bounded.
const prefetchDepth = 2

// prefetch runs the queries in order, ahead of their commits. The channel
// is closed after the last one, after the first error, or once ctx ends,
// which is how the reader stops it.
//
// One query at a time: two at once, measured side by side at 1,000,000
// series on this 2-core machine, made cycles no faster (Prometheus, the
// controller and the database then compete for the same cores).
func (a *Accountant) prefetch(ctx context.Context, at time.Time, qs []query) <-chan queried {
	out := make(chan queried, prefetchDepth)
	go func() {
		defer close(out)
		for _, q := range qs {
			ans, err := a.ask(ctx, at, q)
			select {
			case out <- queried{query: q, answers: ans, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// ask runs one query. Each node's answer carries the timestamp of the
// scrape its values come from, read in the same query so that it
// describes exactly these values.
func (a *Accountant) ask(ctx context.Context, at time.Time, q query) (map[string]*nodeAnswer, error) {
	if q.moved {
		return a.askMoved(ctx, at, q)
	}
	return a.askWhole(ctx, at, q.nodes)
}

// askMoved reads the nodes' series that moved since their cursors. The
// nodes whose exporter says that none did are answered by the gate alone;
// of the others, those whose exporter lists what moved are read through
// that list (askRecent); the rest are read whole when busy, and otherwise
// asked for by askSeries.
func (a *Accountant) askMoved(ctx context.Context, at time.Time, q query) (map[string]*nodeAnswer, error) {
	quiet := map[string]*nodeAnswer{}
	if a.SkipQuiet {
		var err error
		if quiet, err = a.gate(ctx, at, q); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			// A back end that refuses the query (one without the @
			// modifier) still gets every moved series read, as before.
			if !a.gateRefused.Swap(true) {
				a.Log.WithError(err).Warn("the metrics back end did not answer the change-timestamp query: reading which series moved on every node instead, which takes longer")
			}
			quiet = map[string]*nodeAnswer{}
		}
	}
	rest := query{moved: true}
	for i, n := range q.nodes {
		if quiet[n] == nil {
			rest.add(q, i)
		}
	}
	a.reads.WithLabelValues(readQuiet).Add(float64(len(quiet)))
	ans := map[string]*nodeAnswer{}
	if !a.baseline.noRecent && len(rest.nodes) > 0 {
		var err error
		if ans, rest, err = a.askRecent(ctx, at, rest); err != nil {
			return nil, err
		}
	}
	series := query{moved: true}
	var whole []string
	for i, n := range rest.nodes {
		if rest.busy[i] {
			whole = append(whole, n)
		} else {
			series.add(rest, i)
		}
	}
	if len(series.nodes) > 0 {
		s, err := a.askSeries(ctx, at, series)
		if err != nil {
			return nil, err
		}
		maps.Copy(ans, s)
	}
	if len(whole) > 0 {
		w, err := a.askWhole(ctx, at, whole)
		if err != nil {
			return nil, err
		}
		maps.Copy(ans, w)
	}
	maps.Copy(ans, quiet)
	return ans, nil
}

// add appends q's i-th node, with its cursor, epoch and busyness.
func (q *query) add(from query, i int) {
	q.nodes = append(q.nodes, from.nodes[i])
	q.since = append(q.since, from.since[i])
	q.epochs = append(q.epochs, from.epochs[i])
	q.busy = append(q.busy, from.busy[i])
}

// recentMargin is how much of an exporter's recent window its last read
// must leave: the exporter times the window by its own scrapes, this side
// by Prometheus's timestamps of them, and each scrape reaches the exporter
// up to a scrape timeout after Prometheus stamps it. A variable for tests.
var recentMargin = 30 * time.Second

// askRecent reads, of each node, the series its exporter lists as moved
// within its window (singbox_user_traffic_recent_bytes_total), and returns
// the nodes it cannot answer so as a query of their own.
//
// A series whose value changed after the cursor's scrape first changed in
// a later scrape, so it is in every scrape's recent series until a window
// after that one: in the latest scrape too when that is less than a window
// after the cursor's. A new series counts as moving, and so does every
// series of a restarted exporter, for a window. So where the node's last
// read is that recent, its epoch is the cursor's and its exporter shows
// the window (an older one does not), the recent series hold everything
// that moved, and a series not among them kept its checkpoint's value. The
// window, epoch and values are read in one query, from the same scrape,
// with the number of recent series the exporter sent: a relabelling that
// dropped them (to save series, say) leaves the node read the other ways
// instead of read as though nothing moved.
// Prometheus answers it from its index, without a pass over the node's
// other series: at a tenth of the series moving, a tenth of the cost.
func (a *Accountant) askRecent(ctx context.Context, at time.Time, q query) (map[string]*nodeAnswer, query, error) {
	group := `node=~` + nodesRegex(q.nodes)
	v, err := a.queryVector(ctx, `{__name__=~"`+recentMetric+`|`+windowMetric+`|`+listedMetric+`|`+epochMetric+`",`+group+`} or `+scrapedExpr(group), at)
	if err != nil {
		return nil, query{}, err
	}
	got := v.byNode()
	ans := map[string]*nodeAnswer{}
	rest := query{moved: true}
	for i, n := range q.nodes {
		g := got[n]
		if g != nil && g.window > 0 && g.listed == len(g.samples) && g.epoch == q.epochs[i] && q.since[i] < g.scraped &&
			g.scraped-q.since[i] <= int64(g.window*1e3)-recentMargin.Milliseconds() {
			ans[n] = g
			continue
		}
		rest.add(q, i)
	}
	a.reads.WithLabelValues(readRecent).Add(float64(len(ans)))
	return ans, rest, nil
}

// askWhole reads every series of the nodes, each answer committed whole,
// as a node's first read is.
func (a *Accountant) askWhole(ctx context.Context, at time.Time, nodes []string) (map[string]*nodeAnswer, error) {
	a.reads.WithLabelValues(readWhole).Add(float64(len(nodes)))
	group := `node=~` + nodesRegex(nodes)
	v, err := a.queryVector(ctx, `{__name__=~"`+metric+`|`+epochMetric+`",`+group+`} or `+scrapedExpr(group), at)
	if err != nil {
		return nil, err
	}
	ans := v.byNode()
	for _, n := range ans {
		n.full = true
	}
	return ans, nil
}

// gate finds the nodes none of whose per-user series moved since their
// cursors, from one series a node: the exporter's change timestamp, which
// changes in the same scrape as the series it describes. A node is quiet
// when, over the samples from its cursor's scrape on, that timestamp kept
// one value and was in every scrape the epoch was in, the cursor's included
// (so it describes the cursor's series too: an exporter without it then,
// or a back end that lost that scrape, has the node's series asked for),
// and the epoch is still the cursor's. Each quiet node's answer has its
// epoch and last scrape and no samples, which commits nothing but, when
// the cursor is old, the cursor's move.
//
// "Kept one value" is max_over_time - min_over_time, not changes():
// VictoriaMetrics's changes() skips a step smaller than 1e-12 of the value
// as a rounding error, 1.8 ms of a Unix time in seconds, so it missed a
// timestamp that moved by a millisecond, the exporter's smallest step
// (changes in scrapes less than 2 ms apart, or after its clock went back).
// The difference of two stored values is exact on both back ends.
//
// Prometheus answers this reading three series a node instead of every
// series, which is where a cycle in which nothing moved spent its time.
func (a *Accountant) gate(ctx context.Context, at time.Time, q query) (map[string]*nodeAnswer, error) {
	ms := at.UnixMilli()
	// The windows end at the query's time exactly: VictoriaMetrics
	// answers a query about "now" as of -search.latencyOffset earlier,
	// which would move them off the cursor's scrape. The epoch and last
	// scrape below are not pinned and so come from that earlier instant
	// there: still within the windows, so the quiet they are given holds
	// for them.
	end := ` @ ` + strconv.FormatFloat(float64(ms)/1e3, 'f', 3, 64)
	var b strings.Builder
	for i, n := range q.nodes {
		if q.since[i] >= ms {
			continue // skewed clocks: askSeries reads the node whole
		}
		sel := `{node=` + strconv.Quote(n) + `}`
		from := `[` + strconv.FormatInt(ms-q.since[i]+1, 10) + `ms]` + end
		after := `[` + strconv.FormatInt(ms-q.since[i], 10) + `ms]` + end
		// 0 exactly when the timestamp kept one value, had as many
		// samples as the epoch, and the epoch had one at the cursor; each
		// term is at least 0. A node without the timestamp has no answer.
		b.WriteString(`label_replace(max_over_time(` + changeMetric + sel + from + `) - min_over_time(` + changeMetric + sel + from + `)` +
			` + abs(count_over_time(` + epochMetric + sel + from + `) - count_over_time(` + changeMetric + sel + from + `))` +
			` + (1 - count_over_time(` + epochMetric + sel + from + `) + count_over_time(` + epochMetric + sel + after + `))` +
			`, "gate", "1", "", "") or `)
	}
	if b.Len() == 0 {
		return map[string]*nodeAnswer{}, nil
	}
	group := `node=~` + nodesRegex(q.nodes)
	b.WriteString(epochMetric + `{` + group + `} or ` + scrapedExpr(group))
	v, err := a.queryVector(ctx, b.String(), at)
	if err != nil {
		return nil, err
	}
	quiet := map[string]*nodeAnswer{}
	ans := v.byNode()
	for i, n := range q.nodes {
		g := ans[n]
		if g != nil && g.gated && g.gate == 0 && g.epoch == q.epochs[i] && g.scraped > q.since[i] && q.since[i] < ms {
			quiet[n] = &nodeAnswer{epoch: g.epoch, scraped: g.scraped}
		}
	}
	return quiet, nil
}

// askSeries reads the nodes' series that moved since their cursors, in
// two queries: which series moved (up to movedByName a node), then their
// values.
//
// A series moved when its value changed after the cursor's scrape
// (increase() over the samples from that scrape on), or when it was not in
// that scrape. The second is read from Prometheus's own
// scrape_series_added, which counts the series a scrape has that the one
// before it lacked: while it stayed 0 since the cursor, every series now
// was in the cursor's scrape. A node where it did not, or where it is
// missing (a backend that does not write it), has every series read.
// The selection touches each series once, with no matching of labels
// (matching every series against its value at the cursor cost Prometheus
// more than sending them all), and answers at most movedByName+1 series
// a node (topk): a node where more moved is read whole. The values are
// then looked up by name in Prometheus's index.
func (a *Accountant) askSeries(ctx context.Context, at time.Time, q query) (map[string]*nodeAnswer, error) {
	ms := at.UnixMilli()
	var b strings.Builder
	skewed := map[string]bool{}
	for i, n := range q.nodes {
		if q.since[i] >= ms {
			// Prometheus's clock is ahead of this one: read every series.
			skewed[n] = true
			continue
		}
		sel := `{node=` + strconv.Quote(n) + `}`
		// From the cursor's scrape on (ranges leave out their start),
		// and after it.
		from := `[` + strconv.FormatInt(ms-q.since[i]+1, 10) + `ms]`
		after := `[` + strconv.FormatInt(ms-q.since[i], 10) + `ms]`
		// increase(), not changes(): VictoriaMetrics's changes() skips a
		// step smaller than 1e-12 of the value as rounding, a byte on a
		// counter past a terabyte. Within an epoch a counter only grows,
		// so it moved exactly when its increase is above 0 (a lower, older
		// reading looks like a reset and is read, then refused by the
		// commit); Prometheus's extrapolation scales a non-zero increase
		// and leaves a zero one at 0.
		b.WriteString(`topk(` + strconv.Itoa(movedByName+1) + `, increase(` + metric + sel + from + `) > 0) or `)
		b.WriteString(`label_replace(sum_over_time(scrape_series_added` + sel + after + `), "guard", "1", "", "") or `)
	}
	group := `node=~` + nodesRegex(q.nodes)
	b.WriteString(epochMetric + `{` + group + `} or ` + scrapedExpr(group))
	v, err := a.queryVector(ctx, b.String(), at)
	if err != nil {
		return nil, err
	}
	sel := v.byNode()

	// The values: of the moved series where the guard held, of every
	// series where it did not, with the epochs again to check that both
	// queries saw the same counters.
	var parts []string
	whole := 0
	for i, n := range q.nodes {
		ans := sel[n]
		switch {
		case ans == nil || ans.epoch != q.epochs[i] || skewed[n]:
			// A new epoch, or the exporter gone: every series is read
			// and committed whole.
			parts = append(parts, `{__name__=~"`+metric+`",node=`+strconv.Quote(n)+`}`)
			if ans != nil {
				ans.full = true
			}
			whole++
		case !ans.guarded || ans.added > 0 || ans.movedSeries > movedByName:
			parts = append(parts, metric+`{node=`+strconv.Quote(n)+`}`)
			whole++
		case len(ans.moved) > 0:
			users := make([]string, 0, len(ans.moved))
			for u := range ans.moved {
				users = append(users, u)
			}
			sort.Strings(users)
			// A set of names, which Prometheus looks up in its index.
			parts = append(parts, metric+`{node=`+strconv.Quote(n)+`,user=~`+nodesRegex(users)+`}`)
		}
	}
	a.reads.WithLabelValues(readWhole).Add(float64(whole))
	a.reads.WithLabelValues(readMoved).Add(float64(len(q.nodes) - whole))
	if len(parts) == 0 {
		return sel, nil
	}
	v, err = a.queryVector(ctx, strings.Join(parts, ` or `)+` or `+epochMetric+`{`+group+`} or `+scrapedExpr(group), at)
	if err != nil {
		return nil, err
	}
	vals := v.byNode()
	for _, n := range q.nodes {
		ans, val := sel[n], vals[n]
		switch {
		case val == nil:
			continue
		case ans == nil || ans.full:
			// Committed whole, from the second query alone.
			val.full = true
			sel[n] = val
		case val.epoch != ans.epoch:
			// The epoch changed between the two queries: the next
			// cycle reads it.
			delete(sel, n)
		default:
			ans.samples = val.samples
		}
	}
	return sel, nil
}

// movedByName is the most moved series of a node whose values are asked
// for by name; beyond it the node's every series is read.
const movedByName = 1000

// busyChanged is how many series a node's commit changed that makes the
// next cycle read the node whole (see Accountant.busy). Measured at
// 1,000,000 series (TestScale, 5,000 a node): with 500 of a node's series
// moving, whole reads took 7.8 s a cycle against 11.3 s for asking which
// moved first, and 17 s against 29 s when all moved. Fewer moving
// series favour asking first; where the two cross was not measured.
const busyChanged = 250

// nodesRegex matches exactly the names given.
func nodesRegex(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return strconv.Quote(strings.Join(quoted, "|"))
}

// scrapedExpr is the timestamp of the nodes' last scrape, as the epoch's
// sample time, marked with a label of its own.
func scrapedExpr(sel string) string {
	return `label_replace(timestamp(` + epochMetric + `{` + sel + `}), "scraped", "1", "", "")`
}

func (a *Accountant) sweep(ctx context.Context) error {
	start := time.Now()
	changes, err := a.Store.Sweep(ctx, "system:sweep")
	a.phases.WithLabelValues(phaseSweep).Add(time.Since(start).Seconds())
	for _, c := range changes {
		a.Log.WithFields(logrus.Fields{"user": c.User, "from": c.From, "to": c.To, "period_reset": c.Reset}).Info("user status swept")
	}
	return err
}

// nodes lists every node with an exporter in Prometheus, whether or not it
// is registered: traffic is billed even from a node deleted a moment ago.
// It also returns each node's last scrape (ms).
func (a *Accountant) nodes(ctx context.Context, at time.Time) ([]string, map[string]int64, error) {
	v, err := a.query(ctx, nodesQuery, at)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	scraped := map[string]int64{}
	for _, s := range v {
		n := string(s.Metric["node"])
		if n == "" {
			continue
		}
		if _, dup := scraped[n]; dup {
			scraped[n] = -1 // two exporters with one name: no cursor can describe both
			continue
		}
		out = append(out, n)
		scraped[n] = int64(math.Round(float64(s.Value) * 1e3))
	}
	sort.Strings(out)
	return out, scraped, nil
}

// cursorRefresh is how old a node's cursor may grow while none of its
// series move before a commit moves it forward: comparing with a scrape
// long gone makes Prometheus read old blocks, and a node is read through
// its exporter's recent series only while its cursor is younger than the
// exporter's window less recentMargin (2m less 30 s by default), which a
// node quiet for longer would miss at its next move. The cycle moves all
// such cursors in one transaction, a row each. A variable for tests.
var cursorRefresh = 45 * time.Second

// groupSamples is about how many samples one commit transaction holds:
// four nodes read whole at TestScale's size, or every node of an answer in
// which a tenth of the series moved.
const groupSamples = 20_000

// commitNodes commits the nodes of one answer, several to a transaction
// (see groupSamples), and returns the bytes they added to the ledger. A node where nothing moved
// only has its cursor moved, once it is old, with the cycle's other such
// nodes (moves).
func (a *Accountant) commitNodes(ctx context.Context, q queried, cursors map[string]store.NodeCursor, moves map[string]store.NodeCursor) (int64, error) {
	var commits []store.NodeCommit
	for _, node := range q.nodes {
		ans := q.answers[node]
		if ans == nil {
			continue // no exporter now: nothing to read
		}
		partial := q.moved && !ans.full
		if cur := cursors[node]; partial && len(ans.samples) == 0 {
			if time.Since(time.UnixMilli(cur.Scraped)) >= cursorRefresh && ans.epoch == cur.Epoch && ans.scraped > cur.Scraped {
				moves[node] = store.NodeCursor{Epoch: ans.epoch, Scraped: ans.scraped}
			}
			continue
		}
		if a.BeforeCommit != nil {
			a.BeforeCommit(node)
		}
		commits = append(commits, store.NodeCommit{
			Lease: LeaseName, Holder: a.Holder, Node: node, Epoch: ans.epoch, Samples: ans.samples,
			Partial: partial, Scraped: ans.scraped, At: time.Now(),
		})
	}
	var added int64
	for done := 0; done < len(commits); {
		// A transaction holds a few nodes' worth of rows at most: it holds
		// the lease row too, and the leader's own renewal waits for it.
		part, samples := commits[done:], 0
		for i, c := range part {
			if samples += len(c.Samples); i > 0 && (samples > groupSamples || i == a.baseline.nodesPerTx) {
				part = part[:i]
				break
			}
		}
		start := time.Now()
		results, err := a.Store.CommitNodes(ctx, part)
		a.phases.WithLabelValues(phaseCommit).Add(time.Since(start).Seconds())
		if err != nil {
			return added, err // it names the node
		}
		for i, res := range results {
			a.committed(part[i].Node, res)
			added += res.Bytes
		}
		done += len(part)
	}
	return added, nil
}

// committed notes what one node's commit did.
func (a *Accountant) committed(node string, res store.CommitResult) {
	if !a.baseline.noBusy {
		if res.Changed >= busyChanged {
			a.busy[node] = true
		} else {
			delete(a.busy, node)
		}
	}
	a.bytes.Add(float64(res.Bytes))
	a.resets.Add(float64(res.Resets))
	if res.Older > 0 {
		a.Log.WithFields(logrus.Fields{"node": node, "series": res.Older}).Warn("counters read below what the ledger already holds, under the same epoch: the metrics back end lost recent samples; they are not counted again")
	}
	if res.Resets > 0 {
		a.Log.WithFields(logrus.Fields{"node": node, "series": res.Resets}).Warn("counter reset: the exporter lost its state")
	}
}

func (a *Accountant) query(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, warnings, _, err := a.Prom.Query(ctx, q, at)
	if err != nil {
		return nil, fmt.Errorf("query Prometheus: %w", err)
	}
	for _, w := range warnings {
		a.Log.WithField("query", q).Warn(w)
	}
	v, ok := res.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query Prometheus: unexpected result type %s", res.Type())
	}
	return v, nil
}
