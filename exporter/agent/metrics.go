package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results of singbox_config_apply_total.
const (
	resultSuccess      = "success"
	resultCheckFailed  = "check_failed"
	resultReloadFailed = "reload_failed"
)

type metrics struct {
	revision         prometheus.Gauge
	applies          *prometheus.CounterVec
	lastSync         prometheus.Gauge
	lastRegistration prometheus.Gauge
	controllerErrors *prometheus.CounterVec
	reloadDuration   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		revision: f.NewGauge(prometheus.GaugeOpts{
			Name: "singbox_config_revision",
			Help: "Revision of the user set the sing-box config now holds.",
		}),
		applies: f.NewCounterVec(prometheus.CounterOpts{
			Name: "singbox_config_apply_total",
			Help: "Attempts to apply a changed user set to sing-box, by result.",
		}, []string{"result"}),
		lastSync: f.NewGauge(prometheus.GaugeOpts{
			Name: "singbox_exporter_agent_last_sync_timestamp_seconds",
			Help: "When the controller last answered a user-set request.",
		}),
		lastRegistration: f.NewGauge(prometheus.GaugeOpts{
			Name: "singbox_exporter_agent_last_registration_timestamp_seconds",
			Help: "When the node last registered with the controller.",
		}),
		controllerErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "singbox_exporter_agent_controller_errors_total",
			Help: "Failed requests to the controller, by request.",
		}, []string{"request"}),
		reloadDuration: f.NewGauge(prometheus.GaugeOpts{
			Name: "singbox_exporter_agent_reload_duration_seconds",
			Help: "Time from asking sing-box to reload until it served again, for the last reload.",
		}),
	}
	for _, r := range []string{resultSuccess, resultCheckFailed, resultReloadFailed} {
		m.applies.WithLabelValues(r)
	}
	for _, r := range []string{"register", "users"} {
		m.controllerErrors.WithLabelValues(r)
	}
	return m
}
