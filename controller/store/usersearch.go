package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
)

// The users list's substring search, through an index of trigrams: every
// run of three characters of each user's lowered name and note, with the
// user's id (table user_grams, migrations 51-54). A
// user whose name or note contains the search contains each of its
// trigrams, so the users holding the search's rarest trigrams are a
// superset of the matches, and the search's own LIKE (unchanged) keeps
// only the matches among them: a few hundred rows read instead of every
// user. The index only narrows; it never decides a match, so it changes
// no result as long as it holds every trigram of every user.
//
// It is written in the transaction that writes the user's name or note
// (CreateUser, mutateUser, DeleteUser), so it is never behind. The text
// is lowered by the database, as the search's LIKE compares it, not by
// Go: on MySQL LOWER of the column (Go's case mapping differs for a few
// characters); on SQLite, whose LIKE and LOWER both ignore the case of
// ASCII letters only, LOWER folds exactly what the LIKE folds. The search
// itself is lowered by Go, as the LIKE's pattern always was, so its
// trigrams are three characters of that pattern. Trigrams are the UTF-8
// bytes of three characters, so any script works (Chinese, Persian,
// Russian alike) and no collation takes part.

const (
	// A trigram held by more users than gramCap does not narrow enough to
	// beat the scan; when every trigram of a search is that common (a
	// search for "user" among users named user…), the search scans as it
	// did before the index. Counting stops at a cap, so finding the
	// rarest trigrams reads at most that many entries of each: first
	// gramFirstCap, which a search for a name or a word of a note usually
	// passes (2 ms at worst on 100,000 users), and gramCap only when no
	// trigram was that rare.
	gramFirstCap = 300
	gramCap      = 3000
	// searchGrams is the most trigrams of one search that are counted:
	// any subset of a search's trigrams gives a superset of its matches,
	// so a long search needs no more to be narrow.
	searchGrams = 12
	// joinGrams is how many of the rarest trigrams the candidates must all
	// hold: each more costs one index lookup per candidate of the rarest.
	joinGrams = 3
)

