package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// migrations are applied in order, each once, recorded in schema_migrations.
// Add new ones at the end; never edit one that has shipped. The text is
// shared by both back ends: {{id}} becomes each dialect's auto-increment key,
// {{without_rowid}} SQLite's WITHOUT ROWID (nothing on MySQL, whose tables
// are their primary key already).
var migrations = []string{
	1: `
CREATE TABLE users (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  uuid CHAR(36) NOT NULL,
  password VARCHAR(64) NOT NULL,
  ss_key_16 VARCHAR(64) NOT NULL,
  ss_key_32 VARCHAR(64) NOT NULL,
  sub_token VARCHAR(64) NOT NULL,
  status VARCHAR(16) NOT NULL,
  status_reason VARCHAR(255) NOT NULL DEFAULT '',
  traffic_limit BIGINT NOT NULL DEFAULT 0,
  used_up BIGINT NOT NULL DEFAULT 0,
  used_down BIGINT NOT NULL DEFAULT 0,
  reset_strategy VARCHAR(16) NOT NULL DEFAULT 'no_reset',
  period_start BIGINT NOT NULL DEFAULT 0,
  expire_at BIGINT NOT NULL DEFAULT 0,
  on_hold_seconds BIGINT NOT NULL DEFAULT 0,
  first_used_at BIGINT NOT NULL DEFAULT 0,
  device_limit BIGINT NOT NULL DEFAULT 0,
  groups_csv VARCHAR(1024) NOT NULL DEFAULT '',
  note VARCHAR(1024) NOT NULL DEFAULT '',
  plan VARCHAR(64) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (name),
  UNIQUE (sub_token)
)`,
	2: `
CREATE TABLE plans (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  traffic_limit BIGINT NOT NULL DEFAULT 0,
  reset_strategy VARCHAR(16) NOT NULL DEFAULT 'no_reset',
  duration_seconds BIGINT NOT NULL DEFAULT 0,
  on_hold_seconds BIGINT NOT NULL DEFAULT 0,
  device_limit BIGINT NOT NULL DEFAULT 0,
  groups_csv VARCHAR(1024) NOT NULL DEFAULT '',
  note VARCHAR(1024) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (name)
)`,
	3: `
CREATE TABLE nodes (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  token_hash CHAR(64) NOT NULL,
  address VARCHAR(255) NOT NULL DEFAULT '',
  exporter VARCHAR(255) NOT NULL DEFAULT '',
  labels_json TEXT NOT NULL,
  inbounds_json TEXT NOT NULL,
  version VARCHAR(64) NOT NULL DEFAULT '',
  drained INTEGER NOT NULL DEFAULT 0,
  drain_reason VARCHAR(255) NOT NULL DEFAULT '',
  drained_by VARCHAR(255) NOT NULL DEFAULT '',
  last_seen BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (name),
  UNIQUE (token_hash)
)`,
	4: `
CREATE TABLE admin_tokens (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  token_hash CHAR(64) NOT NULL,
  created_at BIGINT NOT NULL,
  UNIQUE (token_hash)
)`,
	5: `
CREATE TABLE events (
  id {{id}},
  at BIGINT NOT NULL,
  actor VARCHAR(255) NOT NULL,
  action VARCHAR(64) NOT NULL,
  object_type VARCHAR(16) NOT NULL,
  object_name VARCHAR(64) NOT NULL,
  before_json TEXT NOT NULL,
  after_json TEXT NOT NULL,
  detail TEXT NOT NULL
)`,
	6: `CREATE INDEX events_object ON events (object_type, object_name, id)`,
	7: `
CREATE TABLE meta (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  value BIGINT NOT NULL
)`,
	8: `INSERT INTO meta (name, value) VALUES ('users_revision', 1)`,
	9: `
CREATE TABLE checkpoints (
  node VARCHAR(64) NOT NULL,
  user_name VARCHAR(64) NOT NULL,
  direction VARCHAR(8) NOT NULL,
  value BIGINT NOT NULL,
  PRIMARY KEY (node, user_name, direction)
)`,
	10: `
CREATE TABLE usage_daily (
  user_name VARCHAR(64) NOT NULL,
  node VARCHAR(64) NOT NULL,
  day INTEGER NOT NULL,
  upload BIGINT NOT NULL DEFAULT 0,
  download BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (user_name, day, node)
)`,
	11: `
CREATE TABLE leases (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  holder VARCHAR(255) NOT NULL,
  expires_at_ms BIGINT NOT NULL
)`,
	12: `
CREATE TABLE node_epochs (
  node VARCHAR(64) NOT NULL PRIMARY KEY,
  since BIGINT NOT NULL
)`,
	13: `
CREATE TABLE alert_actions (
  fingerprint VARCHAR(64) NOT NULL,
  starts_at BIGINT NOT NULL,
  action VARCHAR(32) NOT NULL,
  target VARCHAR(64) NOT NULL,
  alertname VARCHAR(255) NOT NULL,
  state VARCHAR(16) NOT NULL,
  applied INTEGER NOT NULL DEFAULT 0,
  result VARCHAR(16) NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (fingerprint, starts_at, action, target)
)`,
	14: `
CREATE TABLE hooks (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  url VARCHAR(1024) NOT NULL,
  secret VARCHAR(255) NOT NULL,
  events_csv VARCHAR(1024) NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (name)
)`,
	// MEDIUMTEXT: a body holds an event's before and after, each up to a
	// TEXT; MySQL's TEXT would refuse the sum, and with it the change that
	// raised the event. SQLite reads the name as TEXT.
	15: `
CREATE TABLE hook_deliveries (
  id {{id}},
  hook_name VARCHAR(64) NOT NULL,
  event_id BIGINT NOT NULL,
  action VARCHAR(64) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  status VARCHAR(16) NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL,
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error VARCHAR(255) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
)`,
	16: `CREATE INDEX hook_deliveries_due ON hook_deliveries (status, next_attempt_at)`,
	17: `CREATE INDEX hook_deliveries_hook ON hook_deliveries (hook_name, id)`,
	// Admin accounts. Reseller limits live on the account: 0 and '' mean
	// no limit. recovery_csv holds SHA-256 hashes of unused recovery codes.
	18: `
CREATE TABLE admins (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  role VARCHAR(16) NOT NULL,
  password_hash VARCHAR(255) NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0,
  totp_secret VARCHAR(64) NOT NULL DEFAULT '',
  totp_pending VARCHAR(64) NOT NULL DEFAULT '',
  totp_last_step BIGINT NOT NULL DEFAULT 0,
  recovery_csv TEXT NOT NULL,
  max_users BIGINT NOT NULL DEFAULT 0,
  max_traffic BIGINT NOT NULL DEFAULT 0,
  plans_csv VARCHAR(1024) NOT NULL DEFAULT '',
  groups_csv VARCHAR(1024) NOT NULL DEFAULT '',
  created_by VARCHAR(255) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  last_login_at BIGINT NOT NULL DEFAULT 0,
  UNIQUE (name)
)`,
	// Named API tokens with a role; a reseller token acts for the account
	// in admin_name. The legacy admin_tokens stay, with the owner's power.
	19: `
CREATE TABLE api_tokens (
  id {{id}},
  name VARCHAR(64) NOT NULL,
  role VARCHAR(16) NOT NULL,
  admin_name VARCHAR(64) NOT NULL DEFAULT '',
  token_hash CHAR(64) NOT NULL,
  expires_at BIGINT NOT NULL DEFAULT 0,
  created_by VARCHAR(255) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  UNIQUE (name),
  UNIQUE (token_hash)
)`,
	// Browser sessions: the cookie's value is never stored, only its hash.
	20: `
CREATE TABLE sessions (
  id {{id}},
  token_hash CHAR(64) NOT NULL,
  admin_name VARCHAR(64) NOT NULL,
  address VARCHAR(64) NOT NULL DEFAULT '',
  user_agent VARCHAR(255) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  UNIQUE (token_hash)
)`,
	// The reseller account that manages a user; '' for staff-managed users.
	21: `ALTER TABLE users ADD COLUMN owner_admin VARCHAR(64) NOT NULL DEFAULT ''`,
	22: `CREATE INDEX users_owner_admin ON users (owner_admin, name)`,
	// Sort keys of the users list, as virtual columns both back ends
	// compute on read and can index: usage in the period, and expiry and
	// limit with "never" and "unlimited" (0) as the largest values.
	23: `ALTER TABLE users ADD COLUMN used_total BIGINT AS (used_up + used_down) VIRTUAL`,
	24: `ALTER TABLE users ADD COLUMN expire_sort BIGINT AS (CASE WHEN expire_at = 0 THEN 9223372036854775807 ELSE expire_at END) VIRTUAL`,
	25: `ALTER TABLE users ADD COLUMN limit_sort BIGINT AS (CASE WHEN traffic_limit = 0 THEN 9223372036854775807 ELSE traffic_limit END) VIRTUAL`,
	// A user's timeline reads the alert episodes that acted on it; the
	// overview sums the ledger of the last days.
	26: `CREATE INDEX alert_actions_target ON alert_actions (target, action, starts_at)`,
	27: `CREATE INDEX usage_daily_day ON usage_daily (day)`,
	// The users list's filters and sorts on 100,000 users (README,
	// Performance): each sort reads its index in order and stops after a
	// page (ties broken by id, which every index ends with); the status,
	// plan and "over 90 %" filters count from an index.
	// over90 is 1 when at least 90 % of a non-zero limit is used (MySQL
	// divides exactly, SQLite rounds the tenth down: for whole bytes both
	// agree).
	28: `ALTER TABLE users ADD COLUMN over90 INTEGER AS (CASE WHEN traffic_limit > 0 AND used_up + used_down >= traffic_limit - traffic_limit / 10 THEN 1 ELSE 0 END) VIRTUAL`,
	29: `CREATE INDEX users_status ON users (status, name)`,
	30: `CREATE INDEX users_plan ON users (plan, name)`,
	31: `CREATE INDEX users_used ON users (used_total)`,
	32: `CREATE INDEX users_expire ON users (expire_sort)`,
	33: `CREATE INDEX users_limit ON users (limit_sort)`,
	// Not (over90, used_total): usage changes every accounting cycle, and
	// each index holding it costs the ledger's commit a write; these
	// columns change rarely. It also serves "active and over 90 %, by
	// expiry", what an operator checks before a renewal run.
	34: `CREATE INDEX users_over90 ON users (over90, status, expire_sort)`,
	// Status is the list's usual filter (its tabs): with its own sort
	// keys, "active by usage" reads a page instead of sorting 80,000 rows.
	35: `CREATE INDEX users_status_used ON users (status, used_total)`,
	36: `CREATE INDEX users_status_expire ON users (status, expire_sort)`,
	37: `CREATE INDEX users_status_limit ON users (status, limit_sort)`,
	// A substring search and the group filter read every user: from these
	// narrow indexes rather than the wide rows, a scan reads a tenth of the
	// pages. SQLite only: MySQL cannot index a whole VARCHAR(1024) of
	// utf8mb4 (3072 bytes at most). Neither column changes when usage does.
	38: sqliteOnly + `CREATE INDEX users_search ON users (name, note)`,
	39: sqliteOnly + `CREATE INDEX users_groups ON users (groups_csv)`,
	// One checkpoint row per node and user instead of one per direction:
	// a fully changed accounting cycle writes half the rows. -1 is a
	// direction never seen (its first value is all new traffic, even 0).
	// On SQLite the key is the table (WITHOUT ROWID), so a write
	// touches one b-tree, not a table and its key's index.
	40: `
CREATE TABLE counters (
  node VARCHAR(64) NOT NULL,
  user_name VARCHAR(64) NOT NULL,
  up BIGINT NOT NULL,
  down BIGINT NOT NULL,
  PRIMARY KEY (node, user_name)
){{without_rowid}}`,
	41: `INSERT INTO counters (node, user_name, up, down)
  SELECT node, user_name,
    MAX(CASE WHEN direction = 'upload' THEN value ELSE -1 END),
    MAX(CASE WHEN direction = 'download' THEN value ELSE -1 END)
  FROM checkpoints GROUP BY node, user_name`,
	42: `DROP TABLE IF EXISTS checkpoints`,
	// The timestamp (ms) of the scrape a node's last commit read, under
	// the epoch in since: the next cycle asks Prometheus only for the
	// series that differ from their value at that instant. 0: unknown,
	// read every series.
	43: `ALTER TABLE node_epochs ADD COLUMN scraped_ms BIGINT NOT NULL DEFAULT 0`,
	// Usage was in three of the list's indexes, and the ledger changes it
	// every cycle: each held index cost a commit a b-tree write per user
	// (+35 % on SQLite for 5,000 users). Only "by usage within a status"
	// keeps a full index; the list reads "by usage" across statuses as a
	// merge of the statuses' pages of it (ListUsers). On SQLite the
	// "over 90 %" indexes hold only the users over 90 %, and only those
	// pay: a partial index is written only when a row is or was in it.
	// MySQL has no partial indexes; InnoDB rewrites an index entry only
	// when its values change, and over90 rarely does, so its index stays.
	44: sqliteOnly + `DROP INDEX IF EXISTS users_over90`,
	45: sqliteOnly + `CREATE INDEX users_over90_expire ON users (status, expire_sort) WHERE over90 = 1`,
	46: sqliteOnly + `CREATE INDEX users_over90_used ON users (used_total) WHERE over90 = 1`,
	47: sqliteOnly + `DROP INDEX IF EXISTS users_used`,
	48: mysqlOnly + `DROP INDEX IF EXISTS users_used ON users`,
	// "Over 90 % by usage" on MySQL read each status's usage index in
	// order and, for every user passed, the row, to learn whether the
	// user was over 90 % (over90 is computed from the row): thousands of
	// rows a page when the heaviest users are unlimited. With the limit
	// in the index, the list tests the same condition on the index alone
	// (over90ByUsage). The limit sits after the id so that the order by
	// (status, used_total, id) stays the index's own; it changes rarely,
	// so the ledger's commits write this index no more often than before.
	49: mysqlOnly + `CREATE INDEX users_status_used_limit ON users (status, used_total, id, traffic_limit)`,
	50: mysqlOnly + `DROP INDEX IF EXISTS users_status_used ON users`,
	// The trigram index of the users list's search (usersearch.go): gram
	// is the UTF-8 of three characters of a user's name or note as the
	// database lowers it. Filled from the users there are (54) and kept by
	// the store in each write of a name or note. BLOB on SQLite: a
	// VARBINARY column would have numeric affinity there.
	51: mysqlOnly + `
CREATE TABLE user_grams (
  gram VARBINARY(12) NOT NULL,
  user_id BIGINT NOT NULL,
  PRIMARY KEY (gram, user_id)
)`,
	52: sqliteOnly + `
CREATE TABLE user_grams (
  gram BLOB NOT NULL,
  user_id INTEGER NOT NULL,
  PRIMARY KEY (gram, user_id)
) WITHOUT ROWID`,
	53: `CREATE INDEX user_grams_user ON user_grams (user_id)`,
	54: goStep + `rebuild user_grams`,
	// The group filter's index (usergroups.go): each user's groups, or ''
	// for a user with none. The group is compared with case on both back
	// ends (utf8mb4_bin on MySQL, SQLite's default BINARY).
	55: `
CREATE TABLE user_groups (
  grp VARCHAR(64) NOT NULL,
  user_id BIGINT NOT NULL,
  PRIMARY KEY (grp, user_id)
){{without_rowid}}`,
	56: `CREATE INDEX user_groups_user ON user_groups (user_id)`,
	57: goStep + `rebuild user_groups`,
	// What the accountant's node commits add to users' period usage,
	// folded into users once per cycle (see FoldUsage): a user on five
	// nodes is then updated once a cycle instead of five times, and each
	// update of users moves its entries in the usage indexes. Appended
	// only; no index, so an insert dirties only the table's last page.
	58: `
CREATE TABLE usage_pending (
  id {{id}},
  user_name VARCHAR(64) NOT NULL,
  up BIGINT NOT NULL,
  down BIGINT NOT NULL,
  at BIGINT NOT NULL
)`,
	// One row, locked (on MySQL) by whatever folds or deletes pending
	// usage, so that a fold and a user's reset never wait on each other's
	// rows in opposite orders.
	59: `CREATE TABLE usage_lock (id INTEGER NOT NULL PRIMARY KEY)`,
	60: `INSERT INTO usage_lock (id) VALUES (1)`,
	// The ledger keyed by day and node first: a node's commit adds to a
	// few hundred neighbouring rows in one stretch of the table instead
	// of one row in every part of it (keyed by user first, each of a
	// commit's 2,500 users was a page of its own to read, and on MySQL to
	// dirty). A user's history is read through the second index, which a
	// commit touches only for a row it creates; "since day" scans the
	// key, so the old day index goes with the old table.
	61: `
CREATE TABLE usage_days (
  day INTEGER NOT NULL,
  node VARCHAR(64) NOT NULL,
  user_name VARCHAR(64) NOT NULL,
  upload BIGINT NOT NULL DEFAULT 0,
  download BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (day, node, user_name)
){{without_rowid}}`,
	62: `INSERT INTO usage_days (day, node, user_name, upload, download)
  SELECT day, node, user_name, upload, download FROM usage_daily`,
	63: `CREATE INDEX usage_days_user ON usage_days (user_name, day, node)`,
	64: `DROP TABLE IF EXISTS usage_daily`,
	// A node's checkpoints as one blob (see checkpoints.go) instead of a
	// row per user: a commit reads and writes one row, not 2,500. MySQL's
	// MEDIUMBLOB holds 16 MiB, about 500,000 users on one node.
	65: sqliteOnly + `CREATE TABLE node_checkpoints (node VARCHAR(64) NOT NULL PRIMARY KEY, data BLOB NOT NULL)`,
	66: mysqlOnly + `CREATE TABLE node_checkpoints (node VARCHAR(64) NOT NULL PRIMARY KEY, data MEDIUMBLOB NOT NULL)`,
	67: goStep + `pack counters`,
	68: `DROP TABLE IF EXISTS counters`,
	// A commit's pending usage as one row, its users packed as the
	// checkpoints are (see pending.go), instead of a row per user.
	69: sqliteOnly + `CREATE TABLE usage_pending_nodes (id {{id}}, at BIGINT NOT NULL, data BLOB NOT NULL)`,
	70: mysqlOnly + `CREATE TABLE usage_pending_nodes (id {{id}}, at BIGINT NOT NULL, data MEDIUMBLOB NOT NULL)`,
	71: goStep + `pack pending`,
	72: `DROP TABLE IF EXISTS usage_pending`,
	// Each sweep looks, per reset strategy, for the users whose period
	// has ended (resetPeriods, twice an accounting cycle): without an
	// index that was four reads of every user a sweep. Neither column
	// changes when usage does, so commits never write this index.
	73: `CREATE INDEX users_period ON users (reset_strategy, period_start)`,
}

