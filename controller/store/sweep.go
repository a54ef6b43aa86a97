package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
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
	// Every committed byte counts before a period ends or a quota is
	// judged.
	if _, err := s.FoldUsage(ctx); err != nil {
		return nil, fmt.Errorf("folding pending usage: %w", err)
	}
	resets, err := s.resetPeriods(ctx, actor)
	if err != nil {
		return nil, err
	}
	changes, err := s.sweepStatuses(ctx, actor)
	return mergeChanges(resets, changes), err
}

// mergeChanges reports one change per user: a user whose period reset
// lifted "limited" shows up in both lists.
func mergeChanges(resets, changes []StatusChange) []StatusChange {
	at := map[string]int{}
	for i, c := range resets {
		at[c.User] = i
	}
	for _, c := range changes {
		if i, ok := at[c.User]; ok {
			resets[i].To = c.To
			continue
		}
		resets = append(resets, c)
	}
	return resets
}

// resetPeriods starts the new period of every user whose boundary passed,
// one statement per strategy: at the turn of a month that is every monthly
// user at once, which one transaction per user would make take minutes.
// Each user still gets an audit event (with last period's usage).
func (s *Store) resetPeriods(ctx context.Context, actor string) ([]StatusChange, error) {
	var out []StatusChange
	for _, strategy := range ResetStrategies[1:] {
		now := s.now()
		boundary := periodStart(strategy, now)
		err := s.tx(ctx, func(tx *sqlx.Tx) error {
			q := `SELECT name, status, used_up, used_down FROM users WHERE reset_strategy = ? AND period_start < ? ORDER BY name`
			if s.dialect == mysqlDialect {
				q += ` FOR UPDATE`
			}
			var rows []struct {
				Name     string `db:"name"`
				Status   string `db:"status"`
				Up, Down int64
			}
			if err := tx.SelectContext(ctx, &rows, strings.Replace(q, "used_up, used_down", "used_up AS up, used_down AS down", 1), strategy, boundary); err != nil {
				return err
			}
			if len(rows) == 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE users SET used_up = 0, used_down = 0, period_start = ?, updated_at = ?
			  WHERE reset_strategy = ? AND period_start < ?`, boundary, now, strategy, boundary); err != nil {
				return err
			}
			events := make([]periodEvent, len(rows))
			for i, r := range rows {
				events[i] = periodEvent{name: r.Name, detail: fmt.Sprintf("new %s period; the last one used %d B up, %d B down", strategy, r.Up, r.Down)}
				out = append(out, StatusChange{User: r.Name, From: r.Status, To: r.Status, Reset: true})
			}
			return s.appendPeriodEvents(ctx, tx, actor, events)
		})
		if err != nil {
			return out, fmt.Errorf("period reset (%s): %w", strategy, err)
		}
	}
	return out, nil
}

type periodEvent struct{ name, detail string }

// appendPeriodEvents writes the reset events in multi-row inserts, or one
// by one through appendEvent when a hook wants them (deliveries need each
// event's id).
func (s *Store) appendPeriodEvents(ctx context.Context, tx *sqlx.Tx, actor string, evs []periodEvent) error {
	const action = "user.period_reset"
	var hooks []string
	if err := tx.SelectContext(ctx, &hooks, `SELECT events_csv FROM hooks`); err != nil {
		return err
	}
	for _, h := range hooks {
		if hookMatches(splitCSV(h), action) {
			for _, e := range evs {
				if err := s.appendEvent(ctx, tx, actor, action, "user", e.name, nil, nil, e.detail); err != nil {
					return err
				}
			}
			return nil
		}
	}
	at := s.now()
	for start := 0; start < len(evs); start += batch {
		part := evs[start:min(start+batch, len(evs))]
		args := make([]any, 0, 8*len(part))
		for _, e := range part {
			args = append(args, at, actor, action, "user", e.name, "", "", e.detail)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO events (at, actor, action, object_type, object_name, before_json, after_json, detail) VALUES `+
			placeholders(len(part), 8), args...); err != nil {
			return err
		}
	}
	return nil
}

// sweepStatuses re-derives the status of every user whose numbers say it
// changed; these are few per cycle, each in its own transaction.
func (s *Store) sweepStatuses(ctx context.Context, actor string) ([]StatusChange, error) {
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
		case errors.Is(err, errUnchanged) || errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return out, fmt.Errorf("sweep %s: %w", name, err)
		}
		out = append(out, ch)
	}
	return out, nil
}

var errUnchanged = fmt.Errorf("unchanged")
