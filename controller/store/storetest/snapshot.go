package storetest

import (
	"context"
	"encoding/json"

	"github.com/boxfleet/boxfleet/controller/store"
)

// Snapshot is everything an outside request could change in a store, as
// text: users, nodes, plans, hooks, admins, alert episodes still firing and
// the audit log (but for refused logins, which are recorded on purpose).
// Fuzz tests compare it before and after a request that was refused, to
// show that the refusal changed nothing.
func Snapshot(ctx context.Context, s *store.Store) (string, error) {
	var snap struct {
		Users  []*store.User
		Nodes  []*store.Node
		Plans  []*store.Plan
		Hooks  []*store.Hook
		Admins []*store.Admin
		Firing []*store.AlertAction
		Events []string
	}
	var err error
	if snap.Users, _, err = s.ListUsers(ctx, store.UserFilter{}); err != nil {
		return "", err
	}
	if snap.Nodes, err = s.ListNodes(ctx); err != nil {
		return "", err
	}
	if snap.Plans, err = s.ListPlans(ctx); err != nil {
		return "", err
	}
	if snap.Hooks, err = s.ListHooks(ctx); err != nil {
		return "", err
	}
	if snap.Admins, err = s.ListAdmins(ctx); err != nil {
		return "", err
	}
	if snap.Firing, err = s.FiringAlertActions(ctx, 0); err != nil {
		return "", err
	}
	evs, err := s.Events(ctx, store.EventFilter{Limit: 200})
	if err != nil {
		return "", err
	}
	for _, e := range evs {
		if e.Action != "session.login_failed" {
			b, _ := json.Marshal(e)
			snap.Events = append(snap.Events, string(b))
		}
	}
	b, err := json.Marshal(snap)
	return string(b), err
}
