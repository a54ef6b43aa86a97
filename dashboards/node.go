package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

func nodeDetail() *boardBuilder {
	node := queryVar("node", "Node", "label_values(singbox_up, node)", false)
	return newDashboard("boxfleet-node", "boxfleet / Node detail",
		"One node: sing-box, its traffic and users, its inbounds as seen from outside, and the exporter's own health.",
		[]*dashboard.QueryVariableBuilder{node},
		section{"Status", [][]panel{{
			statPanel("sing-box", unitNone, "Whether the exporter's last poll of sing-box succeeded.",
				q(`max(singbox_up{node="$node"})`, "")).Mappings(boolMap("down", "up")),
			textStat("Version", unitNone, "sing-box version reported by its API.",
				q(`max by (version) (singbox_info{node="$node"})`, "{{version}}")),
			statPanel("Memory", unitBytes, "Memory sing-box reports in use.",
				q(`max(singbox_memory_bytes{node="$node"})`, "")),
			statPanel("Health score", unitRatio, "The controller's score for this node (1 = best).",
				q(`max(boxfleet_node_health_score{node="$node"})`, "")).Min(0).Max(1),
			statPanel("Drained", unitNone, "Whether the controller has taken the node out of subscriptions.",
				q(`max(boxfleet_node_drained{node="$node"})`, "")).Mappings(boolMap("in service", "drained")),
			statPanel("Last seen", unitSeconds, "Time since the node's agent last talked to the controller.",
				q(`time() - max(boxfleet_node_last_seen_timestamp_seconds{node="$node"})`, "")),
			statPanel("User set revision", unitNone, "Revision of the controller's user set the node has applied.",
				q(`max(singbox_config_revision{node="$node"})`, "")),
		}}},
		section{"Traffic", [][]panel{
			{
				timeseriesPanel("Traffic", unitRate, "Exact node totals from sing-box.",
					q(`sum by (direction) (rate(singbox_traffic_bytes_total{node="$node"}[$__rate_interval]))`, "{{direction}}")),
				timeseriesPanel("Traffic by inbound", unitRate, "Bytes per inbound and direction.",
					q(`sum by (inbound, direction) (rate(singbox_inbound_traffic_bytes_total{node="$node"}[$__rate_interval]))`, "{{inbound}} {{direction}}")),
			},
			{
				timeseriesPanel("Top users", unitRate, "The ten busiest users on this node.",
					q(`topk(10, sum by (user) (rate(singbox_user_traffic_bytes_total{node="$node"}[$__rate_interval])))`, "{{user}}")),
				timeseriesPanel("Attribution quality", unitRatio,
					"Share of the node's bytes no user could be found for, and share split by estimate between overlapping users. Both near zero means per-user numbers are exact.",
					q(`sum(rate(singbox_unattributed_traffic_bytes_total{node="$node"}[$__rate_interval])) / sum(rate(singbox_traffic_bytes_total{node="$node"}[$__rate_interval]))`, "unattributed"),
					q(`sum(rate(singbox_exporter_attribution_estimated_bytes_total{node="$node"}[$__rate_interval])) / sum(rate(singbox_traffic_bytes_total{node="$node"}[$__rate_interval]))`, "estimated")),
			},
		}},
		section{"Connections", [][]panel{{
			timeseriesPanel("Connections by network", unitCount, "Open connections, TCP and UDP.",
				q(`sum by (network) (singbox_connections{node="$node"})`, "{{network}}")),
			timeseriesPanel("Users online", unitCount, "Users with an open connection, and connections whose user is not known yet.",
				q(`count(singbox_user_connections{node="$node"} > 0)`, "users"),
				q(`max(singbox_exporter_unowned_connections{node="$node"})`, "unowned connections")),
			timeseriesPanel("Source IPs", unitCount, "Distinct client IPs connected now, summed over users.",
				q(`sum(singbox_user_source_ips{node="$node"})`, "source IPs")),
		}}},
		section{"Inbounds from outside", [][]panel{{
			timeseriesPanel("Probe success by inbound", unitRatio, "Whether the blackbox exporter can open a TCP connection to each inbound.",
				q(`max by (inbound) (probe_success{node="$node"})`, "{{inbound}}")).Min(0).Max(1),
			timeseriesPanel("Probe duration by inbound", unitSeconds, "Time the blackbox exporter's TCP connect took.",
				q(`max by (inbound) (probe_duration_seconds{node="$node"})`, "{{inbound}}")),
		}}},
		section{"Exporter and agent", [][]panel{{
			timeseriesPanel("Poll duration and interval", unitSeconds, "How long a poll of sing-box takes, and the interval the CPU budget allows.",
				q(`max(singbox_exporter_poll_duration_seconds{node="$node"})`, "duration"),
				q(`max(singbox_exporter_poll_interval_seconds{node="$node"})`, "interval")),
			timeseriesPanel("Polls", unitOps, "Polls of sing-box's API by result.",
				q(`sum by (result) (rate(singbox_exporter_polls_total{node="$node"}[$__rate_interval]))`, "{{result}}")),
			timeseriesPanel("Log stream", unitNone, "Whether the sing-box log stream, which names users, is connected.",
				q(`max(singbox_exporter_log_stream_up{node="$node"})`, "connected")).Mappings(boolMap("down", "up")),
			timeseriesPanel("User set applies", unitOps, "Applies of the controller's user set to sing-box, by result.",
				q(`sum by (result) (rate(singbox_config_apply_total{node="$node"}[$__rate_interval]))`, "{{result}}")),
			timeseriesPanel("sing-box restarts", unitCount, "sing-box restarts the exporter noticed in the time range.",
				q(`sum(increase(singbox_exporter_singbox_restarts_total{node="$node"}[$__range]))`, "restarts")),
		}}},
	)
}