// trigrams returns the distinct runs of three characters of s, in order of
// first appearance.
func trigrams(s string) []string {
	var starts []int
	for i := range s {
		starts = append(starts, i)
	}
	var out []string
	seen := map[string]bool{}
	for i := 0; i+2 < len(starts); i++ {
		end := len(s)
		if i+3 < len(starts) {
			end = starts[i+3]
		}
		if g := s[starts[i]:end]; !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// indexUser rewrites the trigrams of user id from its row as written in
// tx.
func (s *Store) indexUser(ctx context.Context, tx *sqlx.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_grams WHERE user_id = ?`, id); err != nil {
		return err
	}
	var r struct {
		Name string `db:"name"`
		Note string `db:"note"`
	}
	if err := tx.GetContext(ctx, &r, `SELECT LOWER(name) AS name, LOWER(note) AS note FROM users WHERE id = ?`, id); err != nil {
		return err
	}
	return s.insertGrams(ctx, tx, map[int64][]string{id: userGrams(r.Name, r.Note)}, false)
}

// unindexUser drops the index rows of a deleted user.
func (s *Store) unindexUser(ctx context.Context, tx *sqlx.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_grams WHERE user_id = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM user_groups WHERE user_id = ?`, id)
	return err
}

// userGrams is the distinct trigrams of a user's lowered name and note.
// Not of the two joined: a search matches one or the other.
func userGrams(name, note string) []string {
	gs := trigrams(name)
	seen := make(map[string]bool, len(gs))
	for _, g := range gs {
		seen[g] = true
	}
	for _, g := range trigrams(note) {
		if !seen[g] {
			seen[g] = true
			gs = append(gs, g)
		}
	}
	return gs
}

// insertGrams writes trigrams by user, a few hundred rows a statement;
// with dupsOK a row there already is kept (the rebuild).
func (s *Store) insertGrams(ctx context.Context, ex sqlx.ExecerContext, grams map[int64][]string, dupsOK bool) error {
	const rows = 500
	tail := ""
	if dupsOK && s.dialect == mysqlDialect {
		tail = ` ON DUPLICATE KEY UPDATE user_id = user_id`
	} else if dupsOK {
		tail = ` ON CONFLICT DO NOTHING`
	}
	args := make([]any, 0, 2*rows)
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		q := `INSERT INTO user_grams (gram, user_id) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?),", len(args)/2), ",") + tail
		_, err := ex.ExecContext(ctx, q, args...)
		args = args[:0]
		return err
	}
	for id, gs := range grams {
		for _, g := range gs {
			args = append(args, []byte(g), id)
			if len(args) == 2*rows {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// RebuildUserSearch rebuilds the indexes of the users list's search and
// group filter from every user. The store keeps the
// index itself; this is for users written around it: an import made with
// SQL, a restore of the users table alone, rows a controller older than
// the index wrote while a newer one ran beside it (an upgrade of several
// controllers one at a time).
func (s *Store) RebuildUserSearch(ctx context.Context) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		if err := s.rebuildUserGrams(ctx, tx); err != nil {
			return err
		}
		return s.rebuildUserGroups(ctx, tx)
	})
}

// rebuildUserGrams fills user_grams from the users table, a thousand
// users at a time. A user written meanwhile by a store that indexes it
// may already have its rows: duplicates are kept once.
func (s *Store) rebuildUserGrams(ctx context.Context, ex sqlx.ExtContext) error {
	if _, err := ex.ExecContext(ctx, `DELETE FROM user_grams`); err != nil {
		return err
	}
	const page = 1000
	var after int64
	for {
		var rows []struct {
			ID   int64  `db:"id"`
			Name string `db:"name"`
			Note string `db:"note"`
		}
		if err := sqlx.SelectContext(ctx, ex, &rows, `SELECT id, LOWER(name) AS name, LOWER(note) AS note FROM users
		  WHERE id > ? ORDER BY id LIMIT ?`, after, page); err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		grams := make(map[int64][]string, len(rows))
		for _, r := range rows {
			grams[r.ID] = userGrams(r.Name, r.Note)
		}
		if err := s.insertGrams(ctx, ex, grams, true); err != nil {
			return err
		}
		after = rows[len(rows)-1].ID
	}
}

// searchCandidates returns a condition that narrows a search for lowered
// (the search as the LIKE gets it, unescaped) to the users holding its
// rarest trigrams; ok is false when the index cannot narrow it (under
// three characters, or every trigram common) and the LIKE alone must
// scan.
func (s *Store) searchCandidates(ctx context.Context, lowered string) (cond string, args []any, ok bool, err error) {
	if !utf8.ValidString(lowered) {
		return "", nil, false, nil
	}
	gs := trigrams(lowered)
	if len(gs) == 0 {
		return "", nil, false, nil
	}
	if len(gs) > searchGrams {
		// Spread over the search: its ends and middle, not just its start.
		picked := make([]string, searchGrams)
		for i := range picked {
			picked[i] = gs[i*(len(gs)-1)/(searchGrams-1)]
		}
		gs = picked
	}
	counts, err := s.countGrams(ctx, gs, gramFirstCap)
	if err == nil && slices.Min(counts) > gramFirstCap {
		counts, err = s.countGrams(ctx, gs, gramCap)
	}
	if err != nil {
		return "", nil, false, err
	}
	order := make([]int, len(gs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return counts[a] - counts[b] })
	if counts[order[0]] > gramCap {
		return "", nil, false, nil
	}
	order = order[:min(joinGrams, len(order))]
	// The rarest drives; each other is one primary-key lookup per
	// candidate. MySQL's planner finds the rarest by itself; SQLite's,
	// which has no statistics of this table, is told by CROSS JOIN,
	// which keeps the order written.
	join := " JOIN "
	if s.dialect == sqlite {
		join = " CROSS JOIN "
	}
	var q strings.Builder
	q.WriteString(`id IN (SELECT g0.user_id FROM user_grams AS g0`)
	for i := 1; i < len(order); i++ {
		fmt.Fprintf(&q, `%suser_grams AS g%d ON g%d.gram = ? AND g%d.user_id = g0.user_id`, join, i, i, i)
		args = append(args, []byte(gs[order[i]]))
	}
	q.WriteString(` WHERE g0.gram = ?)`)
	args = append(args, []byte(gs[order[0]]))
	return q.String(), args, true, nil
}

// countGrams counts the users holding each trigram, up to limit+1: one
// statement, each count a short read of the index.
func (s *Store) countGrams(ctx context.Context, gs []string, limit int) ([]int, error) {
	parts := make([]string, len(gs))
	args := make([]any, 0, 2*len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprintf(`(SELECT COUNT(*) FROM (SELECT 1 FROM user_grams WHERE gram = ? LIMIT ?) AS c%d)`, i)
		args = append(args, []byte(g), limit+1)
	}
	counts := make([]int, len(gs))
	dest := make([]any, len(gs))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := s.db.QueryRowxContext(ctx, `SELECT `+strings.Join(parts, ", "), args...).Scan(dest...); err != nil {
		return nil, err
	}
	return counts, nil
}
