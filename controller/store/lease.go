package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"
)

// TryLease takes or renews the named lease for holder for ttlMS
// milliseconds. It returns whether holder owns the lease afterwards. Time is
// each controller's clock: leases assume clocks agree to well within a TTL,
// which NTP gives.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttlMS int64) (bool, error) {
	now := s.Now().UnixMilli()
	held := false
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		cur, exp, err := s.leaseRow(ctx, tx, name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO leases (name, holder, expires_at_ms) VALUES (?, ?, ?)`, name, holder, now+ttlMS)
			if isDuplicate(err) {
				return nil // another controller created it first
			}
			held = err == nil
			return err
		case err != nil:
			return err
		case cur != holder && exp > now:
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE leases SET holder = ?, expires_at_ms = ? WHERE name = ?`, holder, now+ttlMS, name)
		held = err == nil
		return err
	})
	return held, err
}

// ReleaseLease gives the lease up at once (on clean shutdown), so another
// controller need not wait for it to expire.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE leases SET expires_at_ms = 0 WHERE name = ? AND holder = ?`, name, holder)
	return err
}

func (s *Store) leaseRow(ctx context.Context, tx *sqlx.Tx, name string) (string, int64, error) {
	q := `SELECT holder, expires_at_ms FROM leases WHERE name = ?`
	if s.dialect == mysqlDialect {
		q += ` FOR UPDATE`
	}
	var holder string
	var exp int64
	err := tx.QueryRowxContext(ctx, q, name).Scan(&holder, &exp)
	return holder, exp, err
}

// checkLease fences a write: inside the writer's transaction, the lease row
// is locked and must still name holder and not have expired. A controller
// that paused past its lease cannot commit after the new leader started.
func (s *Store) checkLease(ctx context.Context, tx *sqlx.Tx, name, holder string) error {
	cur, exp, err := s.leaseRow(ctx, tx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotLeader
	}
	if err != nil {
		return err
	}
	if cur != holder || exp <= s.Now().UnixMilli() {
		return ErrNotLeader
	}
	return nil
}

// LeaseHolder returns who holds the named lease and until when (Unix ms).
func (s *Store) LeaseHolder(ctx context.Context, name string) (string, int64, error) {
	var holder string
	var exp int64
	err := s.db.QueryRowxContext(ctx, `SELECT holder, expires_at_ms FROM leases WHERE name = ?`, name).Scan(&holder, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, nil
	}
	return holder, exp, err
}
