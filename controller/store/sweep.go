package store

import (
	"context"
	"fmt"
)

// StatusChange is one user whose period or status the sweep changed.
type StatusChange struct {
	User     string
	From, To string
	Reset    bool
}

// Sweep starts new periods for users whose reset boundary has passed and
// re-derives every status the numbers decide (expired, limited, on hold and
// back). It is the controller's own enforcement: a lost webhook never leaves
// an over-quota or expired user served.
func (s *Store) Sweep(ctx context.Context, actor string) ([]StatusChange, error) {
	now := s.now()
	var names []string
	err := s.db.SelectContext(ctx, &names, `SELECT name FROM users WHERE
	     (reset_strategy = 'day' AND period_start < ?)
	  OR (reset_strategy = 'week' AND period_start < ?)
	  OR (reset_strategy = 'month' AND period_start < ?)
	  OR (reset_strategy = 'year' AND period_start < ?)
	  OR (status = 'active' AND ((expire_at > 0 AND expire_at <= ?) OR (traffic_limit > 0 AND used_up + used_down >= traffic_limit)))
	  OR (status = 'on_hold' AND (first_used_at > 0 OR expire_at > 0 OR on_hold_seconds = 0))
	  OR (status = 'limited' AND (traffic_limit = 0 OR used_up + used_down < traffic_limit OR (expire_at > 0 AND expire_at <= ?)))
	  OR (status = 'expired' AND (expire_at = 0 OR expire_at > ?))
	  ORDER BY name`,
		periodStart("day", now), periodStart("week", now), periodStart("month", now), periodStart("year", now), now, now, now)
	if err != nil {
		return nil, err
	}
	var out []StatusChange
	for _, name := range names {
		var ch StatusChange
		_, err := s.mutateUser(ctx, actor, "user.sweep", name, "", func(r *userRow, now int64) error {
			ch = StatusChange{User: name, From: r.Status}
			if ps := periodStart(r.ResetStrategy, now); ps > r.PeriodStart {
				r.UsedUp, r.UsedDown, r.PeriodStart, ch.Reset = 0, 0, ps, true
			}
			r.Status = r.derivedStatus(now)
			ch.To = r.Status
			if ch.From == ch.To && !ch.Reset {
				return errUnchanged
			}
			return nil
		})
		switch {
		case err == errUnchanged || err == ErrNotFound:
			continue
		case err != nil:
			return out, fmt.Errorf("sweep %s: %w", name, err)
		}
		out = append(out, ch)
	}
	return out, nil
}

var errUnchanged = fmt.Errorf("unchanged")
