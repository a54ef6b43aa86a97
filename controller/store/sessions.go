package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
)

// Session is a browser login as the owner's session list shows it. ID is
// the row's number, a handle for revoking it; the cookie's secret is never
// stored or shown.
type Session struct {
	ID         int64     `json:"id" db:"id"`
	Admin      string    `json:"admin" db:"admin_name"`
	Role       string    `json:"role" db:"role"`
	Address    string    `json:"address" db:"address"`
	UserAgent  string    `json:"user_agent" db:"user_agent"`
	CreatedAt  time.Time `json:"created_at" db:"-"`
	LastSeenAt time.Time `json:"last_seen_at" db:"-"`
	ExpiresAt  time.Time `json:"expires_at" db:"-"`

	CreatedUnix  int64 `json:"-" db:"created_at"`
	LastSeenUnix int64 `json:"-" db:"last_seen_at"`
	ExpiresUnix  int64 `json:"-" db:"expires_at"`
	Disabled     bool  `json:"-" db:"disabled"`
}

func (s *Session) fill() {
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = unix(s.CreatedUnix), unix(s.LastSeenUnix), unix(s.ExpiresUnix)
}

// NewSessionToken returns a cookie value: 32 random bytes (256 bits).
func NewSessionToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateSession stores a session for admin that ends maxAge from now at
// the latest, and returns the cookie value.
func (s *Store) CreateSession(ctx context.Context, admin, address, userAgent string, maxAge time.Duration) (string, error) {
	tok := NewSessionToken()
	now := s.now()
	if len(userAgent) > 255 {
		userAgent = userAgent[:255]
	}
	if len(address) > 64 {
		address = address[:64]
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions (token_hash, admin_name, address, user_agent, created_at, last_seen_at, expires_at)
	  VALUES (?, ?, ?, ?, ?, ?, ?)`, HashToken(tok), admin, address, userAgent, now, now, now+int64(maxAge/time.Second))
	return tok, err
}

const sessionCols = `s.id, s.admin_name, a.role, a.disabled, s.address, s.user_agent, s.created_at, s.last_seen_at, s.expires_at`

// touchEvery spaces the writes that keep a session alive: one per request
// would turn every page view into a database write.
const touchEvery = 15 * time.Second

// SessionFor returns the live session whose cookie value is token, or nil.
// A session idle for longer than idle, past its absolute end, or of a
// disabled account is deleted and is no session.
func (s *Store) SessionFor(ctx context.Context, token string, idle time.Duration) (*Session, error) {
	var se Session
	err := s.db.GetContext(ctx, &se, `SELECT `+sessionCols+` FROM sessions s JOIN admins a ON a.name = s.admin_name
	  WHERE s.token_hash = ?`, HashToken(token))
	if err != nil {
		if errors.Is(notFound(err), ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	now := s.now()
	if se.Disabled || now >= se.ExpiresUnix || now-se.LastSeenUnix > int64(idle/time.Second) {
		_, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, se.ID)
		return nil, err
	}
	// A quarter of a short idle timeout, so the spacing never ends a
	// session that is in use.
	if now-se.LastSeenUnix >= int64(min(touchEvery, idle/4)/time.Second) {
		if _, err := s.w.ExecContext(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id = ?`, now, se.ID); err != nil {
			return nil, err
		}
		se.LastSeenUnix = now
	}
	se.fill()
	return &se, nil
}

// ListSessions returns the sessions not yet past their absolute end, newest
// first. Idle ones are listed until a request or DeleteExpiredSessions
// finds them out.
func (s *Store) ListSessions(ctx context.Context) ([]*Session, error) {
	var out []*Session
	err := s.db.SelectContext(ctx, &out, `SELECT `+sessionCols+` FROM sessions s JOIN admins a ON a.name = s.admin_name
	  WHERE s.expires_at > ? ORDER BY s.id DESC`, s.now())
	for _, se := range out {
		se.fill()
	}
	return out, err
}

// EndSession deletes the session with this cookie value (logout).
func (s *Store) EndSession(ctx context.Context, token string) (*Session, error) {
	var se Session
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &se, `SELECT `+sessionCols+` FROM sessions s JOIN admins a ON a.name = s.admin_name
		  WHERE s.token_hash = ?`, HashToken(token)); err != nil {
			return notFound(err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, se.ID); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, "admin:"+se.Admin, "session.logout", "admin", se.Admin, nil, nil, "")
	})
	return &se, err
}

// RevokeSession deletes a session by its ID (an owner ending someone's
// login).
func (s *Store) RevokeSession(ctx context.Context, actor string, id int64) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		var admin string
		if err := tx.GetContext(ctx, &admin, `SELECT admin_name FROM sessions WHERE id = ?`, id); err != nil {
			return notFound(err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, actor, "session.revoke", "admin", admin, nil, nil, "")
	})
}

// DeleteExpiredSessions removes sessions past their absolute end or idle
// for longer than idle.
func (s *Store) DeleteExpiredSessions(ctx context.Context, idle time.Duration) (int64, error) {
	now := s.now()
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?`, now, now-int64(idle/time.Second))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
