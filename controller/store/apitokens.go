package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// APIToken is a named bearer token with a role, as the API lists it; the
// token itself is shown once, when it is created.
type APIToken struct {
	Name      string     `json:"name" db:"name"`
	Role      string     `json:"role" db:"role"`
	Admin     string     `json:"admin,omitempty" db:"admin_name"` // a reseller token acts for this account
	ExpiresAt *time.Time `json:"expires_at,omitempty" db:"-"`
	CreatedBy string     `json:"created_by,omitempty" db:"created_by"`
	CreatedAt time.Time  `json:"created_at" db:"-"`

	ExpiresUnix int64 `json:"-" db:"expires_at"`
	CreatedUnix int64 `json:"-" db:"created_at"`
}

func (t *APIToken) fill() {
	t.ExpiresAt = optUnix(t.ExpiresUnix)
	t.CreatedAt = unix(t.CreatedUnix)
}

// APITokenSpec is what CreateAPIToken needs besides the name.
type APITokenSpec struct {
	Role      string     `json:"role"`
	Admin     string     `json:"admin,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreateAPIToken issues a named token and returns it with its secret. A
// reseller token must name a reseller account: the account's limits and
// users are the token's.
func (s *Store) CreateAPIToken(ctx context.Context, actor, name string, sp APITokenSpec) (*APIToken, string, error) {
	if !ValidName(name) {
		return nil, "", invalid("name", "must match %s", nameRE)
	}
	if !slices.Contains(Roles, sp.Role) {
		return nil, "", invalid("role", "must be one of %s", strings.Join(Roles, ", "))
	}
	t := &APIToken{Name: name, Role: sp.Role, Admin: sp.Admin, CreatedBy: actor, CreatedUnix: s.now()}
	if sp.ExpiresAt != nil && !sp.ExpiresAt.IsZero() {
		if !sp.ExpiresAt.After(s.Now()) {
			return nil, "", invalid("expires_at", "is in the past")
		}
		t.ExpiresUnix = sp.ExpiresAt.Unix()
	}
	tok := NewToken()
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		switch {
		case sp.Role == RoleReseller && sp.Admin == "":
			return invalid("admin", "a reseller token must name the reseller account it acts for")
		case sp.Role != RoleReseller && sp.Admin != "":
			return invalid("admin", "only reseller tokens act for an account")
		case sp.Admin != "":
			a, err := s.getAdminRow(ctx, tx, sp.Admin)
			if errors.Is(err, ErrNotFound) || (err == nil && a.Role != RoleReseller) {
				return invalid("admin", "no reseller account named %q", sp.Admin)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, role, admin_name, token_hash, expires_at, created_by, created_at)
		  VALUES (?, ?, ?, ?, ?, ?, ?)`, t.Name, t.Role, t.Admin, HashToken(tok), t.ExpiresUnix, t.CreatedBy, t.CreatedUnix)
		if isDuplicate(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		t.fill()
		return s.changed(ctx, tx, actor, "token.create", "token", name, nil, t, "")
	})
	if err != nil {
		return nil, "", err
	}
	return t, tok, nil
}

const apiTokenCols = `name, role, admin_name, expires_at, created_by, created_at`

// ListAPITokens returns every named token, expired ones included (their
// expiry shows why they no longer work).
func (s *Store) ListAPITokens(ctx context.Context) ([]*APIToken, error) {
	var ts []*APIToken
	if err := s.db.SelectContext(ctx, &ts, `SELECT `+apiTokenCols+` FROM api_tokens ORDER BY name`); err != nil {
		return nil, err
	}
	for _, t := range ts {
		t.fill()
	}
	return ts, nil
}

// DeleteAPIToken revokes a named token.
func (s *Store) DeleteAPIToken(ctx context.Context, actor, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM api_tokens WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return s.changed(ctx, tx, actor, "token.delete", "token", name, nil, nil, "")
	})
}

// APITokenFor returns the unexpired named token with this secret, or nil.
// The lookup is by hash, like node tokens: the hash of a guess says nothing
// about how close it came. A reseller token whose account is disabled or
// gone is no token.
func (s *Store) APITokenFor(ctx context.Context, token string) (*APIToken, error) {
	var t APIToken
	err := s.db.GetContext(ctx, &t, `SELECT `+apiTokenCols+` FROM api_tokens WHERE token_hash = ?`, HashToken(token))
	if err != nil {
		if errors.Is(notFound(err), ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	t.fill()
	if t.ExpiresAt != nil && !s.Now().Before(*t.ExpiresAt) {
		return nil, nil
	}
	if t.Admin != "" {
		a, err := s.getAdminRow(ctx, s.db, t.Admin)
		if errors.Is(err, ErrNotFound) || (err == nil && (a.Disabled || a.Role != RoleReseller)) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return &t, nil
}
