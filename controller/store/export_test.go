package store

import (
	"time"

	"github.com/jmoiron/sqlx"
)

// DB exposes the connection pool so tests can inspect what is really stored.
func (s *Store) DB() *sqlx.DB { return s.db }

// SetMySQLIOTimeout sets the default read and write timeout of MySQL
// connections opened from now on and returns the one it replaced.
func SetMySQLIOTimeout(d time.Duration) time.Duration {
	old := mysqlIOTimeout
	mysqlIOTimeout = d
	return old
}

// WriteThroughPool makes an SQLite store write through its pool of
// readers, as it did before it had a writer connection of its own: the
// "before" of a side-by-side benchmark.
func (s *Store) WriteThroughPool() {
	if s.w != s.db {
		s.w.Close()
		s.w = s.db
	}
}
