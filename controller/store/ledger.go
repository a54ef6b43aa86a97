package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Sample is one raw counter value read from Prometheus:
// singbox_user_traffic_bytes_total{node, user, direction}.
type Sample struct {
	User      string
	Direction string // upload or download
	Value     int64
}

// ErrNotLeader means the lease moved to another controller: the commit was
// rolled back so that only the lease holder ever writes the ledger.
var ErrNotLeader = errors.New("lease lost")

// CommitResult says what one node's commit did.
type CommitResult struct {
	Series, Changed, Resets int
	Bytes                   int64
}

type delta struct{ up, down int64 }

// CommitNode turns one node's raw counter values into deltas against the
// stored checkpoints and adds them to the ledger (daily per user and node,
// and the users' current period) in the same transaction as the new
// checkpoints: a crash anywhere either applies a delta once or not at all.
// A value below its checkpoint is a counter reset (the exporter lost its
// state), and then the whole value is new traffic. epoch is when the
// exporter's counters started (0 when unknown): when it differs from the
// one stored, every checkpoint of the node is void, which also catches
// series that vanished with the state and came back above their old value.
// When lease is set, the commit happens only while holder still owns it.
func (s *Store) CommitNode(ctx context.Context, lease, holder, node string, epoch int64, samples []Sample, at time.Time) (CommitResult, error) {
	var res CommitResult
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if lease != "" {
			if err := s.checkLease(ctx, tx, lease, holder); err != nil {
				return err
			}
		}
		old, err := s.checkpoints(ctx, tx, node)
		if err != nil {
			return err
		}
		res = CommitResult{Series: len(samples)}
		newEpoch, err := s.swapEpoch(ctx, tx, node, epoch)
		if err != nil {
			return err
		}
		if newEpoch && len(old) > 0 {
			res.Resets = len(old)
			old = map[string]int64{}
			if _, err := tx.ExecContext(ctx, `DELETE FROM checkpoints WHERE node = ?`, node); err != nil {
				return err
			}
		}
		var changed []Sample
		deltas := map[string]*delta{}
		for _, smp := range samples {
			key := smp.User + "\x00" + smp.Direction
			prev, seen := old[key]
			if seen && smp.Value == prev {
				continue
			}
			d := smp.Value - prev
			if smp.Value < prev {
				d = smp.Value
				res.Resets++
			}
			changed = append(changed, smp)
			if d == 0 {
				continue
			}
			acc := deltas[smp.User]
			if acc == nil {
				acc = &delta{}
				deltas[smp.User] = acc
			}
			if smp.Direction == "upload" {
				acc.up += d
			} else {
				acc.down += d
			}
			res.Bytes += d
		}
		res.Changed = len(changed)
		ex := &preparedTx{ctx: ctx, tx: tx, stmts: map[string]*sql.Stmt{}}
		if err := s.writeCheckpoints(ex, node, changed); err != nil {
			return err
		}
		if err := s.addDaily(ex, node, day(at.Unix()), deltas); err != nil {
			return err
		}
		return s.addPeriodUsage(ex, at.Unix(), deltas)
	})
	return res, err
}

// swapEpoch stores the node's counter epoch and reports whether it replaced
// a different one.
func (s *Store) swapEpoch(ctx context.Context, tx *sqlx.Tx, node string, epoch int64) (bool, error) {
	if epoch == 0 {
		return false, nil
	}
	var cur int64
	err := tx.QueryRowxContext(ctx, `SELECT since FROM node_epochs WHERE node = ?`, node).Scan(&cur)
	switch {
	case err == nil && cur == epoch:
		return false, nil
	case err == nil:
		_, err = tx.ExecContext(ctx, `UPDATE node_epochs SET since = ? WHERE node = ?`, epoch, node)
		return true, err
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO node_epochs (node, since) VALUES (?, ?)`, node, epoch)
		return false, err
	}
	return false, err
}

func (s *Store) checkpoints(ctx context.Context, tx *sqlx.Tx, node string) (map[string]int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT user_name, direction, value FROM checkpoints WHERE node = ?`, node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var u, d string
		var v int64
		if err := rows.Scan(&u, &d, &v); err != nil {
			return nil, err
		}
		out[u+"\x00"+d] = v
	}
	return out, rows.Err()
}

// batch is how many rows go into one multi-row statement: well under both
// back ends' placeholder limits, large enough to amortise round trips.
const batch = 500

// preparedTx prepares each distinct statement once per transaction.
//
// A commit runs the same 500-row statements ten times or so. Prepared once,
// SQLite parses each once (re-parsing cost a sixth of a commit's CPU) and
// MySQL needs one round trip per execution instead of three. The transaction closes the statements.
type preparedTx struct {
	ctx   context.Context
	tx    *sqlx.Tx
	stmts map[string]*sql.Stmt
}

func (p *preparedTx) exec(q string, args ...any) error {
	st := p.stmts[q]
	if st == nil {
		var err error
		if st, err = p.tx.PrepareContext(p.ctx, q); err != nil {
			return err
		}
		p.stmts[q] = st
	}
	_, err := st.ExecContext(p.ctx, args...)
	return err
}

func (s *Store) writeCheckpoints(ex *preparedTx, node string, samples []Sample) error {
	tail := s.upsert([]string{"node", "user_name", "direction"}, "value")
	for start := 0; start < len(samples); start += batch {
		part := samples[start:min(start+batch, len(samples))]
		args := make([]any, 0, 4*len(part))
		for _, smp := range part {
			args = append(args, node, smp.User, smp.Direction, smp.Value)
		}
		q := `INSERT INTO checkpoints (node, user_name, direction, value) VALUES ` + placeholders(len(part), 4) + tail
		if err := ex.exec(q, args...); err != nil {
			return fmt.Errorf("checkpoints: %w", err)
		}
	}
	return nil
}

