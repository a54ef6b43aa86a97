package dashboards

// Scrape job names in prometheus/prometheus.yml; the lint test checks that
// every job matcher names a job that file defines.
const (
	jobExporter   = "singbox"
	jobController = "boxfleet"
)

func fleetOverview() Dashboard {
	node := queryVar("node", "Node", "label_values(singbox_up, node)", true)
	return newDashboard("boxfleet-fleet", "boxfleet / Fleet overview",
		"Every node at a glance: who is serving, how much traffic, how many users, and what the controller did about it.",
		[]Variable{node},
		section{"Fleet", [][]Panel{{
			stat("Nodes serving", unitCount, "Nodes whose exporter reached sing-box at its last poll.",
				q(`sum(singbox_up{node=~"$node"})`, "")),
			stat("Nodes down", unitCount, "Nodes whose sing-box is down, plus exporters Prometheus cannot scrape.",
				q(`(count(singbox_up{node=~"$node"} == 0) or vector(0)) + (count(up{job="`+jobExporter+`",node=~"$node"} == 0) or vector(0))`, "")),
			stat("Users online", unitCount, "Users with at least one open connection on any selected node.",
				q(`count(sum by (user) (singbox_user_connections{node=~"$node"}) > 0) or vector(0)`, "")),
			stat("Traffic", unitRate, "Upload plus download across the selected nodes.",
				q(`sum(rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`, "")),
			stat("Open connections", unitCount, "Connections open on the selected nodes, TCP and UDP.",
				q(`sum(singbox_connections{node=~"$node"})`, "")),
			stat("Inbound probes OK", unitRatio, "Share of the blackbox TCP probes of node inbounds that succeed.",
				q(`avg(probe_success{node=~"$node"})`, "")).withRange(0, 1),
			stat("Actions applied", unitCount, "Controller actions (suspend, drain, ...) applied in the dashboard's time range.",
				q(`sum(increase(boxfleet_actions_total{result="applied"}[$__range])) or vector(0)`, "")),
		}}},
		section{"Traffic", [][]Panel{
			{
				timeseries("Traffic by direction", unitRate, "Exact node totals from sing-box, summed over the selected nodes.",
					q(`sum by (direction) (rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`, "{{direction}}")),
				timeseries("Traffic by node", unitRate, "Upload plus download per node.",
					q(`sum by (node) (rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`, "{{node}}")),
			},
			{
				timeseries("Connections by node", unitCount, "Open connections per node.",
					q(`sum by (node) (singbox_connections{node=~"$node"})`, "{{node}}")),
				timeseries("Users online by node", unitCount, "Users with an open connection, per node.",
					q(`count by (node) (singbox_user_connections{node=~"$node"} > 0)`, "{{node}}")),
				table("Top users in range", unitBytes, "The 20 users who moved the most bytes on the selected nodes in the time range.",
					instant(`topk(20, sum by (user) (increase(singbox_user_traffic_bytes_total{node=~"$node"}[$__range])))`)),
			},
		}},
		section{"Node health", [][]Panel{{
			timeseries("Health score by node", unitRatio, "The controller's score that orders nodes in subscriptions (1 = best).",
				q(`max by (node) (boxfleet_node_health_score{node=~"$node"})`, "{{node}}")).withRange(0, 1),
			timeseries("Inbound probe success by node", unitRatio, "Share of a node's inbounds that answer a TCP connect from the blackbox exporter.",
				q(`avg by (node) (probe_success{node=~"$node"})`, "{{node}}")).withRange(0, 1),
			timeseries("Drained nodes", unitNone, "Nodes the controller has taken out of subscriptions.",
				q(`max by (node) (boxfleet_node_drained{node=~"$node"}) == 1`, "{{node}}")).withBool("in service", "drained"),
		}}},
		section{"Control plane", [][]Panel{{
			timeseries("Actions", unitOps, "Controller actions by kind and result; refused and error deserve a look.",
				q(`sum by (action, result) (rate(boxfleet_actions_total[$__rate_interval]))`, "{{action}} {{result}}")),
			timeseries("Users by status", unitCount, "Users per status as the controller sees them.",
				q(`max by (status) (boxfleet_users)`, "{{status}}")),
			timeseries("Firing alerts", unitCount, "Alerts firing now, by name: the policy at work.",
				q(`count by (alertname) (ALERTS{alertstate="firing"})`, "{{alertname}}")),
		}}},
	)
}
