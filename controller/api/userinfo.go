package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/common/model"

	"github.com/boxfleet/boxfleet/controller/store"
)

// shownUserWhy is GET /api/v1/users/{name}: the user and, when it is not
// served as usual, why.
type shownUserWhy struct {
	*store.User
	Why *userWhy `json:"why,omitempty"`
}

// userWhy explains a status other than active: what set it, when, and
// what lifts it.
type userWhy struct {
	// Kind: alert (an alert's action suspended the user), admin (an admin
	// suspended it), limited or expired (the store's numbers: the
	// controller's own sweep, or the change that crossed the line).
	Kind      string            `json:"kind"`
	Alert     string            `json:"alert,omitempty"`  // the alert's name
	Labels    map[string]string `json:"labels,omitempty"` // the alert's labels as the audit log kept them
	Rule      string            `json:"rule,omitempty"`   // the alert's PromQL as Prometheus has it loaded, or the store's condition
	Threshold string            `json:"threshold,omitempty"`
	Reason    string            `json:"reason,omitempty"` // the status reason as stored
	Since     *time.Time        `json:"since"`            // when the status was set; null when the audit log no longer says
	By        string            `json:"by,omitempty"`     // the actor that set it
	LiftsAt   *time.Time        `json:"lifts_at"`         // when it lifts by itself, if known
	LiftsWhen string            `json:"lifts_when"`       // what lifts it, in words
}

func (a *API) getUser(_ http.ResponseWriter, r *http.Request) (any, error) {
	st := a.storeFor(r)
	u, err := st.GetUser(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	out := shownUserWhy{User: shownUser(r, u)}
	if u.Status != store.StatusActive && u.Status != store.StatusOnHold {
		if out.Why, err = a.why(r.Context(), st, u); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// statusOf reads the status from an audit event's user snapshot.
func statusOf(raw json.RawMessage) string {
	var u struct {
		Status string `json:"status"`
	}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &u)
	}
	return u.Status
}

// why finds the audit event that put the user in its status (the newest
// whose snapshot moved into it) and explains it.
func (a *API) why(ctx context.Context, st *store.Store, u *store.User) (*userWhy, error) {
	evs, err := st.Events(ctx, store.EventFilter{ObjectType: "user", ObjectName: u.Name, Limit: 200})
	if err != nil {
		return nil, err
	}
	var cause *store.Event
	for _, e := range evs {
		if statusOf(e.After) == u.Status && (statusOf(e.Before) != u.Status || e.Action == "user.suspend") {
			cause = e
			break
		}
	}
	w := &userWhy{Reason: u.StatusReason}
	if cause != nil {
		at := cause.At
		w.Since, w.By = &at, cause.Actor
	}
	now := a.now()
	nextReset := func() *time.Time {
		if t, ok := store.NextPeriodStart(u.ResetStrategy, now); ok {
			return &t
		}
		return nil
	}
	switch {
	case u.Status == store.StatusDisabled && strings.HasPrefix(u.StatusReason, "alert:"):
		w.Kind = "alert"
		// The reason is the episode's actor: alert:NAME/FINGERPRINT@START.
		name := strings.TrimPrefix(u.StatusReason, "alert:")
		if i := strings.LastIndex(name, "/"); i >= 0 {
			name = name[:i]
		}
		w.Alert = name
		if cause != nil {
			// The detail is "NAME {labels as JSON}".
			if i := strings.Index(cause.Detail, " {"); i >= 0 {
				_ = json.Unmarshal([]byte(cause.Detail[i+1:]), &w.Labels)
			}
		}
		if a.live != nil {
			if rules, err := a.live.Rules(ctx); err == nil {
				if rule, ok := rules[name]; ok {
					w.Rule = strings.TrimSpace(rule.Query)
				}
			}
		}
		switch {
		case w.Labels["quota_percent"] != "":
			w.Threshold = w.Labels["quota_percent"] + " % of " + strconv.FormatInt(u.TrafficLimit, 10) + " bytes"
		case u.TrafficLimit > 0 && u.Used() >= u.TrafficLimit:
			w.Threshold = "traffic limit " + strconv.FormatInt(u.TrafficLimit, 10) + " bytes"
			w.LiftsAt = nextReset()
		case u.ExpireAt != nil && !u.ExpireAt.After(now):
			w.Threshold = "expiry " + u.ExpireAt.Format(time.RFC3339)
		}
		w.LiftsWhen = "when the alert resolves (the controller then resumes the user), or when an admin resumes the user"
	case u.Status == store.StatusDisabled:
		w.Kind = "admin"
		w.LiftsWhen = "when an admin resumes the user"
		if strings.HasPrefix(u.StatusReason, "admin: [") {
			w.LiftsWhen = "when the reseller or staff resumes the user"
		}
	case u.Status == store.StatusLimited:
		w.Kind = "limited"
		w.Rule = "used_upload_bytes + used_download_bytes >= traffic_limit_bytes"
		w.Threshold = "traffic limit " + strconv.FormatInt(u.TrafficLimit, 10) + " bytes"
		w.LiftsAt = nextReset()
		w.LiftsWhen = "at the next period reset, or when the limit is raised, traffic is added or usage is reset"
		if w.LiftsAt == nil {
			w.LiftsWhen = "when the limit is raised, traffic is added or usage is reset (the user's period never resets)"
		}
	case u.Status == store.StatusExpired:
		w.Kind = "expired"
		w.Rule = "expire_at <= now"
		if u.ExpireAt != nil {
			w.Threshold = "expiry " + u.ExpireAt.Format(time.RFC3339)
		}
		w.LiftsWhen = "when the expiry is moved into the future (extend)"
	default:
		w.Kind = u.Status
	}
	return w, nil
}

// timelineItem is one entry of a user's timeline.
type timelineItem struct {
	At      time.Time      `json:"at"`
	Kind    string         `json:"kind"` // event, alert_fired, alert_resolved, action
	Actor   string         `json:"actor"`
	Summary string         `json:"summary"`
	Details map[string]any `json:"details"`
}

// userTimeline merges the user's audit events (what admins did: "event";
// what alerts and the sweep did: "action") with the alert episodes that
// targeted it (fired, and resolved), newest first.
func (a *API) userTimeline(_ http.ResponseWriter, r *http.Request) (any, error) {
	name := mux.Vars(r)["name"]
	st := a.storeFor(r)
	if _, err := st.GetUser(r.Context(), name); err != nil {
		return nil, err
	}
	limit, err := limitParam(r, 100, 1000)
	if err != nil {
		return nil, err
	}
	evs, err := st.Events(r.Context(), store.EventFilter{ObjectType: "user", ObjectName: name, Limit: limit})
	if err != nil {
		return nil, err
	}
	eps, err := a.store.AlertActionsOn(r.Context(), "suspend_user", name, limit)
	if err != nil {
		return nil, err
	}
	items := make([]timelineItem, 0, len(evs)+2*len(eps))
	for _, e := range evs {
		kind := "event"
		if strings.HasPrefix(e.Actor, "alert:") || strings.HasPrefix(e.Actor, "system:") {
			kind = "action"
		}
		d := map[string]any{"action": e.Action, "id": e.ID, "dry_run": strings.HasSuffix(e.Action, ".dry_run")}
		if e.Detail != "" {
			d["detail"] = e.Detail
		}
		if b, a := statusOf(e.Before), statusOf(e.After); b != a {
			d["status_before"], d["status_after"] = b, a
		}
		items = append(items, timelineItem{At: e.At, Kind: kind, Actor: e.Actor, Summary: eventSummary(e), Details: d})
	}
	for _, ep := range eps {
		d := map[string]any{"alert": ep.AlertName, "fingerprint": ep.Fingerprint, "action": ep.Action,
			"result": ep.Result, "applied": ep.Applied, "dry_run": ep.Result == "dry_run"}
		actor := "alert:" + ep.AlertName + "/" + ep.Fingerprint + "@" + strconv.FormatInt(ep.StartsAt, 10)
		items = append(items, timelineItem{At: time.Unix(ep.StartsAt, 0).UTC(), Kind: "alert_fired", Actor: actor,
			Summary: ep.AlertName + " fired", Details: d})
		if ep.State == "resolved" {
			items = append(items, timelineItem{At: time.Unix(ep.UpdatedAt, 0).UTC(), Kind: "alert_resolved", Actor: actor,
				Summary: ep.AlertName + " resolved", Details: d})
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].At.After(items[j].At) })
	if len(items) > limit {
		items = items[:limit]
	}
	return map[string]any{"items": items}, nil
}

