package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// Usage, limit and forecast come from the controller's ledger view, which
// every controller of an HA pair exports alike: max() keeps one copy.
const (
	userUsed  = `max(boxfleet_user_traffic_used_bytes{user="$user"})`
	userLimit = `max(boxfleet_user_traffic_limit_bytes{user="$user"} > 0)`
	// The forecast extrapolates the last 6 h of usage a day ahead.
	userUsedIn24h = `max(predict_linear(boxfleet_user_traffic_used_bytes{user="$user"}[6h], 86400))`
	// Devices are counted by the recording rule, fleet-wide: distinct
	// client addresses by their keyed-hash buckets, so a device on two
	// nodes is one (see alerts/recording.rules.yml).
	userDevices = `max(user:singbox_user_devices:count{user="$user"})`
)

func userDetail() *boardBuilder {
	user := queryVar("user", "User", "label_values(boxfleet_user_status, user)", false)
	node := queryVar("node", "Node", "label_values(singbox_up, node)", true)
	return newDashboard("boxfleet-user", "boxfleet / User detail",
		"One user: status, quota and its forecast, traffic per node, devices.",
		[]*dashboard.QueryVariableBuilder{user, node},
		section{"Status", [][]panel{{
			textStat("Status", unitNone, "The user's current status in the controller.",
				q(`max by (status) (boxfleet_user_status{user="$user"}) == 1`, "{{status}}")),
			statPanel("Used this period", unitBytes, "Upload plus download this billing period, from the controller's ledger.",
				q(userUsed, "")),
			statPanel("Limit", unitBytes, "Traffic limit of the period.",
				q(userLimit, "")).NoValue("unlimited"),
			statPanel("Quota used", unitRatio, "Used share of the limit.",
				q(userUsed+` / `+userLimit, "")).Min(0).Max(1).NoValue("unlimited"),
			statPanel("Quota runs out in", unitSeconds, "At the rate of the last 6 h, time until the limit is reached.",
				q(`(`+userLimit+` - `+userUsed+`) / (max(deriv(boxfleet_user_traffic_used_bytes{user="$user"}[6h])) > 0)`, "")).NoValue("not at this rate"),
			statPanel("Expires in", unitSeconds, "Time until the user's subscription expires.",
				q(`max(boxfleet_user_expiry_timestamp_seconds{user="$user"}) - time()`, "")).NoValue("never"),
			statPanel("Devices now", unitCount, "Distinct client addresses connected now across the whole fleet (an IPv6 /64 counts as one; devices behind one NAT address count as one): what the device limit and UserTooManyDevices judge. Not narrowed by the node filter.",
				q(userDevices+` or vector(0)`, "")),
		}}},
		section{"Quota", [][]panel{{
			timeseriesPanel("Quota burn-down", unitBytes,
				"Bytes left of the limit now, and what will be left in 24 h if the last 6 h's pace holds. A forecast below zero means the user will be limited within a day.",
				q(userLimit+` - `+userUsed, "left now"),
				q(userLimit+` - `+userUsedIn24h, "left in 24 h (forecast)"),
			),
			timeseriesPanel("Usage this period", unitBytes, "Ledger usage against the limit.",
				q(userUsed, "used"),
				q(userLimit, "limit")),
		}}},
		section{"Traffic", [][]panel{
			{
				timeseriesPanel("Traffic by node", unitRate, "Where the user's bytes go.",
					q(`sum by (node) (rate(singbox_user_traffic_bytes_total{user="$user",node=~"$node"}[$__rate_interval]))`, "{{node}}")),
				timeseriesPanel("Traffic by direction", unitRate, "Upload and download over the selected nodes.",
					q(`sum by (direction) (rate(singbox_user_traffic_bytes_total{user="$user",node=~"$node"}[$__rate_interval]))`, "{{direction}}")),
				tablePanel("Bytes per node in range", unitBytes, "Bytes the user moved per node in the time range.",
					instant(`sum by (node) (increase(singbox_user_traffic_bytes_total{user="$user",node=~"$node"}[$__range]))`)),
			},
		}},
		section{"Devices", [][]panel{{
			timeseriesPanel("Devices", unitCount, "Distinct client addresses across the fleet against the device limit, and client IPs connected per selected node (a device on two nodes is in both nodes' lines, once in the fleet's).",
				q(userDevices, "devices (fleet)"),
				q(`max(boxfleet_user_device_limit{user="$user"})`, "device limit"),
				q(`sum by (node) (singbox_user_source_ips{user="$user",node=~"$node"})`, "{{node}}")),
			timeseriesPanel("Connections", unitCount, "Open connections per node.",
				q(`sum by (node) (singbox_user_connections{user="$user",node=~"$node"})`, "{{node}}")),
		}}},
		section{"History", [][]panel{{
			stateTimelinePanel("Status history", "Which status the user had, over time.",
				q(`max by (status) (boxfleet_user_status{user="$user"})`, "{{status}}")),
		}}},
	)
}
