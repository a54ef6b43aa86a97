package api

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// bulkBody is POST /api/v1/users/bulk: one action on a list of names or on
// every user a filter matches.
type bulkBody struct {
	Action string      `json:"action"`
	Names  []string    `json:"names,omitempty"`
	Filter *bulkFilter `json:"filter,omitempty"`
	Days   int         `json:"days,omitempty"`
	Bytes  int64       `json:"bytes,omitempty"`
	Plan   string      `json:"plan,omitempty"`
	Groups *[]string   `json:"groups,omitempty"`
	DryRun bool        `json:"dry_run,omitempty"`
}

// bulkFilter is the users list's filter, as the list takes it.
type bulkFilter struct {
	Status string `json:"status,omitempty"`
	Plan   string `json:"plan,omitempty"`
	Group  string `json:"group,omitempty"`
	Search string `json:"search,omitempty"`
	Filter string `json:"filter,omitempty"`
}

type bulkFailure struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

type bulkResult struct {
	Matched int           `json:"matched"`
	Done    int           `json:"done"`
	Failed  []bulkFailure `json:"failed"`
	DryRun  bool          `json:"dry_run"`
}

// maxBulk bounds one request; a bigger fleet is changed in slices by
// filter (status, plan, group).
const maxBulk = 100_000

var bulkActions = []string{"suspend", "resume", "reset", "extend", "add_traffic", "set_plan", "set_groups", "rotate_token", "delete"}

func (a *API) bulkUsers(w http.ResponseWriter, r *http.Request) (any, error) {
	var b bulkBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	if !slices.Contains(bulkActions, b.Action) {
		return nil, &store.ValidationError{Field: "action", Reason: "must be one of suspend, resume, reset, extend, add_traffic, set_plan, set_groups, rotate_token, delete"}
	}
	// A reset hands out a period's traffic anew: staff only, as the
	// single-user route.
	if b.Action == "reset" && Who(r).Role == store.RoleReseller {
		return nil, &apiclient.Error{Status: http.StatusForbidden, Code: apiclient.CodeForbidden, Message: "resellers may not reset usage", Field: "action"}
	}
	if (b.Names == nil) == (b.Filter == nil) {
		return nil, &store.ValidationError{Field: "names", Reason: "give either names or filter"}
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	st := a.storeFor(r)
	res := bulkResult{Failed: []bulkFailure{}, DryRun: b.DryRun}
	var names []string
	if b.Filter != nil {
		f, _, err := a.userFilter(r.Context(), b.Filter.Status, b.Filter.Plan, b.Filter.Group, b.Filter.Search, b.Filter.Filter)
		if err != nil {
			return nil, err
		}
		f.Limit = maxBulk + 1
		if names, err = st.UserNames(r.Context(), f); err != nil {
			return nil, err
		}
	} else {
		slices.Sort(b.Names)
		for _, n := range slices.Compact(b.Names) {
			// A name this caller cannot see fails like a name that does
			// not exist: a reseller learns nothing of others' users.
			if _, err := st.GetUser(r.Context(), n); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					res.Failed = append(res.Failed, bulkFailure{Name: n, Error: "no such user"})
					continue
				}
				return nil, err
			}
			names = append(names, n)
		}
	}
	if len(names) > maxBulk {
		return nil, &store.ValidationError{Field: "filter", Reason: "matches more than 100000 users; narrow it"}
	}
	res.Matched = len(names)
	if b.DryRun {
		return res, nil
	}
	actor := Caller(r)
	// Each user in its own transaction, audited as the single action is:
	// one failure (a reseller's limit, a user deleted meanwhile) leaves the
	// others done and is reported by name.
	for _, n := range names {
		if err := b.apply(r.Context(), st, actor, n); err != nil {
			msg := bulkError(err)
			if msg == internalMsg {
				a.log.WithField("user", n).WithError(err).Error("bulk " + b.Action + " failed")
			}
			res.Failed = append(res.Failed, bulkFailure{Name: n, Error: msg})
			continue
		}
		res.Done++
	}
	return res, nil
}

func (b *bulkBody) validate() error {
	switch b.Action {
	case "extend":
		if b.Days < 1 || b.Days > 36500 {
			return &store.ValidationError{Field: "days", Reason: "must be between 1 and 36500"}
		}
	case "add_traffic":
		if b.Bytes < 1 || b.Bytes > 1<<60 {
			return &store.ValidationError{Field: "bytes", Reason: "must be between 1 and 2^60"}
		}
	case "set_plan":
		if b.Plan == "" {
			return &store.ValidationError{Field: "plan", Reason: "required for set_plan"}
		}
	case "set_groups":
		if b.Groups == nil {
			return &store.ValidationError{Field: "groups", Reason: "required for set_groups (an empty list allows every group)"}
		}
	}
	return nil
}

func (b *bulkBody) apply(ctx context.Context, st *store.Store, actor, name string) error {
	var err error
	switch b.Action {
	case "suspend":
		_, err = st.SuspendUser(ctx, actor, name, "admin: bulk suspension")
	case "resume":
		_, err = st.ResumeUser(ctx, actor, name)
	case "reset":
		_, err = st.ResetUsage(ctx, actor, name)
	case "extend":
		_, err = st.ExtendUser(ctx, actor, name, b.Days)
	case "add_traffic":
		_, err = st.AddTraffic(ctx, actor, name, b.Bytes)
	case "set_plan":
		_, err = st.SetPlan(ctx, actor, name, b.Plan)
	case "set_groups":
		_, err = st.UpdateUser(ctx, actor, name, store.UserSpec{Groups: b.Groups})
	case "rotate_token":
		_, err = st.RotateToken(ctx, actor, name)
	case "delete":
		err = st.DeleteUser(ctx, actor, name)
	}
	return err
}

// bulkError is what the answer says of one user's failure: the reason for
// the errors a caller can act on, nothing internal.
func bulkError(err error) string {
	var ve *store.ValidationError
	var le *store.LimitError
	switch {
	case errors.As(err, &ve), errors.As(err, &le), errors.Is(err, store.ErrNothingTo):
		return err.Error()
	case errors.Is(err, store.ErrNotFound):
		return "no such user"
	}
	return internalMsg
}

const internalMsg = "internal error; see the controller's log"
