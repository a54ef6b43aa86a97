package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jmoiron/sqlx"
)

// Pending period usage.
//
// Every node commit of an accounting cycle used to update the period usage
// of each user it carried. A user served by five nodes was so updated five
// times a cycle, and each update moves the user's entries in the indexes
// the users list sorts and filters by usage: at 1,000,000 series that was
// half of a cycle's database work. A commit now appends its users' traffic
// to usage_pending_nodes, in the same transaction as the ledger and the
// checkpoints, and FoldUsage adds it to the users once per cycle, in one
// transaction that also empties what it added. So users' usage plus
// pending always equals the ledger's, and nothing is lost or counted twice
// whichever of the two transactions a crash interrupts.
//
// A commit's pending traffic is one row, its users packed as a node's
// checkpoints are (encodeCheckpoints: name, upload, download), not a row
// per user: at 1,000,000 series a cycle in which everything moved
// inserted, grouped and deleted 500,000 rows for it, about 1.5 s on
// SQLite.
//
// A reset or a deletion of a user drops the user's pending traffic in its
// own transaction: it was committed before the reset, and a reset starts
// the count over from what arrives after it, as it did when commits
// updated the user at once.

// addPending appends one commit's traffic, at its commit time (the on-hold
// clock starts at the first commit that carried a user's traffic).
func (s *Store) addPending(ex *preparedTx, now int64, deltas map[string]*delta) error {
	if len(deltas) == 0 {
		return nil
	}
	return ex.exec(`INSERT INTO usage_pending_nodes (at, data) VALUES (?, ?)`, now, encodeCheckpoints(deltas))
}

// pendingRow is one commit's pending traffic.
type pendingRow struct {
	ID   int64  `db:"id"`
	At   int64  `db:"at"`
	Data []byte `db:"data"`
}

// pendingSum is one user's pending traffic, and the time of the earliest
// commit that carried it.
type pendingSum struct {
	up, down, at int64
}

