package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"
)

// AlertKey identifies one firing episode of one alert acting on one target:
// Alertmanager re-sends the same episode (same fingerprint and start) many
// times, and a new episode of the same alert has a new start.
type AlertKey struct {
	Fingerprint string `db:"fingerprint"`
	StartsAt    int64  `db:"starts_at"` // Unix seconds
	Action      string `db:"action"`
	Target      string `db:"target"`
}

// AlertAction is what the controller did about an alert episode.
type AlertAction struct {
	AlertKey
	AlertName string `db:"alertname"`
	State     string `db:"state"` // firing or resolved: the last state handled
	Applied   bool   `db:"applied"`
	Result    string `db:"result"`
	UpdatedAt int64  `db:"updated_at"`
}

// ClaimAlert records that the controller is handling key in state, unless a
// record exists already, which it then returns (claimed false): repeats,
// duplicates delivered to several controllers at once, and a firing
// notification arriving after its resolution are all recognised this way.
func (s *Store) ClaimAlert(ctx context.Context, key AlertKey, alertname, state string) (*AlertAction, bool, error) {
	prev, err := s.GetAlertAction(ctx, key)
	if err == nil {
		return prev, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO alert_actions (fingerprint, starts_at, action, target, alertname, state, applied, result, updated_at)
	  VALUES (?, ?, ?, ?, ?, ?, 0, 'pending', ?)`, key.Fingerprint, key.StartsAt, key.Action, key.Target, alertname, state, s.now())
	if isDuplicate(err) {
		prev, err := s.GetAlertAction(ctx, key)
		return prev, false, err
	}
	return nil, err == nil, err
}

// GetAlertAction returns the record for key.
func (s *Store) GetAlertAction(ctx context.Context, key AlertKey) (*AlertAction, error) {
	var a AlertAction
	err := s.db.GetContext(ctx, &a, `SELECT fingerprint, starts_at, action, target, alertname, state, applied, result, updated_at
	  FROM alert_actions WHERE fingerprint = ? AND starts_at = ? AND action = ? AND target = ?`,
		key.Fingerprint, key.StartsAt, key.Action, key.Target)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &a, err
}

// FinishAlert stores the outcome of handling key.
func (s *Store) FinishAlert(ctx context.Context, key AlertKey, state string, applied bool, result string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE alert_actions SET state = ?, applied = ?, result = ?, updated_at = ?
	  WHERE fingerprint = ? AND starts_at = ? AND action = ? AND target = ?`,
		state, applied, result, s.now(), key.Fingerprint, key.StartsAt, key.Action, key.Target)
	return err
}

// FinishFiring stores the outcome of applying a firing episode, unless the
// episode resolved while it was being applied (another delivery, or another
// controller, handled the resolution in between). It reports whether the
// episode is still firing; when it is not, the caller undoes what it just
// applied, so that the final state follows the episode's latest state.
func (s *Store) FinishFiring(ctx context.Context, key AlertKey, applied bool, result string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE alert_actions SET applied = ?, result = ?, updated_at = ?
	  WHERE fingerprint = ? AND starts_at = ? AND action = ? AND target = ? AND state = 'firing'`,
		applied, result, s.now(), key.Fingerprint, key.StartsAt, key.Action, key.Target)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ReleaseAlert forgets a claim whose handling failed or was refused, so the
// next delivery of the same alert is handled afresh.
func (s *Store) ReleaseAlert(ctx context.Context, key AlertKey) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM alert_actions
	  WHERE fingerprint = ? AND starts_at = ? AND action = ? AND target = ?`,
		key.Fingerprint, key.StartsAt, key.Action, key.Target)
	return err
}

// ResumeIfSuspendedFor lifts a suspension only if it is still the one
// reason names: a user an admin (or another alert) suspended since stays
// suspended.
func (s *Store) ResumeIfSuspendedFor(ctx context.Context, actor, name, reason string) (*User, bool, error) {
	var done bool
	u, err := s.mutateUser(ctx, actor, "user.resume", name, "alert resolved", func(r *userRow, now int64) error {
		if r.Status != StatusDisabled || r.StatusReason != reason {
			return errUnchanged
		}
		r.Status, r.StatusReason = StatusActive, ""
		r.Status = r.derivedStatus(now)
		done = true
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil, false, nil
	}
	return u, done, err
}

// SuspendIfActive suspends a user for reason unless it is already
// suspended (by anyone): the earlier reason, and who may lift it, stays.
// detail goes to the audit log (the alert's labels).
func (s *Store) SuspendIfActive(ctx context.Context, actor, name, reason, detail string) (*User, bool, error) {
	var done bool
	u, err := s.mutateUser(ctx, actor, "user.suspend", name, detail, func(r *userRow, now int64) error {
		if r.Status == StatusDisabled {
			return errUnchanged
		}
		r.Status, r.StatusReason = StatusDisabled, reason
		done = true
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil, false, nil
	}
	return u, done, err
}

// UndrainIfDrainedBy brings a node back only if actor drained it.
func (s *Store) UndrainIfDrainedBy(ctx context.Context, actor, name string) (bool, error) {
	var done bool
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getNodeRow(ctx, tx, name)
		if err != nil {
			return err
		}
		if !r.Drained || r.DrainedBy != actor {
			return nil
		}
		before := r.node()
		r.Drained, r.DrainReason, r.DrainedBy, r.UpdatedAt = false, "", "", s.now()
		if _, err := tx.NamedExecContext(ctx, `UPDATE nodes SET drained = :drained, drain_reason = :drain_reason,
		  drained_by = :drained_by, updated_at = :updated_at WHERE id = :id`, r); err != nil {
			return err
		}
		done = true
		return s.changed(ctx, tx, actor, "node.undrain", "node", name, before, r.node(), "alert resolved")
	})
	return done, err
}
