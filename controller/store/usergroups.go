package store

import (
	"context"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"
)

// The users list's group filter through an index of membership: one row
// (group, user id) for each of a user's groups, and one with the group ''
// for a user with none, who may use every group (table user_groups,
// migrations 55-57). The filter was a test of each user's groups_csv,
// which read every user to count a page's total (p95 75-165 ms on 100,000
// users on a shared machine); the count of a group is now a read of this
// table's key, and a page reads only the members. Like user_grams it is
// written in the transaction that writes the user's groups, and
// RebuildUserSearch rebuilds both.

// groupRows is the index's groups of a user: its groups, or ” when it
// has none. An empty element of a malformed list is no group: the list's
// test (INSTR of ",group,") never matches one.
func groupRows(csv string) []string {
	if csv == "" {
		return []string{""}
	}
	var out []string
	for g := range strings.SplitSeq(csv, ",") {
		if g != "" && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// indexGroups rewrites the group rows of user id as written in tx.
func (s *Store) indexGroups(ctx context.Context, tx *sqlx.Tx, id int64, csv string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_groups WHERE user_id = ?`, id); err != nil {
		return err
	}
	return s.insertGroups(ctx, tx, map[int64]string{id: csv}, false)
}

// insertGroups writes the group rows of users by id; with dupsOK a row
// there already is kept (the rebuild).
func (s *Store) insertGroups(ctx context.Context, ex sqlx.ExecerContext, users map[int64]string, dupsOK bool) error {
	var args []any
	for id, csv := range users {
		for _, g := range groupRows(csv) {
			args = append(args, g, id)
		}
	}
	for len(args) > 0 {
		n := min(len(args), 1000)
		q := `INSERT INTO user_groups (grp, user_id) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?),", n/2), ",")
		if dupsOK && s.dialect == mysqlDialect {
			q += ` ON DUPLICATE KEY UPDATE user_id = user_id`
		} else if dupsOK {
			q += ` ON CONFLICT DO NOTHING`
		}
		if _, err := ex.ExecContext(ctx, q, args[:n]...); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}

// rebuildUserGroups fills user_groups from the users table.
func (s *Store) rebuildUserGroups(ctx context.Context, ex sqlx.ExtContext) error {
	if _, err := ex.ExecContext(ctx, `DELETE FROM user_groups`); err != nil {
		return err
	}
	var after int64
	for {
		var rows []struct {
			ID     int64  `db:"id"`
			Groups string `db:"groups_csv"`
		}
		if err := sqlx.SelectContext(ctx, ex, &rows, `SELECT id, groups_csv FROM users WHERE id > ? ORDER BY id LIMIT 1000`, after); err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		users := make(map[int64]string, len(rows))
		for _, r := range rows {
			users[r.ID] = r.Groups
		}
		if err := s.insertGroups(ctx, ex, users, true); err != nil {
			return err
		}
		after = rows[len(rows)-1].ID
	}
}

// groupCond is the group filter's condition: the members of group and the
// users with no group. A group with a comma in it (no group has one) is
// left to the list's own test, whose meaning for it the index does not
// copy. On SQLite the unary + keeps the planner from reading the members
// first and sorting them all (30 ms for 10,000): it reads the sort's index
// in order and tests membership, stopping after a page (9 ms).
func (s *Store) groupCond(group string) (string, []any) {
	if strings.Contains(group, ",") {
		return "(groups_csv = '' OR INSTR(CONCAT(',', groups_csv, ','), ?) > 0)", []any{"," + group + ","}
	}
	id := "id"
	if s.dialect == sqlite {
		id = "+id"
	}
	return id + " IN (SELECT user_id FROM user_groups WHERE grp IN ('', ?))", []any{group}
}

// groupOnly says whether f filters by group and nothing else, so that its
// count is the index's alone.
func (s *Store) groupOnly(f UserFilter) bool {
	return f.Group != "" && !strings.Contains(f.Group, ",") && s.owner == "" && f.Status == "" && f.Plan == "" &&
		f.Search == "" && !f.Over90 && f.ExpiringWithin == 0 && !f.OverDevices
}
