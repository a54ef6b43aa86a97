package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// Scrape job names in prometheus/prometheus.yml; the lint test checks that
// every job matcher names a job that file defines.
const (
	jobExporter   = "singbox"
	jobController = "boxfleet"
)

func fleetOverview() *boardBuilder {
	node := queryVar("node", "Node", "label_values(singbox_up, node)", true)
	return newDashboard("boxfleet-fleet", "boxfleet / Fleet overview",
		"Every node at a glance: who is serving, how much traffic, how many users, and what the controller did about it.",
		[]*dashboard.QueryVariableBuilder{node},
		section{"Fleet", [][]panel{{
			statPanel("Nodes serving", unitCount, "Nodes whose exporter reached sing-box at its last poll.",
				q(`sum(singbox_up{node=~"$node"})`, "")),
			statPanel("Nodes down", unitCount, "Nodes whose sing-box is down, plus exporters Prometheus cannot scrape.",
				q(`(count(singbox_up{node=~"$node"} == 0) or vector(0)) + (count(up{job="`+jobExporter+`",node=~"$node"} == 0) or vector(0))`, "")),
			statPanel("Users online", unitCount, "Users with at least one open connection on any selected node.",
				q(`count(sum by (user) (singbox_user_connections{node=~"$node"}) > 0) or vector(0)`, "")),
			statPanel("Traffic", unitRate, "Upload plus download across the selected nodes.",
				q(`sum(rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`, "")),
			statPanel("Open connections", unitCount, "Connections open on the selected nodes, TCP and UDP.",
				q(`sum(singbox_connections{node=~"$node"})`, "")),
			statPanel("Inbound probes OK", unitRatio, "Share of the blackbox TCP probes of node inbounds that succeed.",
				q(`avg(probe_success{node=~"$node"})`, "")).Min(0).Max(1),
			statPanel("Actions applied", unitCount, "Controller actions (suspend, drain, ...) applied in the dashboard's time range.",
				q(`sum(increase(boxfleet_actions_total{result="applied"}[$__range])) or vector(0)`, "")),
		}}},
		section{"Traffic", [][]panel{
			{
				timeseriesPanel("Traffic by direction", unitRate, "Exact node totals from sing-box, summed over the selected nodes.",
					q(`sum by (direction) (rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`, "{{direction}}")),
				timeseriesPanel("Traffic by node", unitRate, "Upload plus download per node.",
					q(`sum by (node) (rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`, "{{node}}")),
			},
			{
				timeseriesPanel("Connections by node", unitCount, "Open connections per node.",
					q(`sum by (node) (singbox_connections{node=~"$node"})`, "{{node}}")),
				timeseriesPanel("Users online by node", unitCount, "Users with an open connection, per node.",
					q(`count by (node) (singbox_user_connections{node=~"$node"} > 0)`, "{{node}}")),
				tablePanel("Top users in range", unitBytes, "The 20 users who moved the most bytes on the selected nodes in the time range.",
					instant(`topk(20, sum by (user) (increase(singbox_user_traffic_bytes_total{node=~"$node"}[$__range])))`)),
			},
		}},
		section{"Node health", [][]panel{{
			timeseriesPanel("Health score by node", unitRatio, "The controller's score that orders nodes in subscriptions (1 = best).",
				q(`max by (node) (boxfleet_node_health_score{node=~"$node"})`, "{{node}}")).Min(0).Max(1),
			timeseriesPanel("Inbound probe success by node", unitRatio, "Share of a node's inbounds that answer a TCP connect from the blackbox exporter.",
				q(`avg by (node) (probe_success{node=~"$node"})`, "{{node}}")).Min(0).Max(1),
			timeseriesPanel("Drained nodes", unitNone, "Nodes the controller has taken out of subscriptions.",
				q(`max by (node) (boxfleet_node_drained{node=~"$node"}) == 1`, "{{node}}")).Mappings(boolMap("in service", "drained")),
		}}},
		section{"Control plane", [][]panel{{
			timeseriesPanel("Actions", unitOps, "Controller actions by kind and result; refused and error deserve a look.",
				q(`sum by (action, result) (rate(boxfleet_actions_total[$__rate_interval]))`, "{{action}} {{result}}")),
			timeseriesPanel("Users by status", unitCount, "Users per status as the controller sees them.",
				q(`max by (status) (boxfleet_users)`, "{{status}}")),
			timeseriesPanel("Firing alerts", unitCount, "Alerts firing now, by name: the policy at work.",
				q(`count by (alertname) (ALERTS{alertstate="firing"})`, "{{alertname}}")),
		}}},
	)
}
