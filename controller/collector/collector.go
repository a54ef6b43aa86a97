// Package collector exports the controller's view of users and nodes for
// alert rules and dashboards. Like an exporter's collector it reads the
// store at scrape time and builds const metrics, so the numbers are never
// older than the scrape.
package collector

import (
	"context"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// The per-user families' help, shared by the Collector and WriteUsers.
const (
	usedHelp      = "Traffic (upload + download) the user has used in the current period, from the ledger."
	limitHelp     = "Traffic limit for the current period; absent when unlimited."
	expiryHelp    = "When the user expires; absent when never."
	periodEndHelp = "When the user's current traffic period ends and its use is reset; absent for no_reset."
	devicesHelp   = "How many source IPs the user may use at once; absent when unlimited."
	statusHelp    = "1 for the user's current status (active, disabled, limited, expired, on_hold)."
	usersHelp     = "Number of users by status."
)

var (
	storeUp = prometheus.NewDesc("boxfleet_store_up",
		"1 when the last scrape could read the database.", nil, nil)
	used      = prometheus.NewDesc("boxfleet_user_traffic_used_bytes", usedHelp, []string{"user"}, nil)
	limit     = prometheus.NewDesc("boxfleet_user_traffic_limit_bytes", limitHelp, []string{"user"}, nil)
	expiry    = prometheus.NewDesc("boxfleet_user_expiry_timestamp_seconds", expiryHelp, []string{"user"}, nil)
	periodEnd = prometheus.NewDesc("boxfleet_user_period_end_timestamp_seconds", periodEndHelp, []string{"user"}, nil)
	devices   = prometheus.NewDesc("boxfleet_user_device_limit", devicesHelp, []string{"user"}, nil)
	status    = prometheus.NewDesc("boxfleet_user_status", statusHelp, []string{"user", "status"}, nil)
	users     = prometheus.NewDesc("boxfleet_users", usersHelp, []string{"status"}, nil)
	drained   = prometheus.NewDesc("boxfleet_node_drained",
		"1 when the node is left out of subscriptions.", []string{"node"}, nil)
	lastSeen = prometheus.NewDesc("boxfleet_node_last_seen_timestamp_seconds",
		"When the node's exporter last registered.", []string{"node"}, nil)
)

// Collector reads the store on every scrape.
type Collector struct {
	Store   *store.Store
	Log     logrus.FieldLogger
	Timeout time.Duration
	// StreamUsers leaves the per-user families and boxfleet_users to
	// Handler, which writes them without the registry.
	StreamUsers bool
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeUp
	ch <- drained
	ch <- lastSeen
	if !c.StreamUsers {
		for _, d := range []*prometheus.Desc{used, limit, expiry, periodEnd, devices, status, users} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector. A database outage yields
// boxfleet_store_up 0 rather than a failed scrape, so the alert on it can
// fire.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	var err error
	if !c.StreamUsers {
		err = collectUsers(ctx, ch, c.Store)
	}
	if err == nil {
		var ns []*store.Node
		if ns, err = c.Store.ListNodes(ctx); err == nil {
			collectNodes(ch, ns)
		}
	}
	up := 1.0
	if err != nil {
		c.Log.WithError(err).Warn("reading the store failed")
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(storeUp, prometheus.GaugeValue, up)
}

// collectUsers streams the users' gauges from the database straight into
// the scrape: at 100,000 users, loading whole users first cost the
// controller about 200 MiB per scrape.
func collectUsers(ctx context.Context, ch chan<- prometheus.Metric, st *store.Store) error {
	counts := map[string]int{}
	for _, s := range store.Statuses {
		counts[s] = 0
	}
	err := st.UserGauges(ctx, func(u *store.UserGauge) {
		counts[u.Status]++
		ch <- prometheus.MustNewConstMetric(used, prometheus.GaugeValue, float64(u.Used), u.Name)
		ch <- prometheus.MustNewConstMetric(status, prometheus.GaugeValue, 1, u.Name, u.Status)
		if u.TrafficLimit > 0 {
			ch <- prometheus.MustNewConstMetric(limit, prometheus.GaugeValue, float64(u.TrafficLimit), u.Name)
		}
		if u.ExpireAt != 0 {
			ch <- prometheus.MustNewConstMetric(expiry, prometheus.GaugeValue, float64(u.ExpireAt), u.Name)
		}
		if end, ok := u.PeriodEnd(); ok {
			ch <- prometheus.MustNewConstMetric(periodEnd, prometheus.GaugeValue, float64(end.Unix()), u.Name)
		}
		if u.DeviceLimit > 0 {
			ch <- prometheus.MustNewConstMetric(devices, prometheus.GaugeValue, float64(u.DeviceLimit), u.Name)
		}
	})
	if err != nil {
		return err
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(users, prometheus.GaugeValue, float64(n), s)
	}
	return nil
}

func collectNodes(ch chan<- prometheus.Metric, ns []*store.Node) {
	for _, n := range ns {
		d := 0.0
		if n.Drained {
			d = 1
		}
		ch <- prometheus.MustNewConstMetric(drained, prometheus.GaugeValue, d, n.Name)
		if n.LastSeen != nil {
			ch <- prometheus.MustNewConstMetric(lastSeen, prometheus.GaugeValue, float64(n.LastSeen.Unix()), n.Name)
		}
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
