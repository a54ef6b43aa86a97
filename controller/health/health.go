// Package health scores nodes from Prometheus so that subscriptions list
// the best nodes first and the drain guard knows which nodes are healthy.
// Scores are kept between refreshes: when Prometheus is unreachable the
// last known ranking stays in force, and subscriptions never fail for it.
package health

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
)

// DefaultQuery scores each node in 0..1 from what the shipped Prometheus
// config collects: availability seen from outside (blackbox TCP probes,
// discounted by connect latency: 500 ms halves the score), times sing-box
// up as its exporter sees it, times a load factor (10,000 open connections
// halve the score). A node whose exporter is unreachable but whose probes
// succeed gets half marks for the inside view; one without probes is judged
// on the inside view alone. Nodes the query does not return have no score.
const DefaultQuery = `
(
    avg by (node) (avg_over_time(probe_success{job="blackbox"}[5m]))
  / (1 + (avg by (node) (avg_over_time(probe_duration_seconds{job="blackbox"}[5m])) or avg by (node) (probe_success{job="blackbox"}) * 0) / 0.5)
  or max by (node) (up{job="singbox"})
)
* on (node) (max by (node) (singbox_up{job="singbox"}) or max by (node) (up{job="singbox"}) * 0 + 0.5)
* on (node) (1 / (1 + sum by (node) (singbox_connections{job="singbox"}) / 10000) or max by (node) (up{job="singbox"}) * 0 + 1)
`

// Ranker refreshes node scores from Prometheus.
type Ranker struct {
	Prom  promv1.API
	Query string
	Log   logrus.FieldLogger

	mu     sync.RWMutex
	scores map[string]float64
	gauge  *prometheus.Desc
	fresh  prometheus.Gauge
}

// New returns a ranker; register it on reg to export the scores.
func New(prom promv1.API, query string, log logrus.FieldLogger, reg prometheus.Registerer) *Ranker {
	if query == "" {
		query = DefaultQuery
	}
	f := promauto.With(reg)
	r := &Ranker{
		Prom: prom, Query: query, Log: log, scores: map[string]float64{},
		gauge: prometheus.NewDesc("boxfleet_node_health_score",
			"Node health in 0..1 from --health.query; subscriptions list nodes by it, best first.", []string{"node"}, nil),
		fresh: f.NewGauge(prometheus.GaugeOpts{
			Name: "boxfleet_health_last_refresh_timestamp_seconds",
			Help: "When node scores were last read from Prometheus.",
		}),
	}
	reg.MustRegister(r) // the per-node scores are const metrics built at scrape time
	return r
}

// Describe implements prometheus.Collector.
func (r *Ranker) Describe(ch chan<- *prometheus.Desc) { ch <- r.gauge }

// Collect implements prometheus.Collector.
func (r *Ranker) Collect(ch chan<- prometheus.Metric) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for n, s := range r.scores {
		ch <- prometheus.MustNewConstMetric(r.gauge, prometheus.GaugeValue, s, n)
	}
}

// Run refreshes every interval until ctx ends.
func (r *Ranker) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.Log.WithError(err).Warn("Prometheus query failed; keeping the last scores")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh replaces the scores with the query's result. On error the old
// scores stay.
func (r *Ranker) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, _, _, err := r.Prom.Query(ctx, r.Query, time.Now())
	if err != nil {
		return err
	}
	vec, _ := v.(model.Vector)
	scores := make(map[string]float64, len(vec))
	for _, s := range vec {
		n := string(s.Metric["node"])
		f := float64(s.Value)
		if n == "" || math.IsNaN(f) {
			continue
		}
		scores[n] = math.Max(0, math.Min(1, f))
	}
	r.mu.Lock()
	r.scores = scores
	r.mu.Unlock()
	r.fresh.SetToCurrentTime()
	return nil
}

// Score returns a node's score; ok is false when it has none.
func (r *Ranker) Score(node string) (float64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.scores[node]
	return s, ok
}

// Sort orders names best first: by score, nodes without a score after
// scored healthy ones but before nodes scored 0, ties by name so the order
// is stable between requests.
func (r *Ranker) Sort(names []string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	key := func(n string) float64 {
		if s, ok := r.scores[n]; ok {
			if s == 0 {
				return -1
			}
			return s
		}
		return 0
	}
	sort.SliceStable(names, func(i, j int) bool {
		ki, kj := key(names[i]), key(names[j])
		if ki != kj {
			return ki > kj
		}
		return names[i] < names[j]
	})
}

// Set replaces the scores, as a refresh would; tests use it to stand in
// for Prometheus.
func (r *Ranker) Set(scores map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scores = scores
}
