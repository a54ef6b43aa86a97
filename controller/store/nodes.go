package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// Node is a proxy server as the controller knows it.
type Node struct {
	Name        string             `json:"name"`
	Address     string             `json:"address"`
	Exporter    string             `json:"exporter"`
	Labels      map[string]string  `json:"labels"`
	Inbounds    []sbconfig.Inbound `json:"inbounds"`
	Version     string             `json:"version,omitempty"`
	Drained     bool               `json:"drained"`
	DrainReason string             `json:"drain_reason,omitempty"`
	DrainedBy   string             `json:"drained_by,omitempty"`
	LastSeen    *time.Time         `json:"last_seen,omitempty"`
	CreatedAt   time.Time          `json:"created_at"`
	UpdatedAt   time.Time          `json:"updated_at"`
}

// Group is the node's "group" label, which decides which users it serves.
func (n *Node) Group() string { return n.Labels["group"] }

type nodeRow struct {
	ID          int64  `db:"id"`
	Name        string `db:"name"`
	TokenHash   string `db:"token_hash"`
	Address     string `db:"address"`
	Exporter    string `db:"exporter"`
	Labels      string `db:"labels_json"`
	Inbounds    string `db:"inbounds_json"`
	Version     string `db:"version"`
	Drained     bool   `db:"drained"`
	DrainReason string `db:"drain_reason"`
	DrainedBy   string `db:"drained_by"`
	LastSeen    int64  `db:"last_seen"`
	CreatedAt   int64  `db:"created_at"`
	UpdatedAt   int64  `db:"updated_at"`
}

const nodeCols = `id, name, token_hash, address, exporter, labels_json, inbounds_json, version, drained,
  drain_reason, drained_by, last_seen, created_at, updated_at`

func (r *nodeRow) node() *Node {
	n := &Node{
		Name: r.Name, Address: r.Address, Exporter: r.Exporter, Version: r.Version,
		Drained: r.Drained, DrainReason: r.DrainReason, DrainedBy: r.DrainedBy,
		LastSeen: optUnix(r.LastSeen), CreatedAt: unix(r.CreatedAt), UpdatedAt: unix(r.UpdatedAt),
		Labels: map[string]string{}, Inbounds: []sbconfig.Inbound{},
	}
	// Both columns are written only by this package from marshalled values.
	_ = json.Unmarshal([]byte(r.Labels), &n.Labels)
	_ = json.Unmarshal([]byte(r.Inbounds), &n.Inbounds)
	return n
}

// HashToken is how tokens are stored: a leaked database does not leak
// working credentials. Tokens are random, so a fast hash suffices.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// CreateNode adds a node and returns it with its token, shown only now.
func (s *Store) CreateNode(ctx context.Context, actor, name string, labels map[string]string) (*Node, string, error) {
	if !ValidName(name) {
		return nil, "", invalid("name", "must match %s", nameRE)
	}
	if err := validLabels(labels); err != nil {
		return nil, "", err
	}
	token := NewToken()
	lb, _ := json.Marshal(nonNil(labels))
	now := s.now()
	r := &nodeRow{Name: name, TokenHash: HashToken(token), Labels: string(lb), Inbounds: "[]", CreatedAt: now, UpdatedAt: now}
	var n *Node
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.NamedExecContext(ctx, `INSERT INTO nodes (name, token_hash, address, exporter, labels_json,
		  inbounds_json, version, drained, drain_reason, drained_by, last_seen, created_at, updated_at)
		  VALUES (:name, :token_hash, '', '', :labels_json, :inbounds_json, '', 0, '', '', 0, :created_at, :updated_at)`, r)
		if err != nil {
			if isDuplicate(err) {
				return ErrConflict
			}
			return err
		}
		n = r.node()
		return s.changed(ctx, tx, actor, "node.create", "node", name, nil, n, "")
	})
	return n, token, err
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func validLabels(labels map[string]string) error {
	for k, v := range labels {
		if !labelNameOK(k) || k == "node" || k == "__address__" {
			return invalid("labels", "%q is not a usable label name", k)
		}
		if len(v) > 255 {
			return invalid("labels", "value of %q longer than 255 bytes", k)
		}
	}
	return nil
}

func labelNameOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s[0] != '_' || len(s) < 2 || s[1] != '_'
}

