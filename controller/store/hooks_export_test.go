package store

import (
	"context"
	"errors"

	"github.com/jmoiron/sqlx"
)

// ErrRolledBack is what FailAfterChange returns.
var ErrRolledBack = errors.New("rolled back on purpose")

// FailAfterChange records a change the way every write does, then fails
// its transaction, so tests see what a rolled-back change leaves behind.
func (s *Store) FailAfterChange(ctx context.Context, actor, action, typ, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		if err := s.changed(ctx, tx, actor, action, typ, name, nil, map[string]string{"name": name}, "doomed"); err != nil {
			return err
		}
		return ErrRolledBack
	})
}
