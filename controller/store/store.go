// Package store keeps the controller's state: users, plans, nodes, tokens, the
// audit log and the traffic ledger. One schema serves both back ends: an
// embedded SQLite file (zero set-up) and MySQL (production, several
// controllers). Timestamps are Unix seconds in BIGINT columns so that both
// back ends compare and sort them the same way regardless of time zones.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // pure-Go SQLite: no cgo, static binaries
)

// Errors callers map to HTTP status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// ValidationError names the field that failed and why.
type ValidationError struct {
	Field, Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

type dialect int

const (
	sqlite dialect = iota
	mysqlDialect
)

// Store is safe for concurrent use.
type Store struct {
	// db serves reads. w runs every write: on MySQL it is db itself, on
	// SQLite one connection of its own. SQLite lets one writer in at a
	// time whatever the pool: a second writer used to wait in
	// busy_timeout's sleeps (up to 100 ms each, and "database is locked"
	// after 10 s behind a long fold) and now waits its turn in the pool,
	// first come first served. One writer connection also keeps its page
	// cache from one write to the next, where a pooled one drops it
	// whenever another connection wrote since.
	db, w   *sqlx.DB
	dialect dialect
	// Now is the clock; tests move it to cross period boundaries.
	Now func() time.Time
	// FoldEachCommit makes every node commit add to the users' period
	// usage itself instead of leaving it in usage_pending_nodes for
	// FoldUsage. Off on both back ends: measured side by side at 1,000,000
	// series once pending usage was one row per commit, folding once a
	// cycle made MariaDB's cycles faster too (every series changed 23.7 →
	// 13.3 s). The fold holds the row locks of the users it adds to until
	// it commits (a few seconds at 100,000 users), so an admin's change to
	// one of them may wait that long; reads do not wait. The scale test
	// and benchmarks turn it on to measure the other way.
	FoldEachCommit bool
	// byToken is UserByToken's query, prepared once: every subscription
	// request runs it, and SQLite spent a sixth of the request parsing it.
	byToken *sqlx.Stmt
	// owner limits users to one reseller's (see OwnedBy); "" sees all.
	owner string
}

// Open connects to MySQL when dsn is set (go-sql-driver format,
// user:pass@tcp(host:3306)/db) and otherwise opens dataDir/boxfleet.db, then
// applies pending migrations.
//
// idleTx bounds, on MySQL, how long the server keeps a transaction whose
// client has gone silent (0: the server's default, which is hours). A
// controller cut off mid-transaction keeps its row locks until the server
// gives up on it, and every ledger commit locks the lease row: the server
// passes idleTx as the lease TTL, so that another controller can take the
// lease about a TTL after the leader vanished, as --lease.ttl promises.
func Open(ctx context.Context, dsn, dataDir string, idleTx time.Duration) (*Store, error) {
	var s *Store
	var err error
	if dsn != "" {
		s, err = openMySQL(ctx, dsn, idleTx)
	} else {
		s, err = openSQLite(filepath.Join(dataDir, "boxfleet.db"))
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.byToken, err = s.db.PreparexContext(ctx, `SELECT `+userCols+` FROM users WHERE sub_token = ?`); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// WAL lets readers run beside the writer; immediate transactions take the
	// write lock up front so two writers queue on busy_timeout instead of
	// failing when a read lock cannot be upgraded.
	// Statement journals stay in memory (temp_store): every multi-row
	// write of an accounting commit keeps one, and in temporary files they
	// cost a commit a third of its time in write calls (side by side,
	// 283 -> 177 ms for 5,000 users' commit).
	// The path is escaped: SQLite decodes a "file:" URI, and a data
	// directory may have "%", "?" or "#" in its name.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_txlock=immediate"
	// Keep the readers all open: with the default of two idle
	// connections, concurrent subscription requests opened and closed
	// SQLite connections (file open and pragmas) all the time. The one
	// writer is Store.w; busy_timeout is left for another process (a CLI,
	// a backup) holding the lock.
	db, err := openSQLitePool(path, dsn, 8)
	if err != nil {
		return nil, err
	}
	w, err := openSQLitePool(path, dsn, 1)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, w: w, dialect: sqlite, Now: time.Now}, nil
}

func openSQLitePool(path, dsn string, conns int) (*sqlx.DB, error) {
	db, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// Bounds on MySQL connections, unless the DSN sets its own (timeout,
// readTimeout, writeTimeout). A database cut off by its link (its packets
// vanish; nothing resets the connection) would otherwise hold a statement
// until TCP gives up, about 15 minutes, in every loop that has no deadline
// of its own (hook deliveries, the reconcile loop, the sweeps, the node
// directory) and keep its connection from the pool. A minute is far above
// any statement boxfleet runs and InnoDB's 50 s lock wait.
var (
	mysqlDialTimeout = 10 * time.Second
	mysqlIOTimeout   = time.Minute
)

func openMySQL(ctx context.Context, dsn string, idleTx time.Duration) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("--db.dsn: %w", err)
	}
	cfg.ParseTime = true
	cfg.MultiStatements = false
	if cfg.Timeout == 0 {
		cfg.Timeout = mysqlDialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = mysqlIOTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = mysqlIOTimeout
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// Strict mode turns silent truncation into errors; READ COMMITTED keeps
	// the lease and ledger updates from taking gap locks.
	cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ZERO_DATE'"
	// No transaction_isolation session parameter: MariaDB before 11.1 does
	// not know it (and MySQL 8 no longer knows tx_isolation). tx asks for
	// READ COMMITTED per transaction instead, which both understand.
	db, err := openMySQLPool(cfg)
	if err != nil {
		return nil, err
	}
	_, ownIdle := cfg.Params["idle_transaction_timeout"]
	_, ownWait := cfg.Params["wait_timeout"]
	if idleTx > 0 && !ownIdle && !ownWait {
		// A DSN that sets either limit itself is left as it is.
		// MariaDB ends only transactions left idle (idle_transaction_timeout);
		// MySQL has no such variable, so there the whole session's idle
		// limit (wait_timeout) is shortened, and the pool retires its idle
		// connections before the server would.
		secs := strconv.Itoa(int((idleTx + time.Second - 1) / time.Second))
		var cur int64
		err := db.QueryRowContext(ctx, `SELECT @@idle_transaction_timeout`).Scan(&cur)
		db.Close()
		maria := err == nil
		if me, ok := errors.AsType[*mysql.MySQLError](err); !maria && (!ok || me.Number != 1193) {
			// Anything but "unknown system variable" (MySQL's answer) is
			// an outage, not an answer about the server.
			return nil, fmt.Errorf("connect to MySQL at %s: %w", cfg.Addr, err)
		}
		if maria {
			cfg.Params["idle_transaction_timeout"] = secs
		} else {
			cfg.Params["wait_timeout"] = secs
		}
		if db, err = openMySQLPool(cfg); err != nil {
			return nil, err
		}
		if !maria {
			db.SetConnMaxIdleTime(idleTx / 2)
		}
	}
	return &Store{db: db, w: db, dialect: mysqlDialect, Now: time.Now}, nil
}

func openMySQLPool(cfg *mysql.Config) (*sqlx.DB, error) {
	db, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(32)
	// Keep them all open: with the default of two idle connections, a burst
	// (every waiting node woken by a change) closed and reopened
	// connections, each with its session setup (a load test saw 94-127
	// SET sql_mode a second from this alone).
	db.SetMaxIdleConns(32)
	db.SetConnMaxLifetime(5 * time.Minute)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to MySQL at %s: %w", cfg.Addr, err)
	}
	return db, nil
}

