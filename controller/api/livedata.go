package api

import (
	"context"
	"math"
	"strconv"

	"github.com/prometheus/common/model"
)

// The fixed PromQL behind the UI's live numbers. Each view needs one
// query: the parts are told apart by a "k" label that label_replace adds
// (an empty source label matches the empty regex, so the label is simply
// set). A one-minute rate is "now" for a UI refreshing every few seconds
// and still has two scrapes at the default 15 s interval.
const (
	// usersLiveQuery: every user's rate and connections summed over
	// nodes, and devices as the recording rule counts them (distinct
	// addresses across the fleet, as the UserTooManyDevices alert does).
	// Where the rule has no series (a Prometheus without the recording
	// rules, or before their first evaluation), the addresses summed over
	// nodes stand in, as before the rule existed.
	usersLiveQuery = `label_replace(sum by (user, direction) (rate(singbox_user_traffic_bytes_total[1m])), "k", "rate_$1", "direction", "(.+)")
or label_replace(sum by (user) (singbox_user_connections), "k", "connections", "", "")
or label_replace(user:singbox_user_devices:count or sum by (user) (singbox_user_source_ips), "k", "source_ips", "", "")`

	// nodesLiveQuery: each node's rate, connections, users online, applied
	// revision, failed applies and traffic of the last day (with what of it
	// was unattributed or estimated), the exporter's version, and the
	// inputs of the built-in health score.
	nodesLiveQuery = `label_replace(sum by (node, direction) (rate(singbox_traffic_bytes_total[1m])), "k", "rate_$1", "direction", "(.+)")
or label_replace(sum by (node) (singbox_connections), "k", "connections", "", "")
or label_replace(count by (node) (singbox_user_connections > 0), "k", "online_users", "", "")
or label_replace(max by (node) (singbox_config_revision), "k", "revision_applied", "", "")
or label_replace(sum by (node) (increase(singbox_config_apply_total{result!="success"}[1d])), "k", "apply_failures", "", "")
or label_replace(sum by (node) (increase(singbox_traffic_bytes_total[1d])), "k", "total_1d", "", "")
or label_replace(sum by (node) (increase(singbox_unattributed_traffic_bytes_total[1d])), "k", "unattributed_1d", "", "")
or label_replace(sum by (node) (increase(singbox_exporter_attribution_estimated_bytes_total[1d])), "k", "estimated_1d", "", "")
or label_replace(max by (node, version) (singbox_exporter_build_info), "k", "exporter_version", "", "")
or label_replace(max by (node) (singbox_up), "k", "singbox_up", "", "")
or label_replace(max by (node) (up{job="singbox"}), "k", "exporter_up", "", "")
or label_replace(avg by (node) (avg_over_time(probe_success{job="blackbox"}[5m])), "k", "probe_success", "", "")
or label_replace(avg by (node) (avg_over_time(probe_duration_seconds{job="blackbox"}[5m])), "k", "probe_seconds", "", "")`

	// accountingLagQuery: seconds since the last accounting cycle of any
	// controller (the leader's).
	accountingLagQuery = `time() - max(boxfleet_accounting_last_success_timestamp_seconds)`
)

// userLiveQuery is one user's numbers per node; name is a valid user
// name (no quote or backslash can reach the query).
func userLiveQuery(name string) string {
	sel := `{user=` + strconv.Quote(name) + `}`
	return `label_replace(sum by (node, direction) (rate(singbox_user_traffic_bytes_total` + sel + `[1m])), "k", "rate_$1", "direction", "(.+)")
or label_replace(sum by (node) (singbox_user_connections` + sel + `), "k", "connections", "", "")
or label_replace(sum by (node) (singbox_user_source_ips` + sel + `), "k", "source_ips", "", "")`
}

// userLive is one user's live numbers.
type userLive struct {
	Up, Down    float64
	Connections float64
	SourceIPs   float64
}

// usersLive reads every user's live numbers; ok is false when Prometheus
// could not be read.
func (a *API) usersLive(ctx context.Context) (map[string]*userLive, bool) {
	return liveBy(ctx, a, usersLiveQuery, "user", func(l *userLive, s *model.Sample) {
		addPart(s, &l.Up, &l.Down, &l.Connections, &l.SourceIPs)
	})
}

// liveBy runs one of the fixed queries and folds its samples into one T
// per value of label (samples without it are left out); ok is false when
// Prometheus could not be read, which callers show as "not live".
func liveBy[T any](ctx context.Context, a *API, query, label string, add func(*T, *model.Sample)) (map[string]*T, bool) {
	if a.live == nil {
		return nil, false
	}
	vec, err := a.live.Vector(ctx, query)
	if err != nil {
		a.log.WithError(err).WithField("by", label).Debug("live query failed")
		return nil, false
	}
	out := map[string]*T{}
	for _, s := range vec {
		key := string(s.Metric[model.LabelName(label)])
		if key == "" {
			continue
		}
		t := out[key]
		if t == nil {
			t = new(T)
			out[key] = t
		}
		add(t, s)
	}
	return out, true
}

// addPart adds one sample of a combined query to the fields its "k" label
// names.
func addPart(s *model.Sample, up, down, conns, ips *float64) {
	v := finite(float64(s.Value))
	switch s.Metric["k"] {
	case "rate_upload":
		*up += v
	case "rate_download":
		*down += v
	case "connections":
		*conns += v
	case "source_ips":
		*ips += v
	}
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// nodeLive is one node's live numbers; nil fields are unknown.
type nodeLive struct {
	RateUp, RateDown                     float64
	Connections, OnlineUsers             *float64
	RevisionApplied, ApplyFailures       *float64
	Total1d, Unattributed1d, Estimated1d *float64
	ExporterVersion                      string
	SingboxUp, ExporterUp                *float64
	ProbeSuccess, ProbeSeconds           *float64
	hasRate                              bool
}

func (a *API) nodesLive(ctx context.Context) (map[string]*nodeLive, bool) {
	return liveBy(ctx, a, nodesLiveQuery, "node", func(l *nodeLive, s *model.Sample) {
		v := finite(float64(s.Value))
		p := func() *float64 { return &v }
		switch s.Metric["k"] {
		case "rate_upload":
			l.RateUp += v
			l.hasRate = true
		case "rate_download":
			l.RateDown += v
			l.hasRate = true
		case "connections":
			l.Connections = p()
		case "online_users":
			l.OnlineUsers = p()
		case "revision_applied":
			l.RevisionApplied = p()
		case "apply_failures":
			l.ApplyFailures = p()
		case "total_1d":
			l.Total1d = p()
		case "unattributed_1d":
			l.Unattributed1d = p()
		case "estimated_1d":
			l.Estimated1d = p()
		case "exporter_version":
			l.ExporterVersion = string(s.Metric["version"])
		case "singbox_up":
			l.SingboxUp = p()
		case "exporter_up":
			l.ExporterUp = p()
		case "probe_success":
			l.ProbeSuccess = p()
		case "probe_seconds":
			l.ProbeSeconds = p()
		}
	})
}
