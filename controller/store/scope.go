package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"
)

// OwnedBy returns a view of the store limited to the users the reseller
// account admin manages: other users are not found, new users become its,
// and creating or changing a user is held to the account's limits. The
// check runs inside the write's transaction, so two requests at once
// cannot both take the last room.
func (s *Store) OwnedBy(admin string) *Store {
	c := *s
	c.owner = admin
	return &c
}

// LimitError refuses a reseller's change that goes past its limits.
type LimitError struct{ Field, Reason string }

func (e *LimitError) Error() string { return e.Field + ": " + e.Reason }

func overLimit(field, format string, args ...any) error {
	return &LimitError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ownerLimits checks a reseller's user r against the account's limits; orig
// is the user before the change, nil on create. On create it also fills in
// the account's groups for a user that names none, since a user with no
// groups may use every node.
func (s *Store) ownerLimits(ctx context.Context, tx *sqlx.Tx, r, orig *userRow) error {
	a, err := s.getAdminRow(ctx, tx, s.owner)
	if errors.Is(err, ErrNotFound) || (err == nil && (a.Disabled || a.Role != RoleReseller)) {
		return overLimit("owner", "account %q may not manage users", s.owner)
	}
	if err != nil {
		return err
	}
	l := a.limits()
	if orig == nil {
		var n int64
		if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM users WHERE owner_admin = ?`, s.owner); err != nil {
			return err
		}
		if l.MaxUsers > 0 && n >= l.MaxUsers {
			return overLimit("name", "this account may manage at most %d users", l.MaxUsers)
		}
		if len(l.Plans) > 0 && !slices.Contains(l.Plans, r.Plan) {
			return overLimit("plan", "this account may create users only from the plans %s", strings.Join(l.Plans, ", "))
		}
		if r.Groups == "" {
			r.Groups = strings.Join(l.Groups, ",")
		}
	}
	if len(l.Groups) > 0 && (orig == nil || r.Groups != orig.Groups) {
		for _, g := range splitCSV(r.Groups) {
			if !slices.Contains(l.Groups, g) {
				return overLimit("groups", "this account's users may use only the groups %s", strings.Join(l.Groups, ", "))
			}
		}
		if r.Groups == "" {
			return overLimit("groups", "this account's users must name their groups (%s)", strings.Join(l.Groups, ", "))
		}
	}
	if l.MaxTraffic > 0 && (orig == nil || r.TrafficLimit != orig.TrafficLimit) {
		if r.TrafficLimit == 0 {
			return overLimit("traffic_limit_bytes", "this account may not hand out unlimited traffic")
		}
		var others int64
		if err := tx.GetContext(ctx, &others, `SELECT COALESCE(SUM(traffic_limit), 0) FROM users WHERE owner_admin = ? AND id <> ?`,
			s.owner, r.ID); err != nil {
			return err
		}
		if others+r.TrafficLimit > l.MaxTraffic {
			return overLimit("traffic_limit_bytes", "this account may hand out %d bytes in all; its other users hold %d", l.MaxTraffic, others)
		}
	}
	return nil
}
