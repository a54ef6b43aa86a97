package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	// Older counts series read below their checkpoint under a known
	// epoch: kept out of the ledger (see step), but worth a warning.
	Older int
	Bytes int64
}

type delta struct{ up, down int64 }

// pair gives encodeCheckpoints the two values it writes.
func (d *delta) pair() (up, down int64) { return d.up, d.down }

// ErrEpochMoved refuses a partial commit whose epoch is not the node's
// stored one: only a read of every series can follow a new epoch.
var ErrEpochMoved = errors.New("the node's counter epoch is not the stored one")

// NodeCommit is one node's counters read from Prometheus.
type NodeCommit struct {
	Lease, Holder string // when Lease is set, commit only while Holder owns it
	Node          string
	Epoch         int64 // when the exporter's counters started; 0 unknown
	Samples       []Sample
	// Partial: Samples hold only the series that may differ from their
	// checkpoints (those that moved since the node's cursor); every other
	// series of the node is unchanged. Refused with ErrEpochMoved unless
	// Epoch is the stored epoch.
	Partial bool
	// Scraped is the timestamp (ms) of the scrape the samples come from,
	// stored as the node's cursor (NodeCursors); 0 when unknown.
	Scraped int64
	At      time.Time
	// FoldNow adds the commit's traffic to the users' period usage in
	// the commit itself. Otherwise it waits in usage_pending_nodes for the next
	// FoldUsage, which the accountant's sweep runs after its commits.
	FoldNow bool
}

// NodeCursor is what the last commit of a node read.
type NodeCursor struct {
	Epoch   int64
	Scraped int64 // ms; 0 unknown
}

