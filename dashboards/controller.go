package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

func controllerHealth() *boardBuilder {
	instance := queryVar("instance", "Controller", "label_values(boxfleet_leader, instance)", true)
	return newDashboard("boxfleet-controller", "boxfleet / Controller health",
		"The control plane: is accounting keeping up, what the webhook receives, what actions run, how fast the API answers.",
		[]*dashboard.QueryVariableBuilder{instance},
		section{"Status", [][]panel{{
			statPanel("Controllers up", unitCount, "Controllers Prometheus can scrape.",
				q(`sum(up{job="`+jobController+`",instance=~"$instance"})`, "")),
			textStat("Leader", unitNone, "The controller holding the lease for accounting and sweeps.",
				q(`max by (instance) (boxfleet_leader{instance=~"$instance"}) == 1`, "{{instance}}")).NoValue("no leader"),
			statPanel("Accounting lag", unitSeconds, "Time since the last successful accounting run; usage and quota enforcement are this far behind.",
				q(`time() - max(boxfleet_accounting_last_success_timestamp_seconds{instance=~"$instance"})`, "")),
			statPanel("API errors", unitRatio, "Share of API responses with a 5xx code.",
				q(`sum(rate(boxfleet_http_requests_total{instance=~"$instance",code=~"5.."}[$__rate_interval])) / sum(rate(boxfleet_http_requests_total{instance=~"$instance"}[$__rate_interval]))`, "")).NoValue("no requests"),
		}}},
		section{"Accounting", [][]panel{{
			timeseriesPanel("Accounting lag", unitSeconds, "Per controller; only the leader's should stay low.",
				q(`time() - boxfleet_accounting_last_success_timestamp_seconds{instance=~"$instance"}`, "{{instance}}")),
			timeseriesPanel("Accounting run duration", unitSeconds, "How long one accounting run takes.",
				q(`histogram_quantile(0.5, sum by (le) (rate(boxfleet_accounting_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "p50"),
				q(`histogram_quantile(0.99, sum by (le) (rate(boxfleet_accounting_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "p99")),
			timeseriesPanel("Accounting runs and errors", unitOps, "Runs per second and failed runs per second.",
				q(`sum(rate(boxfleet_accounting_duration_seconds_count{instance=~"$instance"}[$__rate_interval]))`, "runs"),
				q(`sum(rate(boxfleet_accounting_errors_total{instance=~"$instance"}[$__rate_interval]))`, "errors")),
		}}},
		section{"Alerts and actions", [][]panel{{
			timeseriesPanel("Webhook alerts", unitOps, "Alerts Alertmanager delivered to the controller, by status and result.",
				q(`sum by (status, result) (rate(boxfleet_webhook_alerts_total{instance=~"$instance"}[$__rate_interval]))`, "{{status}} {{result}}")),
			timeseriesPanel("Actions", unitOps, "Actions by kind and result.",
				q(`sum by (action, result) (rate(boxfleet_actions_total{instance=~"$instance"}[$__rate_interval]))`, "{{action}} {{result}}")),
			tablePanel("Actions in range", unitCount, "Actions by kind and result in the time range.",
				instant(`sum by (action, result) (increase(boxfleet_actions_total{instance=~"$instance"}[$__range]))`)),
		}}},
		section{"API", [][]panel{{
			timeseriesPanel("Requests by handler", unitReqs, "Requests per second per API handler.",
				q(`sum by (handler) (rate(boxfleet_http_requests_total{instance=~"$instance"}[$__rate_interval]))`, "{{handler}}")),
			timeseriesPanel("Responses by code", unitReqs, "Responses per second per status code.",
				q(`sum by (code) (rate(boxfleet_http_requests_total{instance=~"$instance"}[$__rate_interval]))`, "{{code}}")),
			timeseriesPanel("Latency p99 by handler", unitSeconds, "99th percentile of request duration.",
				q(`histogram_quantile(0.99, sum by (handler, le) (rate(boxfleet_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "{{handler}}")),
			timeseriesPanel("Latency p50 by handler", unitSeconds, "Median request duration.",
				q(`histogram_quantile(0.5, sum by (handler, le) (rate(boxfleet_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, "{{handler}}")),
		}}},
		section{"Fleet as the controller sees it", [][]panel{{
			timeseriesPanel("Users by status", unitCount, "User counts per status.",
				q(`max by (status) (boxfleet_users{instance=~"$instance"})`, "{{status}}")),
			timeseriesPanel("Time since node last seen", unitSeconds, "How long ago each node's agent last talked to the controller.",
				q(`time() - max by (node) (boxfleet_node_last_seen_timestamp_seconds{instance=~"$instance"})`, "{{node}}")),
		}}},
	)
}
