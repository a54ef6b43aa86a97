package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/jmoiron/sqlx"
)

// A node's checkpoints (each user's last committed counter values) are one
// row: a blob of every user's, read and written whole by each commit.
//
// With one row per node and user, an accounting cycle in which every
// series moved read and wrote 500,000 rows at 1,000,000 series: on MySQL
// that was two of the five row operations a series cost. A blob of a
// node's 2,500 users is about 30 KB; the commit decodes it, compares, and
// writes it back once. Only the controller holding the accounting lease
// commits, in the transaction that checks the lease, so nothing else
// writes a node's blob meanwhile.

// checkpointsVersion is the blob's first byte: a later format gets another.
const checkpointsVersion = 1

// encodeCheckpoints writes the checkpoints in name order, each name after
// the part it shares with the one before (names of a fleet share long
// prefixes), then the two values as signed varints (-1: never seen). It
// takes a commit's deltas as they are, so that writing them costs no copy.
func encodeCheckpoints[V interface{ pair() (up, down int64) }](m map[string]V) []byte {
	users := slices.Sorted(maps.Keys(m))
	b := make([]byte, 0, 16+len(users)*12)
	b = append(b, checkpointsVersion)
	b = binary.AppendUvarint(b, uint64(len(users)))
	prev := ""
	for _, u := range users {
		shared := commonPrefix(prev, u)
		b = binary.AppendUvarint(b, uint64(shared))
		b = binary.AppendUvarint(b, uint64(len(u)-shared))
		b = append(b, u[shared:]...)
		up, down := m[u].pair()
		b = binary.AppendVarint(b, up)
		b = binary.AppendVarint(b, down)
		prev = u
	}
	return b
}

// errCheckpoints is a blob this code cannot read: written by hand or by a
// newer boxfleet.
var errCheckpoints = errors.New("node checkpoints unreadable")

// decodeCheckpoints reads what encodeCheckpoints wrote. Anything else is
// an error, never a guess: a wrong checkpoint bills wrong traffic.
func decodeCheckpoints(b []byte) (map[string]counter, error) {
	r := bytes.NewReader(b)
	bad := func(what string) (map[string]counter, error) {
		return nil, fmt.Errorf("%w: %s at byte %d of %d", errCheckpoints, what, len(b)-r.Len(), len(b))
	}
	if v, err := r.ReadByte(); err != nil || v != checkpointsVersion {
		return bad("unknown format")
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(len(b)) {
		return bad("bad count")
	}
	out := make(map[string]counter, n)
	var name []byte
	for i := range n {
		shared, err := binary.ReadUvarint(r)
		if err != nil || shared > uint64(len(name)) {
			return bad("bad name prefix")
		}
		rest, err := binary.ReadUvarint(r)
		if err != nil || rest > uint64(r.Len()) {
			return bad("bad name length")
		}
		next := make([]byte, int(shared)+int(rest))
		copy(next, name[:shared])
		if _, err := io.ReadFull(r, next[shared:]); err != nil {
			return bad("short name")
		}
		if i > 0 && bytes.Compare(next, name) <= 0 {
			return bad("names out of order")
		}
		name = next
		c := counter{user: string(name)}
		if c.up, err = binary.ReadVarint(r); err != nil {
			return bad("bad value")
		}
		if c.down, err = binary.ReadVarint(r); err != nil {
			return bad("bad value")
		}
		out[c.user] = c
	}
	if r.Len() != 0 {
		return bad("trailing bytes")
	}
	return out, nil
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// loadCheckpoints returns a node's checkpoints, empty for a node never
// committed, and whether it had a row.
func (s *Store) loadCheckpoints(ctx context.Context, tx *sqlx.Tx, node string) (map[string]counter, bool, error) {
	var data []byte
	err := tx.QueryRowxContext(ctx, `SELECT data FROM node_checkpoints WHERE node = ?`, node).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return map[string]counter{}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	m, err := decodeCheckpoints(data)
	if err != nil {
		return nil, false, fmt.Errorf("node %s: %w", node, err)
	}
	return m, true, nil
}

// saveCheckpoints writes a node's checkpoints whole.
func (s *Store) saveCheckpoints(ctx context.Context, tx *sqlx.Tx, node string, m map[string]counter, exists bool) error {
	data := encodeCheckpoints(m)
	var err error
	if exists {
		_, err = tx.ExecContext(ctx, `UPDATE node_checkpoints SET data = ? WHERE node = ?`, data, node)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO node_checkpoints (node, data) VALUES (?, ?)`, node, data)
	}
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	return nil
}

// seriesIn counts the series the checkpoints hold.
func seriesIn(m map[string]counter) int {
	n := 0
	for _, c := range m {
		if c.up >= 0 {
			n++
		}
		if c.down >= 0 {
			n++
		}
	}
	return n
}

// packCounters is the migration from one row per node and user (the
// counters table) to one blob per node.
func (s *Store) packCounters(ctx context.Context, tx *sqlx.Tx) error {
	byNode, err := groupCounters[string](ctx, tx, `SELECT node, user_name, up, down FROM counters`)
	if err != nil {
		return err
	}
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		if err := s.saveCheckpoints(ctx, tx, node, byNode[node], false); err != nil {
			return err
		}
	}
	return nil
}

// groupCounters reads rows of (key, user, up, down) into one map of users
// a key, a user's rows of one key added up: the packing migrations turn
// rows a user into one blob a key.
func groupCounters[K cmp.Ordered](ctx context.Context, tx *sqlx.Tx, query string) (map[K]map[string]counter, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byKey := map[K]map[string]counter{}
	for rows.Next() {
		var k K
		var c counter
		if err := rows.Scan(&k, &c.user, &c.up, &c.down); err != nil {
			return nil, err
		}
		if byKey[k] == nil {
			byKey[k] = map[string]counter{}
		}
		prev := byKey[k][c.user]
		byKey[k][c.user] = counter{user: c.user, up: prev.up + c.up, down: prev.down + c.down}
	}
	return byKey, rows.Err()
}