// FoldUsage adds the pending traffic to the users' period usage and starts
// the on-hold clock of users who used their first bytes. The accountant's
// sweep runs it first, so that statuses and period resets see every byte
// committed. It returns how many users' entries it folded (one per commit
// and user).
func (s *Store) FoldUsage(ctx context.Context) (int64, error) {
	var folded int64
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if err := s.lockPending(ctx, tx); err != nil {
			return err
		}
		var hi sql.NullInt64
		if err := tx.GetContext(ctx, &hi, `SELECT MAX(id) FROM usage_pending_nodes`); err != nil {
			return err
		}
		if !hi.Valid {
			return nil
		}
		// On MySQL the rows are locked as they are read, so that a commit
		// still open with a lower id is waited for rather than deleted
		// unread.
		q := `SELECT id, at, data FROM usage_pending_nodes WHERE id <= ?`
		if s.dialect == mysqlDialect {
			q += ` FOR UPDATE`
		}
		// By value: at 100,000 users a pointer each would be 100,000
		// more allocations for the collector to trace.
		sums := map[string]pendingSum{}
		err := s.eachPending(ctx, tx, q, []any{hi.Int64}, func(r pendingRow, m map[string]counter) error {
			for u, c := range m {
				folded++
				p, ok := sums[u]
				if !ok {
					sums[u] = pendingSum{up: c.up, down: c.down, at: r.At}
					continue
				}
				sums[u] = pendingSum{up: p.up + c.up, down: p.down + c.down, at: min(p.at, r.At)}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := s.addFolded(ctx, tx, sums); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM usage_pending_nodes WHERE id <= ?`, hi.Int64)
		return err
	})
	return folded, err
}

// eachPending reads the pending rows q selects, one at a time, and hands
// each to fn decoded. A row that does not decode fails the transaction: a
// guess would bill wrong traffic.
func (s *Store) eachPending(ctx context.Context, tx *sqlx.Tx, q string, args []any, fn func(pendingRow, map[string]counter) error) error {
	rows, err := tx.QueryxContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r pendingRow
		if err := rows.StructScan(&r); err != nil {
			return err
		}
		m, err := decodeCheckpoints(r.Data)
		if err != nil {
			return fmt.Errorf("pending usage %d: %w", r.ID, err)
		}
		if err := fn(r, m); err != nil {
			return err
		}
	}
	return rows.Err()
}

// addFolded adds the sums to the users, batch at a time in name order,
// the usage and the on-hold clock in one statement.
// SQLite evaluates every SET expression on the row as it was, so expire_at
// sees the old first_used_at. MySQL does not say in which order a
// multi-table UPDATE assigns its columns, so there expire_at's test accepts
// first_used_at both as it was (0) and as the statement sets it (the
// user's first pending commit), as addPeriodUsage does; a second statement
// for the clock looked every user of the batch up again.
func (s *Store) addFolded(ctx context.Context, tx *sqlx.Tx, sums map[string]pendingSum) error {
	ex := &preparedTx{ctx: ctx, tx: tx, stmts: map[string]*sql.Stmt{}}
	users := slices.Sorted(maps.Keys(sums))
	for start := 0; start < len(users); start += batch {
		part := users[start:min(start+batch, len(users))]
		args := make([]any, 0, 4*len(part))
		for _, u := range part {
			p := sums[u]
			args = append(args, u, p.up, p.down, p.at)
		}
		if s.dialect != mysqlDialect {
			if err := ex.exec(`UPDATE users SET used_up = used_up + d.column2, used_down = used_down + d.column3,
			  expire_at = CASE WHEN first_used_at = 0 AND expire_at = 0 AND on_hold_seconds > 0 THEN d.column4 + on_hold_seconds ELSE expire_at END,
			  first_used_at = CASE WHEN first_used_at = 0 THEN d.column4 ELSE first_used_at END
			  FROM (VALUES `+placeholders(len(part), 4)+`) AS d WHERE users.name = d.column1`, args...); err != nil {
				return err
			}
			continue
		}
		if err := ex.exec(`UPDATE users u JOIN `+unionTable(len(part), "n", "up", "dn", "at")+` d ON u.name = d.n
		  SET u.used_up = u.used_up + d.up, u.used_down = u.used_down + d.dn,
		  u.expire_at = CASE WHEN u.first_used_at IN (0, d.at) AND u.expire_at = 0 AND u.on_hold_seconds > 0 THEN d.at + u.on_hold_seconds ELSE u.expire_at END,
		  u.first_used_at = CASE WHEN u.first_used_at = 0 THEN d.at ELSE u.first_used_at END`, args...); err != nil {
			return err
		}
	}
	return nil
}

// dropPending drops a user's pending traffic, in the transaction that
// resets or deletes the user, before that locks the user's row (see
// lockPending). It rewrites the rows that hold the user: pending usage is
// at most a cycle's commits, and resets are rare.
func (s *Store) dropPending(ctx context.Context, tx *sqlx.Tx, name string) error {
	if err := s.lockPending(ctx, tx); err != nil {
		return err
	}
	q := `SELECT id, at, data FROM usage_pending_nodes`
	if s.dialect == mysqlDialect {
		q += ` FOR UPDATE`
	}
	// Read first, write after: MySQL cannot run a statement while a
	// result is still being read on the connection.
	type rewrite struct {
		id   int64
		rest map[string]counter
	}
	var todo []rewrite
	err := s.eachPending(ctx, tx, q, nil, func(r pendingRow, m map[string]counter) error {
		if _, ok := m[name]; ok {
			delete(m, name)
			todo = append(todo, rewrite{r.ID, m})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, w := range todo {
		if len(w.rest) == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM usage_pending_nodes WHERE id = ?`, w.id)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE usage_pending_nodes SET data = ? WHERE id = ?`, encodeCheckpoints(w.rest), w.id)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// packPending moves usage_pending's rows, written by an earlier build, into
// usage_pending_nodes: one row per commit time, a user's rows of one time
// added up (the fold adds them up anyway, and they share the time).
func (s *Store) packPending(ctx context.Context, tx *sqlx.Tx) error {
	byAt, err := groupCounters[int64](ctx, tx, `SELECT at, user_name, up, down FROM usage_pending`)
	if err != nil {
		return err
	}
	for _, at := range slices.Sorted(maps.Keys(byAt)) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO usage_pending_nodes (at, data) VALUES (?, ?)`, at, encodeCheckpoints(byAt[at])); err != nil {
			return err
		}
	}
	return nil
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
