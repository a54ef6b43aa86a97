package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// The user changes that bulk actions make beyond the single-user ones.
// Each reads and writes the user in one transaction, as every other
// change does: "extend by 30 days" computed from a value read earlier
// would undo a change made in between.

// ErrNothingTo is a bulk change that does not apply to a user (extending a
// user who never expires, adding traffic to an unlimited one).
var ErrNothingTo = errors.New("does not apply")

// ExtendUser moves the user's expiry days later, counted from now when it
// has passed already; a user that never expires is left alone.
func (s *Store) ExtendUser(ctx context.Context, actor, name string, days int) (*User, error) {
	if days < 1 || days > 36500 {
		return nil, invalid("days", "must be between 1 and 36500")
	}
	return s.mutateUser(ctx, actor, "user.extend", name, fmt.Sprintf("extended by %d days", days), func(r *userRow, now int64) error {
		if r.ExpireAt == 0 {
			return fmt.Errorf("%w: the user never expires", ErrNothingTo)
		}
		r.ExpireAt = max(r.ExpireAt, now) + int64(days)*86400
		r.Status = r.derivedStatus(now)
		return nil
	})
}

// AddTraffic raises the user's limit by n bytes; an unlimited user is left
// alone.
func (s *Store) AddTraffic(ctx context.Context, actor, name string, n int64) (*User, error) {
	if n < 1 || n > 1<<60 {
		return nil, invalid("bytes", "must be between 1 and 2^60")
	}
	return s.mutateUser(ctx, actor, "user.add_traffic", name, fmt.Sprintf("limit raised by %d bytes", n), func(r *userRow, now int64) error {
		if r.TrafficLimit == 0 {
			return fmt.Errorf("%w: the user is unlimited", ErrNothingTo)
		}
		r.TrafficLimit += n
		r.Status = r.derivedStatus(now)
		return nil
	})
}

// SetPlan moves the user to plan: its limit, reset period, device limit
// and groups. The expiry stays: changing plans is not a renewal.
func (s *Store) SetPlan(ctx context.Context, actor, name, plan string) (*User, error) {
	p, err := s.GetPlan(ctx, plan)
	if errors.Is(err, ErrNotFound) {
		return nil, invalid("plan", "no plan named %q", plan)
	}
	if err != nil {
		return nil, err
	}
	return s.mutateUser(ctx, actor, "user.set_plan", name, "plan "+plan, func(r *userRow, now int64) error {
		old := r.ResetStrategy
		r.Plan, r.TrafficLimit, r.ResetStrategy, r.DeviceLimit, r.Groups = p.Name, p.TrafficLimit, p.ResetStrategy, p.DeviceLimit, p.GroupsCSV
		if r.ResetStrategy != old {
			r.PeriodStart = switchedPeriodStart(r.ResetStrategy, now, r.PeriodStart)
		}
		r.Status = r.derivedStatus(now)
		return nil
	})
}

// UserStatusCounts counts the users of this view by status.
func (s *Store) UserStatusCounts(ctx context.Context) (map[string]int, error) {
	q, args := `SELECT status, COUNT(*) AS n FROM users`, []any{}
	if s.owner != "" {
		q, args = q+` WHERE owner_admin = ?`, append(args, s.owner)
	}
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := s.db.SelectContext(ctx, &rows, q+` GROUP BY status`, args...); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, st := range Statuses {
		out[st] = 0
	}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// TrafficSince sums the ledger from day (YYYYMMDD, UTC) on, for this view's
// users.
func (s *Store) TrafficSince(ctx context.Context, day int) (up, down int64, err error) {
	q, args := `SELECT COALESCE(SUM(upload), 0) AS up, COALESCE(SUM(download), 0) AS down FROM usage_days WHERE day >= ?`, []any{day}
	if s.owner != "" {
		q, args = q+` AND user_name IN (SELECT name FROM users WHERE owner_admin = ?)`, append(args, s.owner)
	}
	var r struct {
		Up   int64 `db:"up"`
		Down int64 `db:"down"`
	}
	err = s.db.GetContext(ctx, &r, q, args...)
	return r.Up, r.Down, err
}

// AlertActionsOn returns the alert episodes that acted (or were asked to
// act) on target with action, newest first.
func (s *Store) AlertActionsOn(ctx context.Context, action, target string, limit int) ([]*AlertAction, error) {
	var out []*AlertAction
	err := s.db.SelectContext(ctx, &out, `SELECT fingerprint, starts_at, action, target, alertname, state, applied, result, updated_at
	  FROM alert_actions WHERE target = ? AND action = ? ORDER BY starts_at DESC LIMIT ?`, target, action, noLimit(limit))
	return out, err
}

// FiringAlertActions returns the episodes still firing, newest first.
func (s *Store) FiringAlertActions(ctx context.Context, limit int) ([]*AlertAction, error) {
	var out []*AlertAction
	err := s.db.SelectContext(ctx, &out, `SELECT fingerprint, starts_at, action, target, alertname, state, applied, result, updated_at
	  FROM alert_actions WHERE state = 'firing' ORDER BY starts_at DESC LIMIT ?`, noLimit(limit))
	return out, err
}

// NextPeriodStart is when a user on strategy gets a new period after now;
// ok is false for no_reset, whose one period never ends.
func NextPeriodStart(strategy string, now time.Time) (time.Time, bool) {
	start := time.Unix(periodStart(strategy, now.Unix()), 0).UTC()
	switch strategy {
	case "day":
		return start.AddDate(0, 0, 1), true
	case "week":
		return start.AddDate(0, 0, 7), true
	case "month":
		return start.AddDate(0, 1, 0), true
	case "year":
		return start.AddDate(1, 0, 0), true
	}
	return time.Time{}, false
}

// Redeliver queues a hook's delivery again at once, with a fresh count of
// attempts, whatever became of it (delivered, failed, or still pending);
// the body is the one first queued.
func (s *Store) Redeliver(ctx context.Context, actor, hook string, id int64) (*Delivery, error) {
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		now := s.now()
		res, err := tx.ExecContext(ctx, `UPDATE hook_deliveries SET status = ?, attempts = 0, next_attempt_at = ?, updated_at = ?
		  WHERE id = ? AND hook_name = ?`, DeliveryPending, now, now, id, hook)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return s.appendEvent(ctx, tx, actor, "hook.redeliver", "hook", hook, nil, nil, fmt.Sprintf("delivery %d", id))
	})
	if err != nil {
		return nil, err
	}
	var d Delivery
	if err := s.db.GetContext(ctx, &d, `SELECT id, hook_name, event_id, action, status, attempts, next_attempt_at,
	  last_status, last_error, created_at, updated_at FROM hook_deliveries WHERE id = ?`, id); err != nil {
		return nil, notFound(err)
	}
	d.CreatedAt, d.UpdatedAt, d.NextAttemptAt = unix(d.CreatedUnix), unix(d.UpdatedUnix), optUnix(d.NextUnix)
	return &d, nil
}
