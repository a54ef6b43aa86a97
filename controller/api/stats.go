package api

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// memo keeps fn's answer for the refresh interval under key; without a
// live cache it simply calls fn.
func (a *API) memo(ctx context.Context, key string, fn func(ctx context.Context) (any, error)) (any, error) {
	if a.live == nil {
		return fn(ctx)
	}
	return a.live.Memo(ctx, key, fn)
}

// scopeNames is the set of users a reseller manages, nil for staff (every
// user): live numbers from Prometheus are per user, and a reseller sees
// only its own.
func (a *API) scopeNames(r *http.Request) (map[string]bool, error) {
	p := Who(r)
	if p == nil || p.Role != store.RoleReseller {
		return nil, nil
	}
	v, err := a.memo(r.Context(), "names\x00"+p.Account, func(ctx context.Context) (any, error) {
		names, err := a.storeFor(r).UserNames(ctx, store.UserFilter{})
		if err != nil {
			return nil, err
		}
		set := make(map[string]bool, len(names))
		for _, n := range names {
			set[n] = true
		}
		return set, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]bool), nil
}

type upDown struct {
	Up   int64 `json:"up"`
	Down int64 `json:"down"`
}

type nodeCounts struct {
	Up       *int `json:"up"`       // serving: not drained, sing-box up, score unknown or at least 0.5; null without Prometheus
	Drained  int  `json:"drained"`  // left out of subscriptions
	Degraded *int `json:"degraded"` // not drained and not up; null without Prometheus
	Total    int  `json:"total"`
}

type firingAlert struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Since    time.Time         `json:"since"`
	Severity string            `json:"severity"`
	Acts     bool              `json:"acts"` // carries boxfleet_action: the controller acts on it
}

type nodeUnattributed struct {
	Node              string   `json:"node"`
	UnattributedShare *float64 `json:"unattributed_share"` // of the node's traffic over the last day, 0..1
	EstimatedShare    *float64 `json:"estimated_share"`    // split between users by estimate (stock sing-box), 0..1
}

type overviewAnswer struct {
	Live              bool               `json:"live"`
	UsersByStatus     map[string]int     `json:"users_by_status"`
	Online            *int               `json:"online"`
	RateUp            *float64           `json:"rate_up"`
	RateDown          *float64           `json:"rate_down"`
	Traffic           map[string]upDown  `json:"traffic"` // today, 7d, 30d: from the ledger
	Nodes             nodeCounts         `json:"nodes"`
	FiringAlerts      []firingAlert      `json:"firing_alerts"`
	AccountingLag     *float64           `json:"accounting_lag_seconds"`
	NodesUnattributed []nodeUnattributed `json:"nodes_unattributed"`
	RecentActions     []*store.Event     `json:"recent_actions"`
}

func ledgerDay(t time.Time) int {
	y, m, d := t.UTC().Date()
	return y*10000 + int(m)*100 + d
}