// goSteps are the migrations written in Go rather than SQL, named by the
// text after goStep. They run in the migration's transaction.
var goSteps = map[string]func(ctx context.Context, s *Store, tx *sqlx.Tx) error{
	"rebuild user_grams":  func(ctx context.Context, s *Store, tx *sqlx.Tx) error { return s.rebuildUserGrams(ctx, tx) },
	"rebuild user_groups": func(ctx context.Context, s *Store, tx *sqlx.Tx) error { return s.rebuildUserGroups(ctx, tx) },
	"pack counters":       func(ctx context.Context, s *Store, tx *sqlx.Tx) error { return s.packCounters(ctx, tx) },
	"pack pending":        func(ctx context.Context, s *Store, tx *sqlx.Tx) error { return s.packPending(ctx, tx) },
}

// sqliteOnly starts a migration that only SQLite runs; MySQL records it
// as applied. mysqlOnly is the converse.
const (
	sqliteOnly = "/* sqlite only */ "
	mysqlOnly  = "/* mysql only */ "
	// goStep, after those, makes the rest the name of one of goSteps.
	goStep = "/* go */ "
)

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.w.Connx(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Several controllers may start together on one MySQL. MySQL commits DDL
	// implicitly, so a transaction cannot make "create table + record version"
	// atomic there; a named lock serialises the migrators instead, and each
	// version is recorded only after its statement succeeded.
	if s.dialect == mysqlDialect {
		var got int
		// The lock is per database: GET_LOCK names are server-wide.
		if err := conn.GetContext(ctx, &got, `SELECT GET_LOCK(CONCAT('boxfleet_migrate.', DATABASE()), 60)`); err != nil {
			return fmt.Errorf("waiting for the migration lock: %w", err)
		}
		if got != 1 {
			return errors.New("waiting for the migration lock: not granted within 60s")
		}
		defer conn.ExecContext(context.Background(), `SELECT RELEASE_LOCK(CONCAT('boxfleet_migrate.', DATABASE()))`)
	}
	if _, err := conn.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrations table: %w", err)
	}
	var done []int
	if err := conn.SelectContext(ctx, &done, `SELECT version FROM schema_migrations`); err != nil {
		return err
	}
	applied := map[int]bool{}
	for _, v := range done {
		applied[v] = true
	}
	if len(done) > 0 && maxInt(done) >= len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d): upgrade boxfleet", maxInt(done), len(migrations)-1)
	}
	for v := 1; v < len(migrations); v++ {
		if applied[v] {
			continue
		}
		if err := s.applyMigration(ctx, conn, v); err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, conn *sqlx.Conn, v int) error {
	stmt := strings.ReplaceAll(migrations[v], "{{id}}", s.autoID())
	withoutRowid := ""
	if s.dialect == sqlite {
		withoutRowid = " WITHOUT ROWID"
	}
	stmt = strings.ReplaceAll(stmt, "{{without_rowid}}", withoutRowid)
	skip := false
	if rest, ok := strings.CutPrefix(stmt, sqliteOnly); ok {
		stmt, skip = rest, s.dialect != sqlite
	}
	if rest, ok := strings.CutPrefix(stmt, mysqlOnly); ok {
		stmt, skip = rest, s.dialect != mysqlDialect
	}
	if s.dialect == mysqlDialect && strings.HasPrefix(strings.TrimSpace(stmt), "CREATE TABLE") {
		// Binary collation compares like SQLite does; the database's
		// default is usually case-insensitive, which would make "Alice" and
		// "alice" collide, match tokens in the wrong case and merge their
		// checkpoints.
		stmt += " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
	}
	tx, err := conn.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if skip {
		// recorded below without running
	} else if name, ok := strings.CutPrefix(stmt, goStep); ok {
		step := goSteps[name]
		if step == nil {
			return fmt.Errorf("no Go migration step %q", name)
		}
		if err := step(ctx, s, tx); err != nil {
			return err
		}
	} else if _, err := tx.ExecContext(ctx, stmt); err != nil && !s.alreadyApplied(err) {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, s.now()); err != nil {
		return err
	}
	return tx.Commit()
}

// alreadyApplied recognises, on MySQL, the error a statement gives when an
// earlier run applied it and died before recording its version: MySQL
// commits DDL on its own, so that gap exists there, and the migration must
// then simply be recorded. 1050: table exists; 1060: duplicate column (an
// ALTER TABLE ADD COLUMN); 1061: duplicate index name; 1062: duplicate row
// (the seed of meta).
func (s *Store) alreadyApplied(err error) bool {
	var me *mysql.MySQLError
	if s.dialect != mysqlDialect || !errors.As(err, &me) {
		return false
	}
	return me.Number == 1050 || me.Number == 1060 || me.Number == 1061 || me.Number == 1062
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func (s *Store) autoID() string {
	if s.dialect == mysqlDialect {
		return "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
	}
	return "INTEGER PRIMARY KEY AUTOINCREMENT"
}

// SchemaVersion is the newest migration applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.GetContext(ctx, &v, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`)
	return v, err
}
