package server

// Metric is one metric family the controller exposes on /metrics, besides
// the Go runtime and process collectors.
type Metric struct {
	Name   string
	Type   string // gauge, counter, histogram
	Labels []string
}

// Metrics lists what alert rules and dashboards may use. A test builds a
// real controller, exercises every part and checks that its /metrics and
// this list agree, so the list cannot drift from the code.
var Metrics = []Metric{
	{"boxfleet_build_info", "gauge", []string{"branch", "goarch", "goos", "goversion", "revision", "tags", "version"}},
	{"boxfleet_store_up", "gauge", nil},
	{"boxfleet_user_traffic_used_bytes", "gauge", []string{"user"}},
	{"boxfleet_user_traffic_limit_bytes", "gauge", []string{"user"}},
	{"boxfleet_user_expiry_timestamp_seconds", "gauge", []string{"user"}},
	{"boxfleet_user_period_end_timestamp_seconds", "gauge", []string{"user"}},
	{"boxfleet_user_device_limit", "gauge", []string{"user"}},
	{"boxfleet_user_status", "gauge", []string{"status", "user"}},
	{"boxfleet_users", "gauge", []string{"status"}},
	{"boxfleet_node_drained", "gauge", []string{"node"}},
	{"boxfleet_node_last_seen_timestamp_seconds", "gauge", []string{"node"}},
	{"boxfleet_node_health_score", "gauge", []string{"node"}},
	{"boxfleet_health_last_refresh_timestamp_seconds", "gauge", nil},
	{"boxfleet_accounting_last_success_timestamp_seconds", "gauge", nil},
	{"boxfleet_accounting_duration_seconds", "histogram", nil},
	{"boxfleet_accounting_errors_total", "counter", nil},
	{"boxfleet_accounting_bytes_total", "counter", nil},
	{"boxfleet_accounting_counter_resets_total", "counter", nil},
	{"boxfleet_accounting_phase_seconds_total", "counter", []string{"phase"}},
	{"boxfleet_accounting_node_reads_total", "counter", []string{"how"}},
	{"boxfleet_leader", "gauge", nil},
	{"boxfleet_actions_total", "counter", []string{"action", "result"}},
	{"boxfleet_webhook_alerts_total", "counter", []string{"result", "status"}},
	{"boxfleet_actions_reconciled_total", "counter", []string{"action"}},
	{"boxfleet_hook_deliveries_total", "counter", []string{"result"}},
	{"boxfleet_http_requests_total", "counter", []string{"code", "handler"}},
	{"boxfleet_http_request_duration_seconds", "histogram", []string{"handler"}},
	{"boxfleet_login_attempts_total", "counter", []string{"result"}},
}