func (a *API) statsOverview(_ http.ResponseWriter, r *http.Request) (any, error) {
	ctx := r.Context()
	st := a.storeFor(r)
	scope, err := a.scopeNames(r)
	if err != nil {
		return nil, err
	}
	out := overviewAnswer{FiringAlerts: []firingAlert{}, NodesUnattributed: []nodeUnattributed{}, Live: true}
	if out.UsersByStatus, err = st.UserStatusCounts(ctx); err != nil {
		return nil, err
	}
	// The ledger sums scan days of rows: cached like the live numbers.
	account := ""
	if p := Who(r); p.Role == store.RoleReseller {
		account = p.Account
	}
	tr, err := a.memo(ctx, "ledger\x00"+account, func(ctx context.Context) (any, error) {
		now := a.now()
		m := map[string]upDown{}
		for key, back := range map[string]int{"today": 0, "7d": 6, "30d": 29} {
			up, down, err := st.TrafficSince(ctx, ledgerDay(now.AddDate(0, 0, -back)))
			if err != nil {
				return nil, err
			}
			m[key] = upDown{Up: up, Down: down}
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	out.Traffic = tr.(map[string]upDown)

	users, usersOK := a.usersLive(ctx)
	nodes, nodesOK := a.nodesLive(ctx)
	if usersOK {
		online, up, down := 0, 0.0, 0.0
		for u, l := range users {
			if scope != nil && !scope[u] {
				continue
			}
			if l.Connections > 0 {
				online++
			}
			up, down = up+l.Up, down+l.Down
		}
		out.Online = &online
		if scope != nil {
			out.RateUp, out.RateDown = &up, &down
		}
	}
	if scope == nil && nodesOK {
		// Staff see the nodes' totals, which include traffic no user was
		// named for.
		up, down := 0.0, 0.0
		for _, l := range nodes {
			up, down = up+l.RateUp, down+l.RateDown
		}
		out.RateUp, out.RateDown = &up, &down
	}
	out.Live = usersOK && (scope != nil || nodesOK)

	ns, err := a.store.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	out.Nodes.Total = len(ns)
	upN, degraded := 0, 0
	for _, n := range ns {
		if n.Drained {
			out.Nodes.Drained++
			continue
		}
		if a.nodeServing(n.Name, nodes[n.Name]) {
			upN++
		} else {
			degraded++
		}
	}
	if nodesOK {
		out.Nodes.Up, out.Nodes.Degraded = &upN, &degraded
	}
	if scope == nil && nodesOK {
		for _, n := range ns {
			l := nodes[n.Name]
			if l == nil || l.Total1d == nil || *l.Total1d <= 0 {
				continue
			}
			nu := nodeUnattributed{Node: n.Name}
			if l.Unattributed1d != nil {
				v := *l.Unattributed1d / *l.Total1d
				nu.UnattributedShare = &v
			}
			if l.Estimated1d != nil {
				v := *l.Estimated1d / *l.Total1d
				nu.EstimatedShare = &v
			}
			out.NodesUnattributed = append(out.NodesUnattributed, nu)
		}
	}

	if a.live != nil {
		if alerts, err := a.live.Alerts(ctx); err == nil {
			for _, al := range alerts {
				if al.State != "firing" {
					continue
				}
				labels := map[string]string{}
				for k, v := range al.Labels {
					labels[string(k)] = string(v)
				}
				if scope != nil && !scope[labels["user"]] {
					continue // a reseller sees alerts about its own users only
				}
				out.FiringAlerts = append(out.FiringAlerts, firingAlert{Name: labels["alertname"], Labels: labels,
					Since: al.ActiveAt.UTC(), Severity: labels["severity"], Acts: labels["boxfleet_action"] != ""})
			}
			sort.SliceStable(out.FiringAlerts, func(i, j int) bool { return out.FiringAlerts[i].Since.After(out.FiringAlerts[j].Since) })
		} else {
			out.Live = false
		}
		if scope == nil {
			if v, err := a.live.Vector(ctx, accountingLagQuery); err == nil && len(v) > 0 {
				lag := finite(float64(v[0].Value))
				out.AccountingLag = &lag
			}
		}
	} else {
		out.Live = false
	}
	if out.RecentActions, err = st.Events(ctx, store.EventFilter{Limit: 20}); err != nil {
		return nil, err
	}
	if out.RecentActions == nil {
		out.RecentActions = []*store.Event{}
	}
	return out, nil
}

// nodeServing says whether an undrained node is up: sing-box up as its
// exporter sees it, and a health score, when there is one, of at least 0.5.
func (a *API) nodeServing(name string, l *nodeLive) bool {
	if l == nil || l.SingboxUp == nil || *l.SingboxUp < 1 {
		return false
	}
	if a.health != nil {
		if s, ok := a.health.Score(name); ok && s < 0.5 {
			return false
		}
	}
	return true
}

// seriesRange is one range the charts offer: its step and the rate window
// that step needs (a window shorter than the step would skip traffic).
type seriesRange struct {
	span, step time.Duration
	window     string
}

var seriesRanges = map[string]seriesRange{
	"1h":  {time.Hour, 15 * time.Second, "1m"},
	"6h":  {6 * time.Hour, time.Minute, "2m"},
	"24h": {24 * time.Hour, 5 * time.Minute, "10m"},
	"7d":  {7 * 24 * time.Hour, 30 * time.Minute, "1h"},
}

type series struct {
	Labels map[string]string `json:"labels"`
	Points [][3]float64      `json:"points"` // [unix seconds, bytes/s up, bytes/s down]
}

func (a *API) statsSeries(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	rg, ok := seriesRanges[q.Get("range")]
	if q.Get("range") == "" {
		rg, ok = seriesRanges["1h"], true
	}
	if !ok {
		return nil, &store.ValidationError{Field: "range", Reason: "must be one of 1h, 6h, 24h, 7d"}
	}
	node, user := q.Get("node"), q.Get("user")
	if (node != "" && !store.ValidName(node)) || (user != "" && !store.ValidName(user)) {
		return nil, &store.ValidationError{Field: "node", Reason: "not a valid name"}
	}
	var query string
	switch q.Get("metric") {
	case "node_rate":
		if Who(r).Role == store.RoleReseller {
			return nil, &apiclient.Error{Status: http.StatusForbidden, Code: apiclient.CodeForbidden, Message: "node traffic is the whole fleet's; resellers see their users' only", Field: "metric"}
		}
		sel := ""
		if node != "" {
			sel = `{node=` + strconv.Quote(node) + `}`
		}
		query = `sum by (node, direction) (rate(singbox_traffic_bytes_total` + sel + `[` + rg.window + `]))`
	case "user_rate":
		if user == "" {
			return nil, &store.ValidationError{Field: "user", Reason: "required for user_rate"}
		}
		if _, err := a.storeFor(r).GetUser(r.Context(), user); err != nil {
			return nil, err
		}
		sel := `user=` + strconv.Quote(user)
		by := "user, direction"
		if node != "" {
			sel += `,node=` + strconv.Quote(node)
			by = "user, node, direction"
		}
		query = `sum by (` + by + `) (rate(singbox_user_traffic_bytes_total{` + sel + `}[` + rg.window + `]))`
	default:
		return nil, &store.ValidationError{Field: "metric", Reason: "must be node_rate or user_rate"}
	}
	out := map[string]any{"series": []series{}, "live": false, "step_seconds": int(rg.step / time.Second)}
	if a.live != nil {
		if m, err := a.live.Matrix(r.Context(), query, rg.span, rg.step); err == nil {
			out["series"], out["live"] = mergeDirections(m), true
		}
	}
	return out, nil
}

// mergeDirections joins the upload and download series of each label set
// into one series of [t, up, down] points.
func mergeDirections(m model.Matrix) []series {
	type acc struct {
		labels map[string]string
		pts    map[int64]*[3]float64
	}
	by := map[string]*acc{}
	var keys []string
	for _, ss := range m {
		labels := map[string]string{}
		for k, v := range ss.Metric {
			if k != "direction" {
				labels[string(k)] = string(v)
			}
		}
		key := model.LabelSet(ss.Metric).Clone()
		delete(key, "direction")
		ks := key.String()
		c := by[ks]
		if c == nil {
			c = &acc{labels: labels, pts: map[int64]*[3]float64{}}
			by[ks] = c
			keys = append(keys, ks)
		}
		col := 1
		if ss.Metric["direction"] == "download" {
			col = 2
		}
		for _, p := range ss.Values {
			t := p.Timestamp.Unix()
			pt := c.pts[t]
			if pt == nil {
				pt = &[3]float64{float64(t), 0, 0}
				c.pts[t] = pt
			}
			pt[col] = finite(float64(p.Value))
		}
	}
	sort.Strings(keys)
	out := make([]series, 0, len(keys))
	for _, k := range keys {
		c := by[k]
		s := series{Labels: c.labels, Points: make([][3]float64, 0, len(c.pts))}
		for _, p := range c.pts {
			s.Points = append(s.Points, *p)
		}
		sort.Slice(s.Points, func(i, j int) bool { return s.Points[i][0] < s.Points[j][0] })
		out = append(out, s)
	}
	return out
}

type topUser struct {
	Name     string  `json:"name"`
	RateUp   float64 `json:"rate_up"`
	RateDown float64 `json:"rate_down"`
}

// statsTopUsers ranks users by their rate now, from the same cached query
// as the users list.
func (a *API) statsTopUsers(_ http.ResponseWriter, r *http.Request) (any, error) {
	limit, err := limitParam(r, 10, 100)
	if err != nil {
		return nil, err
	}
	scope, err := a.scopeNames(r)
	if err != nil {
		return nil, err
	}
	users, ok := a.usersLive(r.Context())
	top := []topUser{}
	for u, l := range users {
		if (scope != nil && !scope[u]) || l.Up+l.Down <= 0 {
			continue
		}
		top = append(top, topUser{Name: u, RateUp: l.Up, RateDown: l.Down})
	}
	sort.Slice(top, func(i, j int) bool {
		si, sj := top[i].RateUp+top[i].RateDown, top[j].RateUp+top[j].RateDown
		if si != sj {
			return si > sj
		}
		return top[i].Name < top[j].Name
	})
	if len(top) > limit {
		top = top[:limit]
	}
	return map[string]any{"users": top, "live": ok}, nil
}