// eventSummary says in a line what an audit event did.
func eventSummary(e *store.Event) string {
	s := strings.TrimPrefix(e.Action, "user.")
	s = strings.ReplaceAll(s, "_", " ")
	if b, a := statusOf(e.Before), statusOf(e.After); b != "" && a != "" && b != a {
		s += ": " + b + " → " + a
	}
	if e.Detail != "" {
		d := e.Detail
		if len(d) > 120 {
			d = d[:120] + "…"
		}
		s += " (" + d + ")"
	}
	return s
}

// userLiveAnswer is GET /api/v1/users/{name}/live.
type userLiveAnswer struct {
	Live        bool       `json:"live"`
	Online      *bool      `json:"online"`
	RateUp      *float64   `json:"rate_up"`
	RateDown    *float64   `json:"rate_down"`
	Connections *float64   `json:"connections"`
	SourceIPs   *float64   `json:"source_ips"`
	Sources     []string   `json:"sources"`
	Nodes       []nodeRate `json:"nodes"`
}

type nodeRate struct {
	Node        string  `json:"node"`
	RateUp      float64 `json:"rate_up"`
	RateDown    float64 `json:"rate_down"`
	Connections float64 `json:"connections"`
	SourceIPs   float64 `json:"source_ips"`
}

func (a *API) userLiveHandler(_ http.ResponseWriter, r *http.Request) (any, error) {
	name := mux.Vars(r)["name"]
	if _, err := a.storeFor(r).GetUser(r.Context(), name); err != nil {
		return nil, err
	}
	out := userLiveAnswer{Sources: []string{}, Nodes: []nodeRate{}}
	var up, down, conns, ips float64
	by, ok := liveBy(r.Context(), a, userLiveQuery(name), "node", func(nr *nodeRate, s *model.Sample) {
		addPart(s, &nr.RateUp, &nr.RateDown, &nr.Connections, &nr.SourceIPs)
		addPart(s, &up, &down, &conns, &ips)
	})
	if ok {
		out.Live = true
		for n, nr := range by {
			nr.Node = n
			out.Nodes = append(out.Nodes, *nr)
		}
		sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Node < out.Nodes[j].Node })
		online := conns > 0
		out.Online, out.RateUp, out.RateDown, out.Connections, out.SourceIPs = &online, &up, &down, &conns, &ips
	}
	return out, nil
}
