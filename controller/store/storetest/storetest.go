// Package storetest opens fresh controller stores for tests: an SQLite file
// in a temporary directory, and a new database on the MySQL server named by
// $BOXFLEET_TEST_MYSQL_DSN, dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/boxfleet/boxfleet/controller/store"
)

// DSNEnv names the environment variable holding the DSN of a MySQL server
// (go-sql-driver format) on which tests may create and drop databases.
const DSNEnv = "BOXFLEET_TEST_MYSQL_DSN"

// DB is a fresh, empty database that store.Open accepts: a DSN for MySQL or
// a data directory for SQLite. Open it more than once to play several
// controllers or a restart.
type DB struct {
	Backend string // "sqlite" or "mysql"
	DSN     string
	Dir     string
}

// Open opens a store on db and closes it when the test ends.
func (db DB) Open(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), db.DSN, db.Dir, 0)
	if err != nil {
		t.Fatalf("open %s store: %v", db.Backend, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// NewSQLiteDB returns a data directory of its own for the test.
func NewSQLiteDB(t testing.TB) DB {
	return DB{Backend: "sqlite", Dir: t.TempDir()}
}

// NewMySQLDB creates a database of its own for the test on the server named
// by $BOXFLEET_TEST_MYSQL_DSN and drops it when the test ends. It skips the
// test when the variable is unset, and under -short (`make test-short` runs
// what needs no server).
func NewMySQLDB(t testing.TB) DB {
	t.Helper()
	if testing.Short() {
		t.Skip("MySQL tests skipped under -short")
	}
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skipf("MySQL tests skipped: set %s, e.g. root@tcp(127.0.0.1:3306)/test", DSNEnv)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("%s: %v", DSNEnv, err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	name := "boxfleet_test_" + randomHex(6)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database on %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return DB{Backend: "mysql", DSN: cfg.FormatDSN()}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// SQLite opens a store on a fresh SQLite file.
func SQLite(t testing.TB) *store.Store { return NewSQLiteDB(t).Open(t) }

// MySQL opens a store on a fresh MySQL database, or skips the test when
// $BOXFLEET_TEST_MYSQL_DSN is unset.
func MySQL(t testing.TB) *store.Store { return NewMySQLDB(t).Open(t) }

// EachDB runs fn as one subtest per back end, "sqlite" and "mysql", each on
// a fresh database.
func EachDB(t *testing.T, fn func(t *testing.T, db DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, NewSQLiteDB(t)) })
	t.Run("mysql", func(t *testing.T) { fn(t, NewMySQLDB(t)) })
}

// Each runs fn as one subtest per back end on a freshly opened store.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	EachDB(t, func(t *testing.T, db DB) { fn(t, db.Open(t)) })
}
