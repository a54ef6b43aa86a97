package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

type userPage struct {
	Users  []listedUser `json:"users"`
	Total  int          `json:"total"`
	Limit  int          `json:"limit"`
	Offset int          `json:"offset"`
	// Live is false when Prometheus could not be read: online, rates and
	// devices are then unknown (false, 0 and null).
	Live bool `json:"live"`
}

// listedUser is a user with its live numbers from Prometheus.
type listedUser struct {
	*store.User
	Online   bool    `json:"online"`
	RateUp   float64 `json:"rate_up"`   // bytes/s from the client, summed over nodes
	RateDown float64 `json:"rate_down"` // bytes/s to the client
	Devices  *int64  `json:"devices"`   // distinct source addresses now, summed over nodes; null when unknown
}

// expiringWindow is what the expiring3d filter means by soon.
const expiringWindow = 3 * 86400

// userFilter reads the list filters shared by the list and bulk actions.
func (a *API) userFilter(ctx context.Context, status, plan, group, search, filters string) (store.UserFilter, bool, error) {
	f := store.UserFilter{Status: status, Group: group, Plan: plan, Search: search}
	if f.Status != "" && !slices.Contains(store.Statuses, f.Status) {
		return f, false, &store.ValidationError{Field: "status", Reason: "unknown status"}
	}
	liveOK := true
	for x := range strings.SplitSeq(filters, ",") {
		switch strings.TrimSpace(x) {
		case "":
		case "over90":
			f.Over90 = true
		case "expiring3d":
			f.ExpiringWithin = expiringWindow
		case "overdevices":
			f.OverDevices = true
			live, ok := a.usersLive(ctx)
			if !ok {
				// Without Prometheus nobody is known to be over: an empty
				// answer, marked not live, rather than a failed page.
				liveOK = false
			}
			f.Devices = make(map[string]int64, len(live))
			for u, l := range live {
				f.Devices[u] = int64(l.SourceIPs)
			}
		default:
			return f, false, &store.ValidationError{Field: "filter", Reason: "unknown filter " + strconv.Quote(x) + "; known: over90, expiring3d, overdevices"}
		}
	}
	return f, liveOK, nil
}

func (a *API) listUsers(_ http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	f, filterLive, err := a.userFilter(r.Context(), q.Get("status"), q.Get("plan"), q.Get("group"), q.Get("search"), q.Get("filter"))
	if err != nil {
		return nil, err
	}
	f.Sort = q.Get("sort")
	if f.Limit, err = limitParam(r, 100, 1000); err != nil {
		return nil, err
	}
	if f.Offset, err = intParam(r, "offset", 0, 1<<31-1); err != nil {
		return nil, err
	}
	users, total, err := a.storeFor(r).ListUsers(r.Context(), f)
	if err != nil {
		return nil, err
	}
	live, ok := a.usersLive(r.Context())
	page := userPage{Users: make([]listedUser, len(users)), Total: total, Limit: f.Limit, Offset: f.Offset, Live: ok && filterLive}
	for i, u := range users {
		lu := listedUser{User: shownUser(r, u)}
		if ok {
			var d int64
			if l := live[u.Name]; l != nil {
				lu.Online, lu.RateUp, lu.RateDown, d = l.Connections > 0, l.Up, l.Down, int64(l.SourceIPs)
			}
			lu.Devices = &d
		}
		page.Users[i] = lu
	}
	return page, nil
}

type createUserBody struct {
	Name string `json:"name"`
	Plan string `json:"plan,omitempty"`
	store.UserSpec
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) (any, error) {
	var b createUserBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	u, err := a.storeFor(r).CreateUser(r.Context(), Caller(r), b.Name, b.Plan, b.UserSpec)
	if err != nil {
		return nil, err
	}
	return created(u), nil
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) (any, error) {
	var spec store.UserSpec
	if err := decode(w, r, &spec); err != nil {
		return nil, err
	}
	u, err := a.storeFor(r).UpdateUser(r.Context(), Caller(r), mux.Vars(r)["name"], spec)
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (a *API) deleteUser(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.storeFor(r).DeleteUser(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		return nil, err
	}
	return noContent, nil
}

type reasonBody struct {
	Reason string `json:"reason,omitempty"`
}

// readReason accepts an empty body as "no reason given".
func readReason(w http.ResponseWriter, r *http.Request) (string, error) {
	var b reasonBody
	if r.ContentLength == 0 {
		return "", nil
	}
	if err := decode(w, r, &b); err != nil {
		return "", err
	}
	if len(b.Reason) > 255 {
		return "", &store.ValidationError{Field: "reason", Reason: "longer than 255 bytes"}
	}
	return b.Reason, nil
}

func (a *API) suspendUser(w http.ResponseWriter, r *http.Request) (any, error) {
	reason, err := readReason(w, r)
	if err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "suspended by an admin"
	}
	// "admin:" marks a hand-made suspension, which no alert ever lifts.
	u, err := a.storeFor(r).SuspendUser(r.Context(), Caller(r), mux.Vars(r)["name"], "admin: "+reason)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// userAction runs a store method on the caller's view of the store, so
// that a reseller reaches only its own users.
func (a *API) userAction(fn func(s *store.Store, ctx context.Context, actor, name string) (*store.User, error)) http.HandlerFunc {
	return a.serve(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		return fn(a.storeFor(r), r.Context(), Caller(r), mux.Vars(r)["name"])
	})
}

// userUsage returns the ledger per day and node; from/to are dates
// (YYYY-MM-DD, UTC), defaulting to the last 31 days.
func (a *API) userUsage(_ http.ResponseWriter, r *http.Request) (any, error) {
	name := mux.Vars(r)["name"]
	if _, err := a.storeFor(r).GetUser(r.Context(), name); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	from, err := dateParam(r, "from", now.AddDate(0, 0, -30))
	if err != nil {
		return nil, err
	}
	to, err := dateParam(r, "to", now)
	if err != nil {
		return nil, err
	}
	rows, err := a.store.Usage(r.Context(), name, from, to)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []store.UsageRow{}
	}
	return map[string]any{"user": name, "usage": rows}, nil
}

func dateParam(r *http.Request, name string, def time.Time) (int, error) {
	t := def
	if s := r.URL.Query().Get(name); s != "" {
		var err error
		if t, err = time.Parse(time.DateOnly, s); err != nil {
			return 0, &store.ValidationError{Field: name, Reason: "must be a date like 2026-01-31"}
		}
	}
	return t.Year()*10000 + int(t.Month())*100 + t.Day(), nil
}

// shownUser hides a user's credentials and subscription token from a
// viewer: with them it could act as the user.
func shownUser(r *http.Request, u *store.User) *store.User {
	if seesSecrets(r) {
		return u
	}
	c := *u
	c.Credentials = sbconfig.Credentials{}
	c.SubToken = ""
	return &c
}
