package api

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
)

// episode is one alert episode the controller handled, as the store keeps
// it.
type episode struct {
	Alert       string    `json:"alert"`
	Fingerprint string    `json:"fingerprint"`
	Action      string    `json:"action"` // suspend_user or drain_node
	Target      string    `json:"target"` // the user or node
	Since       time.Time `json:"since"`
	State       string    `json:"state"` // firing or resolved
	Applied     bool      `json:"applied"`
	Result      string    `json:"result"` // applied, noop, dry_run, refused, error, pending, unknown_target
	UpdatedAt   time.Time `json:"updated_at"`
}

// listAlerts answers the alerts that act: those Prometheus has firing with
// a boxfleet_action label, and the episodes the controller handled that
// are still firing, with what it did (dry runs marked).
func (a *API) listAlerts(_ http.ResponseWriter, r *http.Request) (any, error) {
	out := struct {
		Live     bool          `json:"live"`
		Alerts   []firingAlert `json:"alerts"`
		Episodes []episode     `json:"episodes"`
	}{Alerts: []firingAlert{}, Episodes: []episode{}}
	if a.live != nil {
		if alerts, err := a.live.Alerts(r.Context()); err == nil {
			out.Live = true
			for _, al := range alerts {
				if al.State != "firing" || al.Labels["boxfleet_action"] == "" {
					continue
				}
				labels := map[string]string{}
				for k, v := range al.Labels {
					labels[string(k)] = string(v)
				}
				out.Alerts = append(out.Alerts, firingAlert{Name: labels["alertname"], Labels: labels,
					Since: al.ActiveAt.UTC(), Severity: labels["severity"], Acts: true})
			}
			sort.SliceStable(out.Alerts, func(i, j int) bool { return out.Alerts[i].Since.After(out.Alerts[j].Since) })
		}
	}
	eps, err := a.store.FiringAlertActions(r.Context(), 500)
	if err != nil {
		return nil, err
	}
	for _, e := range eps {
		out.Episodes = append(out.Episodes, episode{Alert: e.AlertName, Fingerprint: e.Fingerprint, Action: e.Action,
			Target: e.Target, Since: time.Unix(e.StartsAt, 0).UTC(), State: e.State, Applied: e.Applied,
			Result: e.Result, UpdatedAt: time.Unix(e.UpdatedAt, 0).UTC()})
	}
	return out, nil
}

// redeliver queues one of a hook's deliveries again.
func (a *API) redeliver(_ http.ResponseWriter, r *http.Request) (any, error) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		return nil, &store.ValidationError{Field: "id", Reason: "must be a delivery id"}
	}
	d, err := a.store.Redeliver(r.Context(), Caller(r), mux.Vars(r)["name"], id)
	if err != nil {
		return nil, err
	}
	return d, nil
}