// NodeCursors returns every node's epoch and cursor.
func (s *Store) NodeCursors(ctx context.Context) (map[string]NodeCursor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, since, scraped_ms FROM node_epochs`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]NodeCursor{}
	for rows.Next() {
		var n string
		var c NodeCursor
		if err := rows.Scan(&n, &c.Epoch, &c.Scraped); err != nil {
			return nil, err
		}
		out[n] = c
	}
	return out, rows.Err()
}

// CommitNode commits every series of a node (see Commit), its traffic
// added to the users' period usage at once.
func (s *Store) CommitNode(ctx context.Context, lease, holder, node string, epoch int64, samples []Sample, at time.Time) (CommitResult, error) {
	return s.Commit(ctx, NodeCommit{Lease: lease, Holder: holder, Node: node, Epoch: epoch, Samples: samples, At: at, FoldNow: true})
}

// counter is one node and user's checkpoint: the last value of each
// direction, -1 for a direction never seen.
type counter struct {
	user     string
	up, down int64
}

// pair gives encodeCheckpoints the two values it writes.
func (c counter) pair() (up, down int64) { return c.up, c.down }

// MoveCursors moves the cursors of nodes none of whose series moved since
// them forward to a later scrape, all in one transaction under the lease:
// a quiet fleet's refreshes then cost a commit a cycle, not one a node. A
// cursor whose epoch is no longer the one given, or that is at the scrape
// or past it already, stays.
func (s *Store) MoveCursors(ctx context.Context, lease, holder string, moves map[string]NodeCursor) error {
	if len(moves) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		if err := s.checkLease(ctx, tx, lease, holder); err != nil {
			return err
		}
		ex := &preparedTx{ctx: ctx, tx: tx, stmts: map[string]*sql.Stmt{}}
		// In name order: MySQL takes the rows' locks in one order.
		for _, n := range slices.Sorted(maps.Keys(moves)) {
			c := moves[n]
			if err := ex.exec(`UPDATE node_epochs SET scraped_ms = ? WHERE node = ? AND since = ? AND scraped_ms < ?`, c.Scraped, n, c.Epoch, c.Scraped); err != nil {
				return err
			}
		}
		return nil
	})
}

// Commit turns one node's raw counter values into deltas against the
// stored checkpoints and adds them to the ledger (daily per user and node,
// and the users' current period) in the same transaction as the new
// checkpoints and the node's cursor: a crash anywhere either applies a
// delta once or not at all. A value below its checkpoint is a counter
// reset (the exporter lost its state), and then the whole value is new
// traffic. When the epoch differs from the one stored, every checkpoint of
// the node is void, which also catches series that vanished with the
// state and came back above their old value.
func (s *Store) Commit(ctx context.Context, c NodeCommit) (CommitResult, error) {
	res, err := s.CommitNodes(ctx, []NodeCommit{c})
	if err != nil {
		return CommitResult{}, err
	}
	return res[0], nil
}

// CommitNodes commits several nodes as Commit does, all in one
// transaction: all of them or none. A cycle in which a tenth of the
// series moved commits every node with a few hundred rows each, and there
// the transaction itself (its start, the lease check, its COMMIT) cost
// about a third of each node's commit on MySQL. The lease is checked once,
// so every commit must name the same lease and holder. An error names the
// node it came from.
func (s *Store) CommitNodes(ctx context.Context, cs []NodeCommit) ([]CommitResult, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	for _, c := range cs[1:] {
		if c.Lease != cs[0].Lease || c.Holder != cs[0].Holder {
			return nil, fmt.Errorf("node %s: committed under lease %q held by %q beside node %s's %q held by %q: one transaction checks one lease",
				c.Node, c.Lease, c.Holder, cs[0].Node, cs[0].Lease, cs[0].Holder)
		}
	}
	out := make([]CommitResult, len(cs))
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if cs[0].Lease != "" {
			if err := s.checkLease(ctx, tx, cs[0].Lease, cs[0].Holder); err != nil {
				return err
			}
		}
		ex := &preparedTx{ctx: ctx, tx: tx, stmts: map[string]*sql.Stmt{}}
		for i, c := range cs {
			var err error
			if out[i], err = s.commitIn(ctx, ex, c); err != nil {
				return fmt.Errorf("node %s: %w", c.Node, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// commitIn is one node's part of a commit, inside the transaction ex.
func (s *Store) commitIn(ctx context.Context, ex *preparedTx, c NodeCommit) (CommitResult, error) {
	tx := ex.tx
	res := CommitResult{Series: len(c.Samples)}
	cur, found, err := s.nodeCursor(ctx, tx, c.Node)
	if err != nil {
		return res, err
	}
	if c.Partial && (c.Epoch == 0 || !found || cur.Epoch != c.Epoch) {
		return res, ErrEpochMoved
	}
	// The samples, one row per user.
	byUser := make(map[string]int, len(c.Samples)/2+1)
	rows := make([]counter, 0, len(c.Samples)/2+1)
	for _, smp := range c.Samples {
		i, ok := byUser[smp.User]
		if !ok {
			i = len(rows)
			byUser[smp.User] = i
			rows = append(rows, counter{user: smp.User, up: -1, down: -1})
		}
		if smp.Direction == "upload" {
			rows[i].up = smp.Value
		} else {
			rows[i].down = smp.Value
		}
	}
	// The node's checkpoints, all of them, updated in place below: a
	// commit that holds only some series leaves the others as they are.
	cps, exists, err := s.loadCheckpoints(ctx, tx, c.Node)
	if err != nil {
		return res, err
	}
	if c.Epoch != 0 && found && cur.Epoch != c.Epoch {
		// A new epoch voids every checkpoint of the node.
		res.Resets = seriesIn(cps)
		cps = make(map[string]counter, len(rows))
	}
	changed := 0
	deltas := map[string]*delta{}
	for _, r := range rows {
		prev, seen := cps[r.user]
		if !seen {
			prev = counter{user: r.user, up: -1, down: -1}
		}
		next, moved := prev, false
		var d delta
		if r.up >= 0 {
			var dirMoved bool
			if d.up, dirMoved = s.step(&res, prev.up, r.up, c.Epoch != 0); dirMoved {
				moved, next.up = true, r.up
			}
		}
		if r.down >= 0 {
			var dirMoved bool
			if d.down, dirMoved = s.step(&res, prev.down, r.down, c.Epoch != 0); dirMoved {
				moved, next.down = true, r.down
			}
		}
		if !moved {
			continue
		}
		cps[r.user] = next
		changed++
		if d.up == 0 && d.down == 0 {
			continue
		}
		deltas[r.user] = &delta{up: d.up, down: d.down}
		res.Bytes += d.up + d.down
	}
	if changed > 0 || res.Resets > 0 {
		if err := s.saveCheckpoints(ctx, tx, c.Node, cps, exists); err != nil {
			return res, err
		}
	}
	if err := s.addDaily(ex, c.Node, day(c.At.Unix()), deltas); err != nil {
		return res, err
	}
	addUsage := s.addPending
	if c.FoldNow || s.FoldEachCommit {
		addUsage = s.addPeriodUsage
	}
	if err := addUsage(ex, c.At.Unix(), deltas); err != nil {
		return res, err
	}
	return res, s.writeCursor(ctx, tx, c, cur, found)
}

// step compares one series' value with its checkpoint (-1: never seen):
// the traffic it adds and whether the checkpoint must change.
//
// Under a known epoch (the checkpoints were voided if it changed), a value
// below the checkpoint is not a reset, which would have come with a new
// epoch, but an older reading: a metrics backend that crashed and lost its
// last seconds of samples (VictoriaMetrics flushes every few seconds)
// answers counters below what the last cycle committed. The checkpoint
// stays; counting the value as new traffic would add it twice. Without an
// epoch, a lower value is all a reset can look like.
func (s *Store) step(res *CommitResult, prev, v int64, epochKnown bool) (int64, bool) {
	if prev >= 0 && v == prev {
		return 0, false
	}
	if epochKnown && v < prev {
		res.Older++
		return 0, false
	}
	res.Changed++
	if v < prev {
		res.Resets++
		return v, true
	}
	return v - max(prev, 0), true
}

func (s *Store) nodeCursor(ctx context.Context, tx *sqlx.Tx, node string) (NodeCursor, bool, error) {
	var c NodeCursor
	err := tx.QueryRowxContext(ctx, `SELECT since, scraped_ms FROM node_epochs WHERE node = ?`, node).Scan(&c.Epoch, &c.Scraped)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	return c, err == nil, err
}

// writeCursor stores the node's epoch and cursor when they changed. An
// unknown epoch keeps the stored one but voids the cursor.
func (s *Store) writeCursor(ctx context.Context, tx *sqlx.Tx, c NodeCommit, cur NodeCursor, found bool) error {
	next := NodeCursor{Epoch: c.Epoch, Scraped: c.Scraped}
	if c.Epoch == 0 {
		next = NodeCursor{Epoch: cur.Epoch}
	}
	var err error
	switch {
	case !found && c.Epoch != 0:
		_, err = tx.ExecContext(ctx, `INSERT INTO node_epochs (node, since, scraped_ms) VALUES (?, ?, ?)`, c.Node, next.Epoch, next.Scraped)
	case found && next != cur:
		_, err = tx.ExecContext(ctx, `UPDATE node_epochs SET since = ?, scraped_ms = ? WHERE node = ?`, next.Epoch, next.Scraped, c.Node)
	}
	return err
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

func (s *Store) addDaily(ex *preparedTx, node string, d int, deltas map[string]*delta) error {
	var tail string
	if s.dialect == mysqlDialect {
		tail = ` ON DUPLICATE KEY UPDATE upload = upload + VALUES(upload), download = download + VALUES(download)`
	} else {
		tail = ` ON CONFLICT(day, node, user_name) DO UPDATE SET upload = upload + excluded.upload, download = download + excluded.download`
	}
	return eachBatch(deltas, func(users []string) error {
		args := make([]any, 0, 5*len(users))
		for _, u := range users {
			args = append(args, u, node, d, deltas[u].up, deltas[u].down)
		}
		return ex.exec(`INSERT INTO usage_days (user_name, node, day, upload, download) VALUES `+placeholders(len(users), 5)+tail, args...)
	})
}

// addPeriodUsage adds to each user's current-period counters and starts
// an on-hold user's clock at first use, a few hundred users per statement.
//
// The batch is joined as a table and looked up by the unique name: a CASE
// with one branch per user is evaluated branch by branch for every row.
// MySQL does not say in which order a multi-table UPDATE assigns its
// columns, so expire_at's test accepts first_used_at both as it was (0)
// and as this statement sets it (now); a user whose first use was already
// stamped at this very second has its expiry set already and keeps it.
// One statement instead of a second pass over the batch for the clock:
// that pass cost a quarter of a MariaDB commit.
func (s *Store) addPeriodUsage(ex *preparedTx, now int64, deltas map[string]*delta) error {
	return eachBatch(deltas, func(users []string) error {
		if s.dialect == sqlite {
			return s.addPeriodUsageSQLite(ex, now, users, deltas)
		}
		args := make([]any, 0, 3*len(users)+3)
		for _, u := range users {
			args = append(args, u, deltas[u].up, deltas[u].down)
		}
		args = append(args, now, now, now)
		q := `UPDATE users u JOIN ` + unionTable(len(users), "n", "up", "dn") + ` d ON u.name = d.n
		  SET u.used_up = u.used_up + d.up, u.used_down = u.used_down + d.dn,
		  u.expire_at = CASE WHEN u.first_used_at IN (0, ?) AND u.expire_at = 0 AND u.on_hold_seconds > 0 THEN ? + u.on_hold_seconds ELSE u.expire_at END,
		  u.first_used_at = CASE WHEN u.first_used_at = 0 THEN ? ELSE u.first_used_at END`
		return ex.exec(q, args...)
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

// eachBatch calls fn with the users of deltas in name order, batch at a
// time: a batch then holds neighbouring keys of the ledger (a commit's
// rows sit together under its day and node), and MySQL takes the rows'
// locks in one order in every commit.
func eachBatch(deltas map[string]*delta, fn func([]string) error) error {
	users := slices.Sorted(maps.Keys(deltas))
	for start := 0; start < len(users); start += batch {
		if err := fn(users[start:min(start+batch, len(users))]); err != nil {
			return err
		}
	}
	return nil
}

// unionTable is a derived table of rows rows of placeholders, its columns
// named: MariaDB's VALUES names its columns after the first row's values,
// so a table to join is a UNION.
func unionTable(rows int, cols ...string) string {
	first := make([]string, len(cols))
	for i, c := range cols {
		first[i] = "? AS " + c
	}
	return `(SELECT ` + strings.Join(first, ", ") +
		strings.Repeat(` UNION ALL SELECT `+strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "), rows-1) + `)`
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
	err := s.db.SelectContext(ctx, &rows, `SELECT user_name, node, day, upload, download FROM usage_days
	  WHERE user_name = ? AND day >= ? AND day <= ? ORDER BY day, node`, user, from, to)
	return rows, err
}

// LedgerTotal is the sum of the whole ledger for a user (every day, every
// node), which the accounting tests compare with the true traffic.
func (s *Store) LedgerTotal(ctx context.Context, user string) (up, down int64, err error) {
	row := s.db.QueryRowxContext(ctx, `SELECT COALESCE(SUM(upload), 0), COALESCE(SUM(download), 0) FROM usage_days WHERE user_name = ?`, user)
	err = row.Scan(&up, &down)
	return up, down, err
}
