package store

import "github.com/jmoiron/sqlx"

// DB exposes the connection pool so tests can inspect what is really stored.
func (s *Store) DB() *sqlx.DB { return s.db }