func (s *Store) getNodeRow(ctx context.Context, q sqlx.QueryerContext, name string) (*nodeRow, error) {
	var r nodeRow
	if err := sqlx.GetContext(ctx, q, &r, `SELECT `+nodeCols+` FROM nodes WHERE name = ?`, name); err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

// GetNode returns one node.
func (s *Store) GetNode(ctx context.Context, name string) (*Node, error) {
	r, err := s.getNodeRow(ctx, s.db, name)
	if err != nil {
		return nil, err
	}
	return r.node(), nil
}

// ListNodes returns every node by name.
func (s *Store) ListNodes(ctx context.Context) ([]*Node, error) {
	var rows []nodeRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+nodeCols+` FROM nodes ORDER BY name`); err != nil {
		return nil, err
	}
	out := make([]*Node, len(rows))
	for i := range rows {
		out[i] = rows[i].node()
	}
	return out, nil
}

// NodeNameForToken finds which node a token belongs to ("" for none).
func (s *Store) NodeNameForToken(ctx context.Context, token string) (string, error) {
	var name string
	err := s.db.GetContext(ctx, &name, `SELECT name FROM nodes WHERE token_hash = ?`, HashToken(token))
	if errors.Is(notFound(err), ErrNotFound) {
		return "", nil
	}
	return name, err
}

