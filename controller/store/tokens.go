package store

import (
	"context"
	"crypto/subtle"
)

// EnsureAdminToken makes token a valid admin token (stored hashed) if it is
// not one already.
func (s *Store) EnsureAdminToken(ctx context.Context, name, token string) error {
	h := HashToken(token)
	var n int
	if err := s.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM admin_tokens WHERE token_hash = ?`, h); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO admin_tokens (name, token_hash, created_at) VALUES (?, ?, ?)`, name, h, s.now())
	if isDuplicate(err) {
		return nil
	}
	return err
}

// AdminTokenName returns the name of the admin token that matches, or ""
// when none does. Every stored hash is compared, in constant time, so the
// answer's timing does not depend on which token matched or how closely.
func (s *Store) AdminTokenName(ctx context.Context, token string) (string, error) {
	var rows []struct {
		Name string `db:"name"`
		Hash string `db:"token_hash"`
	}
	if err := s.db.SelectContext(ctx, &rows, `SELECT name, token_hash FROM admin_tokens`); err != nil {
		return "", err
	}
	h := []byte(HashToken(token))
	found := ""
	for _, r := range rows {
		if subtle.ConstantTimeCompare([]byte(r.Hash), h) == 1 {
			found = r.Name
		}
	}
	return found, nil
}