// Close releases the database.
func (s *Store) Close() error {
	if s.byToken != nil {
		s.byToken.Close()
	}
	if s.w != s.db {
		s.w.Close()
	}
	return s.db.Close()
}

// Ping reports whether the database answers (for /-/ready).
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Backend names the database kind, for logs and build info.
func (s *Store) Backend() string {
	if s.dialect == mysqlDialect {
		return "mysql"
	}
	return "sqlite"
}

func (s *Store) now() int64 { return s.Now().Unix() }

// tx runs fn in a transaction and commits when fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	var opts *sql.TxOptions
	if s.dialect == mysqlDialect {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := s.w.BeginTxx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// isDuplicate reports a unique-key violation on either back end.
func isDuplicate(err error) bool {
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok {
		return me.Number == 1062
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// upsert returns the dialect's "insert or update" tail for the given key and
// value columns.
func (s *Store) upsert(keys []string, cols ...string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		if s.dialect == mysqlDialect {
			parts[i] = c + " = VALUES(" + c + ")"
		} else {
			parts[i] = c + " = excluded." + c
		}
	}
	if s.dialect == mysqlDialect {
		return " ON DUPLICATE KEY UPDATE " + strings.Join(parts, ", ")
	}
	return " ON CONFLICT(" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(parts, ", ")
}