// RegisterNode records what a node's exporter reported. Only changes of
// address, labels or inbounds go to the audit log; heartbeats just move
// last_seen.
func (s *Store) RegisterNode(ctx context.Context, name string, reg sbconfig.Registration) (*Node, error) {
	if err := validLabels(reg.Labels); err != nil {
		return nil, err
	}
	if len(reg.Address) > 255 || len(reg.Exporter) > 255 || len(reg.Version) > 64 {
		return nil, invalid("address", "address, exporter or version too long")
	}
	if reg.Address != "" && !sbconfig.ValidHost(reg.Address) {
		return nil, invalid("address", "must be a host name or an IP address, without port or brackets")
	}
	if reg.Inbounds == nil {
		reg.Inbounds = []sbconfig.Inbound{}
	}
	ib, err := json.Marshal(reg.Inbounds)
	if err != nil {
		return nil, invalid("inbounds", "%v", err)
	}
	var n *Node
	err = s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getNodeRow(ctx, tx, name)
		if err != nil {
			return err
		}
		before := r.node()
		now := s.now()
		// Reported labels add to and override the ones the admin gave at
		// `node add`; an exporter started without --node.label must not
		// silently move the node out of its group.
		labels := maps.Clone(before.Labels)
		maps.Copy(labels, reg.Labels)
		lb, _ := json.Marshal(labels)
		changed := r.Address != reg.Address || r.Exporter != reg.Exporter || r.Labels != string(lb) ||
			r.Inbounds != string(ib) || r.Version != reg.Version
		r.Address, r.Exporter, r.Labels, r.Inbounds, r.Version, r.LastSeen = reg.Address, reg.Exporter, string(lb), string(ib), reg.Version, now
		if changed {
			r.UpdatedAt = now
		}
		if _, err := tx.NamedExecContext(ctx, `UPDATE nodes SET address = :address, exporter = :exporter,
		  labels_json = :labels_json, inbounds_json = :inbounds_json, version = :version,
		  last_seen = :last_seen, updated_at = :updated_at WHERE id = :id`, r); err != nil {
			return err
		}
		n = r.node()
		if !changed {
			return nil
		}
		// A node's group decides which users it serves: a change is a
		// change of its user set.
		if before.Group() != n.Group() {
			if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = value + 1 WHERE name = 'users_revision'`); err != nil {
				return err
			}
		}
		return s.appendEvent(ctx, tx, "node:"+name, "node.register", "node", name, before, n, "")
	})
	return n, err
}

// touchBatch is how many nodes one TouchNodes statement moves: three
// placeholders a node stays far below both back ends' limits.
const touchBatch = 500

// TouchNodes moves the nodes' last_seen to the given times, as heartbeats
// that change nothing else would, in one statement per touchBatch nodes
// instead of one transaction per node. Names of nodes that do not exist
// (deleted meanwhile) are skipped, and last_seen never moves back: a
// registration written since the heartbeat keeps its newer time.
func (s *Store) TouchNodes(ctx context.Context, seen map[string]time.Time) error {
	names := slices.Sorted(maps.Keys(seen)) // the same lock order in every statement
	// Both back ends have a two-argument "larger of": MySQL's GREATEST,
	// SQLite's scalar MAX.
	greatest := "MAX"
	if s.dialect == mysqlDialect {
		greatest = "GREATEST"
	}
	for batch := range slices.Chunk(names, touchBatch) {
		var q strings.Builder
		args := make([]any, 0, 3*len(batch))
		q.WriteString("UPDATE nodes SET last_seen = " + greatest + "(last_seen, CASE name")
		for _, name := range batch {
			// Unix seconds, as RegisterNode writes last_seen.
			q.WriteString(" WHEN ? THEN ?")
			args = append(args, name, seen[name].Unix())
		}
		q.WriteString(" ELSE last_seen END) WHERE name IN (?" + strings.Repeat(", ?", len(batch)-1) + ")")
		for _, name := range batch {
			args = append(args, name)
		}
		if _, err := s.w.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// SetDrained drains or restores a node. It reports whether anything
// changed, so repeated requests are no-ops and are not audited twice.
func (s *Store) SetDrained(ctx context.Context, actor, name string, drained bool, reason string) (*Node, bool, error) {
	var n *Node
	var changed bool
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getNodeRow(ctx, tx, name)
		if err != nil {
			return err
		}
		before := r.node()
		if r.Drained == drained {
			n = before
			return nil
		}
		changed = true
		r.Drained, r.DrainReason, r.DrainedBy, r.UpdatedAt = drained, reason, actor, s.now()
		if !drained {
			r.DrainReason, r.DrainedBy = "", ""
		}
		if _, err := tx.NamedExecContext(ctx, `UPDATE nodes SET drained = :drained, drain_reason = :drain_reason,
		  drained_by = :drained_by, updated_at = :updated_at WHERE id = :id`, r); err != nil {
			return err
		}
		n = r.node()
		action := "node.drain"
		if !drained {
			action = "node.undrain"
		}
		return s.changed(ctx, tx, actor, action, "node", name, before, n, reason)
	})
	return n, changed, err
}

// DeleteNode forgets a node; its token stops working at once.
func (s *Store) DeleteNode(ctx context.Context, actor, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getNodeRow(ctx, tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, r.ID); err != nil {
			return err
		}
		return s.changed(ctx, tx, actor, "node.delete", "node", name, r.node(), nil, "")
	})
}

// NodeUsers is the user set a node must serve: users that nodes serve and
// that may use the node's group, sorted by name.
func (s *Store) NodeUsers(ctx context.Context, name string) (sbconfig.NodeUsers, error) {
	n, err := s.GetNode(ctx, name)
	if err != nil {
		return sbconfig.NodeUsers{}, err
	}
	return s.GroupUsers(ctx, n.Group())
}

// GroupUsers is the user set of every node in group. The revision is read
// before the users, so the set is never older than its revision: callers
// may cache it under that revision.
//
// The group is prefiltered in SQL (a superset: MayUse still decides) and
// only the credentials are read: whole users cost 80 ms for a 5,000-user
// group among 100,000 users on SQLite.
func (s *Store) GroupUsers(ctx context.Context, group string) (sbconfig.NodeUsers, error) {
	var out sbconfig.NodeUsers
	rev, err := s.UsersRevision(ctx)
	if err != nil {
		return out, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, uuid, password, ss_key_16, ss_key_32, groups_csv FROM users
	  WHERE status IN (?, ?) AND (groups_csv = '' OR INSTR(CONCAT(',', groups_csv, ','), ?) > 0)`,
		StatusActive, StatusOnHold, ","+group+",")
	if err != nil {
		return out, err
	}
	defer rows.Close()
	out.Revision = rev
	out.Users = []sbconfig.User{}
	for rows.Next() {
		var u User
		var groups string
		c := &u.Credentials
		if err := rows.Scan(&u.Name, &c.UUID, &c.Password, &c.SSKey16, &c.SSKey32, &groups); err != nil {
			return out, err
		}
		u.Groups = splitCSV(groups)
		if u.MayUse(group) {
			out.Users = append(out.Users, sbconfig.User{Name: u.Name, Credentials: u.Credentials})
		}
	}
	// Sorted here rather than by ORDER BY, which SQLite answered by walking
	// the name index over every user and fetching each row out of order.
	// Byte order, as both back ends' name columns compare.
	slices.SortFunc(out.Users, func(a, b sbconfig.User) int { return strings.Compare(a.Name, b.Name) })
	return out, rows.Err()
}

// SortedLabelNames returns label names in a stable order, for tables.
func SortedLabelNames(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
