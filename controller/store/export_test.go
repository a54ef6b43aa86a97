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
