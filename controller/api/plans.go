package api

import (
	"net/http"
	"slices"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (a *API) listPlans(_ http.ResponseWriter, r *http.Request) (any, error) {
	ps, err := a.store.ListPlans(r.Context())
	if err != nil {
		return nil, err
	}
	allowed, err := a.resellerPlans(r)
	if err != nil {
		return nil, err
	}
	if allowed != nil {
		ps = slices.DeleteFunc(ps, func(p *store.Plan) bool { return !allowed(p.Name) })
	}
	if ps == nil {
		ps = []*store.Plan{}
	}
	return map[string]any{"plans": ps}, nil
}

func (a *API) getPlan(_ http.ResponseWriter, r *http.Request) (any, error) {
	allowed, err := a.resellerPlans(r)
	if err != nil {
		return nil, err
	}
	if allowed != nil && !allowed(mux.Vars(r)["name"]) {
		return nil, store.ErrNotFound
	}
	p, err := a.store.GetPlan(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	return p, nil
}

// planBody is what PUT accepts: the plan's fields without its name (the
// path names it) or timestamps.
type planBody struct {
	TrafficLimit    int64    `json:"traffic_limit_bytes"`
	ResetStrategy   string   `json:"reset_strategy"`
	DurationSeconds int64    `json:"duration_seconds"`
	OnHoldSeconds   int64    `json:"on_hold_seconds"`
	DeviceLimit     int64    `json:"device_limit"`
	Groups          []string `json:"groups"`
	Note            string   `json:"note"`
}

func (a *API) putPlan(w http.ResponseWriter, r *http.Request) (any, error) {
	var b planBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	p, err := a.store.PutPlan(r.Context(), Caller(r), store.Plan{
		Name: mux.Vars(r)["name"], TrafficLimit: b.TrafficLimit, ResetStrategy: b.ResetStrategy,
		DurationSeconds: b.DurationSeconds, OnHoldSeconds: b.OnHoldSeconds, DeviceLimit: b.DeviceLimit,
		Groups: b.Groups, Note: b.Note,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (a *API) deletePlan(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.store.DeletePlan(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		return nil, err
	}
	return noContent, nil
}

func (a *API) listEvents(_ http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := store.EventFilter{ObjectType: q.Get("object_type"), ObjectName: q.Get("object"), Action: q.Get("action"), Actor: q.Get("actor")}
	var err error
	if f.Limit, err = limitParam(r, 100, 1000); err != nil {
		return nil, err
	}
	before, err := intParam(r, "before", 0, 1<<62)
	if err != nil {
		return nil, err
	}
	f.Before = int64(before)
	evs, err := a.storeFor(r).Events(r.Context(), f)
	if err != nil {
		return nil, err
	}
	if evs == nil {
		evs = []*store.Event{}
	}
	if !seesSecrets(r) {
		// A hook's URL may hold its receiver's secret in the path (a bot
		// token); the audit copy drops only the query.
		for _, ev := range evs {
			if ev.ObjectType == "hook" {
				ev.Before, ev.After = nil, nil
			}
		}
	}
	return map[string]any{"events": evs}, nil
}

// resellerPlans returns, for a reseller whose account names plans, which
// plans it may see (the ones it may create users from); nil for everyone
// else.
func (a *API) resellerPlans(r *http.Request) (func(string) bool, error) {
	p := Who(r)
	if p.Role != store.RoleReseller {
		return nil, nil
	}
	acct, err := a.store.GetAdmin(r.Context(), p.Account)
	if err != nil {
		return nil, err
	}
	if acct.Limits == nil || len(acct.Limits.Plans) == 0 {
		return nil, nil
	}
	return func(name string) bool { return slices.Contains(acct.Limits.Plans, name) }, nil
}
