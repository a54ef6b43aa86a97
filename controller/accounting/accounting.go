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
		Store: st, Prom: promv1.NewAPI(c), Log: log, Holder: holder,
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
	for _, node := range nodes {
		if err := a.commitNode(ctx, node); err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
	}
	return a.sweep(ctx)
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

func (a *Accountant) commitNode(ctx context.Context, node string) error {
	// One query for counters and their epoch, so both come from the same
	// evaluation.
	v, err := a.query(ctx, `{__name__=~"`+metric+`|`+epochMetric+`",node=`+strconv.Quote(node)+`}`)
	if err != nil {
		return err
	}
	samples := make([]store.Sample, 0, len(v))
	var epoch int64
	for _, s := range v {
		val := float64(s.Value)
		if s.Metric[model.MetricNameLabel] == epochMetric {
			epoch = int64(val)
			continue
		}
		if math.IsNaN(val) || val < 0 || val > 1<<62 {
			continue
		}
		samples = append(samples, store.Sample{
			User: string(s.Metric["user"]), Direction: string(s.Metric["direction"]), Value: int64(val),
		})
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
