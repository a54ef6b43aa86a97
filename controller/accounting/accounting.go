// Package accounting turns the exporters' per-user counters, as Prometheus
// stores them, into the controller's exact ledger, and runs the loops that
// must run on one controller at a time (accounting, quota and expiry
// sweeps, period resets) under a lease held in the database.
package accounting

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
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
)

// Accountant reads Prometheus and writes the ledger.
type Accountant struct {
	Store  *store.Store
	Prom   promv1.API
	Log    *logrus.Logger
	Holder string // this controller's identity in the lease
	// Before each commit; tests use it to stop a controller mid-cycle.
	BeforeCommit func(node string)

	client      promapi.Client // for the per-node queries, decoded by queryVector
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
	errors      prometheus.Counter
	bytes       prometheus.Counter
	resets      prometheus.Counter
}

// New connects to Prometheus at url and registers the accountant's metrics.
func New(st *store.Store, url, holder string, log *logrus.Logger, reg prometheus.Registerer) (*Accountant, error) {
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("--prometheus.url: %w", err)
	}
	a := &Accountant{
		Store: st, Prom: promv1.NewAPI(c), Log: log, Holder: holder, client: c,
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "boxfleet_accounting_last_success_timestamp_seconds",
			Help: "When an accounting cycle last completed on this controller.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "boxfleet_accounting_duration_seconds",
			Help:    "Time one accounting cycle took.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "boxfleet_accounting_errors_total",
			Help: "Accounting cycles that failed (Prometheus or database unreachable, lease lost).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "boxfleet_accounting_bytes_total",
			Help: "Bytes added to the ledger.",
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "boxfleet_accounting_counter_resets_total",
			Help: "Counter resets seen in exporters' per-user counters (an exporter lost its state file).",
		}),
	}
	reg.MustRegister(a.lastSuccess, a.duration, a.errors, a.bytes, a.resets)
	return a, nil
}

// Cycle runs one accounting pass: sweep period resets, commit every node's
// deltas, then sweep statuses so that a quota crossed in this cycle takes
// effect at once. Each node commits on its own, so a failure part-way
// leaves the others done and the rest for the next cycle.
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
	nodes, err := a.nodes(ctx)
	if err != nil {
		return err
	}
	// Returning early stops the prefetching goroutine.
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for q := range a.prefetch(qctx, nodes) {
		if q.err == nil {
			q.err = a.commitNode(ctx, q.node, q.vec)
		}
		if q.err != nil {
			return fmt.Errorf("node %s: %w", q.node, q.err)
		}
	}
	return a.sweep(ctx)
}

// queried is one node's answer from Prometheus.
type queried struct {
	node string
	vec  *nodeVector
	err  error
}

// prefetchDepth is how many nodes' answers wait for their commit.
//
// Querying the next nodes during a commit makes a cycle take about the
// longer of Prometheus's and the database's work instead of their sum. Each waiting answer holds one node's series (about a megabyte of
// JSON for 5,000 users), so memory stays bounded.
const prefetchDepth = 2

// prefetch queries the nodes in order, ahead of their commits. The channel
// is closed after the last node, after the first error, or once ctx ends,
// which is how the reader stops it.
func (a *Accountant) prefetch(ctx context.Context, nodes []string) <-chan queried {
	out := make(chan queried, prefetchDepth)
	go func() {
		defer close(out)
		for _, node := range nodes {
			vec, err := a.queryVector(ctx, `{__name__=~"`+metric+`|`+epochMetric+`",node=`+strconv.Quote(node)+`}`)
			select {
			case out <- queried{node: node, vec: vec, err: err}:
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

func (a *Accountant) sweep(ctx context.Context) error {
	changes, err := a.Store.Sweep(ctx, "system:sweep")
	for _, c := range changes {
		a.Log.WithFields(logrus.Fields{"user": c.User, "from": c.From, "to": c.To, "period_reset": c.Reset}).Info("user status swept")
	}
	return err
}

// nodes lists every node that has per-user series in Prometheus, whether or
// not it is registered: traffic is billed even from a node deleted a moment
// ago.
func (a *Accountant) nodes(ctx context.Context) ([]string, error) {
	v, err := a.query(ctx, `count by (node) (`+metric+`)`)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range v {
		if n := string(s.Metric["node"]); n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (a *Accountant) commitNode(ctx context.Context, node string, v *nodeVector) error {
	// Counters and their epoch come from one query, so both come from the
	// same evaluation.
	samples := make([]store.Sample, 0, len(v.Data.Result))
	var epoch int64
	for _, s := range v.Data.Result {
		val := s.Value.v
		if !s.Value.ok {
			continue
		}
		if s.Metric.Name == epochMetric {
			epoch = int64(val)
			continue
		}
		if math.IsNaN(val) || val < 0 || val > 1<<62 {
			continue
		}
		samples = append(samples, store.Sample{User: s.Metric.User, Direction: s.Metric.Direction, Value: int64(val)})
	}
	if a.BeforeCommit != nil {
		a.BeforeCommit(node)
	}
	res, err := a.Store.CommitNode(ctx, LeaseName, a.Holder, node, epoch, samples, time.Now())
	if err != nil {
		return err
	}
	a.bytes.Add(float64(res.Bytes))
	a.resets.Add(float64(res.Resets))
	if res.Resets > 0 {
		a.Log.WithFields(logrus.Fields{"node": node, "series": res.Resets}).Warn("counter reset: the exporter lost its state")
	}
	return nil
}

func (a *Accountant) query(ctx context.Context, q string) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, warnings, _, err := a.Prom.Query(ctx, q, time.Now())
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
