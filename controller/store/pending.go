package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"
)

// Pending period usage.
//
// Every node commit of an accounting cycle used to update the period usage
// of each user it carried. A user served by five nodes was so updated five
// times a cycle, and each update moves the user's entries in the indexes
// the users list sorts and filters by usage: at 1,000,000 series that was
// half of a cycle's database work. A commit now appends its users' traffic
// to usage_pending, in the same transaction as the ledger and the
// checkpoints, and FoldUsage adds it to the users once per cycle, in one
// transaction that also empties what it added. So users' usage plus
// pending always equals the ledger's, and nothing is lost or counted twice
// whichever of the two transactions a crash interrupts.
//
// A reset or a deletion of a user drops the user's pending traffic in its
// own transaction: it was committed before the reset, and a reset starts
// the count over from what arrives after it, as it did when commits
// updated the user at once.

// addPending appends one commit's traffic per user, at its commit time
// (the on-hold clock starts at a user's first pending row).
func (s *Store) addPending(ex *preparedTx, now int64, deltas map[string]*delta) error {
	return eachBatch(deltas, func(users []string) error {
		args := make([]any, 0, 4*len(users))
		for _, u := range users {
			args = append(args, u, deltas[u].up, deltas[u].down, now)
		}
		return ex.exec(`INSERT INTO usage_pending (user_name, up, down, at) VALUES `+placeholders(len(users), 4), args...)
	})
}

// FoldUsage adds the pending traffic to the users' period usage and starts
// the on-hold clock of users who used their first bytes. The accountant's
// sweep runs it first, so that statuses and period resets see every byte
// committed. It returns how many pending rows it folded.
func (s *Store) FoldUsage(ctx context.Context) (int64, error) {
	var folded int64
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if err := s.lockPending(ctx, tx); err != nil {
			return err
		}
		var hi sql.NullInt64
		if err := tx.GetContext(ctx, &hi, `SELECT MAX(id) FROM usage_pending`); err != nil {
			return err
		}
		if !hi.Valid {
			return nil
		}
		// SQLite evaluates every SET expression on the row as it was, so
		// expire_at sees the old first_used_at.
		if s.dialect == mysqlDialect {
			if err := s.foldMySQL(ctx, tx, hi.Int64); err != nil {
				return err
			}
		} else if _, err := tx.ExecContext(ctx, `UPDATE users SET
		  used_up = used_up + d.up, used_down = used_down + d.dn,
		  expire_at = CASE WHEN first_used_at = 0 AND expire_at = 0 AND on_hold_seconds > 0 THEN d.at + on_hold_seconds ELSE expire_at END,
		  first_used_at = CASE WHEN first_used_at = 0 THEN d.at ELSE first_used_at END
		  FROM (SELECT user_name, SUM(up) AS up, SUM(down) AS dn, MIN(at) AS at FROM usage_pending WHERE id <= ? GROUP BY user_name) AS d
		  WHERE users.name = d.user_name`, hi.Int64); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM usage_pending WHERE id <= ?`, hi.Int64)
		if err != nil {
			return err
		}
		folded, err = res.RowsAffected()
		return err
	})
	return folded, err
}

// foldMySQL folds the pending rows up to hi. They are locked first, so
// that a commit still open with a lower id is waited for rather than
// deleted unread. The usage and the first-use clock are two statements:
// MySQL does not say in which order a multi-table UPDATE assigns its
// columns, and the clock's must see first_used_at as it was.
func (s *Store) foldMySQL(ctx context.Context, tx *sqlx.Tx, hi int64) error {
	var n int64
	if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM usage_pending WHERE id <= ? FOR UPDATE`, hi); err != nil {
		return err
	}
	const pending = `(SELECT user_name, SUM(up) AS up, SUM(down) AS dn, MIN(at) AS at FROM usage_pending WHERE id <= ? GROUP BY user_name)`
	if _, err := tx.ExecContext(ctx, `UPDATE users u JOIN `+pending+` d ON u.name = d.user_name
	  SET u.used_up = u.used_up + d.up, u.used_down = u.used_down + d.dn`, hi); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE users u JOIN `+pending+` d ON u.name = d.user_name
	  SET u.expire_at = CASE WHEN u.expire_at = 0 AND u.on_hold_seconds > 0 THEN d.at + u.on_hold_seconds ELSE u.expire_at END,
	    u.first_used_at = d.at
	  WHERE u.first_used_at = 0`, hi)
	return err
}

// dropPending drops a user's pending traffic, in the transaction that
// resets or deletes the user, before that locks the user's row (see
// lockPending). The table has no index by user: it holds at most one
// cycle's commits, and resets are rare.
func (s *Store) dropPending(ctx context.Context, tx *sqlx.Tx, name string) error {
	if err := s.lockPending(ctx, tx); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM usage_pending WHERE user_name = ?`, name)
	return err
}

// lockPending takes the lock that orders folds and resets on MySQL: both
// then lock pending rows and users in the same order. SQLite runs one
// writing transaction at a time.
func (s *Store) lockPending(ctx context.Context, tx *sqlx.Tx) error {
	if s.dialect != mysqlDialect {
		return nil
	}
	var id int
	err := tx.GetContext(ctx, &id, `SELECT id FROM usage_lock WHERE id = 1 FOR UPDATE`)
	if errors.Is(err, sql.ErrNoRows) {
		return errors.New("usage_lock has no row: the schema was changed by hand")
	}
	return err
}