func (s *Store) addDaily(ex *preparedTx, node string, d int, deltas map[string]*delta) error {
	var tail string
	if s.dialect == mysqlDialect {
		tail = ` ON DUPLICATE KEY UPDATE upload = upload + VALUES(upload), download = download + VALUES(download)`
	} else {
		tail = ` ON CONFLICT(user_name, day, node) DO UPDATE SET upload = upload + excluded.upload, download = download + excluded.download`
	}
	return eachBatch(deltas, func(users []string) error {
		args := make([]any, 0, 5*len(users))
		for _, u := range users {
			args = append(args, u, node, d, deltas[u].up, deltas[u].down)
		}
		return ex.exec(`INSERT INTO usage_daily (user_name, node, day, upload, download) VALUES `+placeholders(len(users), 5)+tail, args...)
	})
}

// addPeriodUsage adds to each user's current-period counters and starts an
// on-hold user's clock at first use, a few hundred users per statement.
//
// The batch is joined as a table and looked up by the unique name: a CASE
// with one branch per user is evaluated branch by branch for every row. The
// first-use update is a statement of its own so that it does not depend on
// the order in which MySQL assigns a multi-table UPDATE's columns.
func (s *Store) addPeriodUsage(ex *preparedTx, now int64, deltas map[string]*delta) error {
	return eachBatch(deltas, func(users []string) error {
		if s.dialect == sqlite {
			return s.addPeriodUsageSQLite(ex, now, users, deltas)
		}
		args := make([]any, 0, 3*len(users))
		for _, u := range users {
			args = append(args, u, deltas[u].up, deltas[u].down)
		}
		// MariaDB's VALUES names its columns after the first row's
		// values, so the table is a UNION.
		q := `UPDATE users u JOIN (SELECT ? AS n, ? AS up, ? AS dn` +
			strings.Repeat(` UNION ALL SELECT ?, ?, ?`, len(users)-1) + `) d ON u.name = d.n
		  SET u.used_up = u.used_up + d.up, u.used_down = u.used_down + d.dn`
		if err := ex.exec(q, args...); err != nil {
			return err
		}
		first := make([]any, 0, 2+len(users))
		first = append(first, now, now)
		for _, u := range users {
			first = append(first, u)
		}
		return ex.exec(`UPDATE users SET
		  expire_at = CASE WHEN expire_at = 0 AND on_hold_seconds > 0 THEN ? + on_hold_seconds ELSE expire_at END,
		  first_used_at = ?
		  WHERE first_used_at = 0 AND name IN `+placeholders(1, len(users)), first...)
	})
}

// addPeriodUsageSQLite starts the on-hold clock in the same statement as
// the usage: SQLite evaluates every SET expression on the row as it was
// before the update, so expire_at sees the old first_used_at.
//
// On SQLite the first-use clock starts in the same statement: a separate
// one would look every user of the batch up a second time.
func (s *Store) addPeriodUsageSQLite(ex *preparedTx, now int64, users []string, deltas map[string]*delta) error {
	args := make([]any, 0, 2+3*len(users))
	args = append(args, now, now)
	for _, u := range users {
		args = append(args, u, deltas[u].up, deltas[u].down)
	}
	return ex.exec(`UPDATE users SET used_up = used_up + d.column2, used_down = used_down + d.column3,
	  expire_at = CASE WHEN first_used_at = 0 AND expire_at = 0 AND on_hold_seconds > 0 THEN ? + on_hold_seconds ELSE expire_at END,
	  first_used_at = CASE WHEN first_used_at = 0 THEN ? ELSE first_used_at END
	  FROM (VALUES `+placeholders(len(users), 3)+`) AS d WHERE users.name = d.column1`, args...)
}

func eachBatch(deltas map[string]*delta, fn func([]string) error) error {
	users := make([]string, 0, min(len(deltas), batch))
	for u := range deltas {
		users = append(users, u)
		if len(users) == batch {
			if err := fn(users); err != nil {
				return err
			}
			users = users[:0]
		}
	}
	if len(users) > 0 {
		return fn(users)
	}
	return nil
}

// placeholders returns "(?,?,…),(…)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

// UsageRow is one day of one user's traffic on one node.
type UsageRow struct {
	User     string `db:"user_name" json:"user"`
	Node     string `db:"node" json:"node"`
	Day      int    `db:"day" json:"day"`
	Upload   int64  `db:"upload" json:"upload_bytes"`
	Download int64  `db:"download" json:"download_bytes"`
}

// Usage returns a user's ledger between two days (yyyymmdd, inclusive).
func (s *Store) Usage(ctx context.Context, user string, from, to int) ([]UsageRow, error) {
	var rows []UsageRow
	err := s.db.SelectContext(ctx, &rows, `SELECT user_name, node, day, upload, download FROM usage_daily
	  WHERE user_name = ? AND day >= ? AND day <= ? ORDER BY day, node`, user, from, to)
	return rows, err
}

// LedgerTotal is the sum of the whole ledger for a user (every day, every
// node), which the accounting tests compare with the true traffic.
func (s *Store) LedgerTotal(ctx context.Context, user string) (up, down int64, err error) {
	row := s.db.QueryRowxContext(ctx, `SELECT COALESCE(SUM(upload), 0), COALESCE(SUM(download), 0) FROM usage_daily WHERE user_name = ?`, user)
	err = row.Scan(&up, &down)
	return up, down, err
}
