package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
)

// Event is one entry of the append-only audit log.
type Event struct {
	ID         int64           `db:"id" json:"id"`
	At         time.Time       `db:"-" json:"at"`
	AtUnix     int64           `db:"at" json:"-"`
	Actor      string          `db:"actor" json:"actor"`
	Action     string          `db:"action" json:"action"`
	ObjectType string          `db:"object_type" json:"object_type"`
	ObjectName string          `db:"object_name" json:"object_name"`
	Before     json.RawMessage `db:"-" json:"before,omitempty"`
	After      json.RawMessage `db:"-" json:"after,omitempty"`
	BeforeText string          `db:"before_json" json:"-"`
	AfterText  string          `db:"after_json" json:"-"`
	Detail     string          `db:"detail" json:"detail,omitempty"`
}

// changed appends an event and, for users, bumps the user-set revision that
// nodes poll, inside the caller's transaction.
func (s *Store) changed(ctx context.Context, tx *sqlx.Tx, actor, action, typ, name string, before, after any, detail string) error {
	if err := s.appendEvent(ctx, tx, actor, action, typ, name, before, after, detail); err != nil {
		return err
	}
	if typ == "user" || action == "node.create" {
		_, err := tx.ExecContext(ctx, `UPDATE meta SET value = value + 1 WHERE name = 'users_revision'`)
		return err
	}
	return nil
}

func (s *Store) appendEvent(ctx context.Context, tx *sqlx.Tx, actor, action, typ, name string, before, after any, detail string) error {
	b, err := jsonOrEmpty(before)
	if err != nil {
		return err
	}
	a, err := jsonOrEmpty(after)
	if err != nil {
		return err
	}
	at := s.now()
	res, err := tx.ExecContext(ctx, `INSERT INTO events (at, actor, action, object_type, object_name, before_json, after_json, detail)
	  VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, at, actor, action, typ, name, b, a, detail)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	// Deliveries commit with the event or not at all: a hook never hears
	// of a change that was rolled back, nor misses one that was made.
	return s.enqueueHooks(ctx, tx, &Event{ID: id, AtUnix: at, Actor: actor, Action: action,
		ObjectType: typ, ObjectName: name, BeforeText: b, AfterText: a, Detail: detail})
}

// RecordEvent appends an event that changes nothing else (an action that
// was refused, a dry run).
func (s *Store) RecordEvent(ctx context.Context, actor, action, typ, name, detail string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		return s.appendEvent(ctx, tx, actor, action, typ, name, nil, nil, detail)
	})
}

func jsonOrEmpty(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// EventFilter selects events; Before pages backwards through the log.
type EventFilter struct {
	ObjectType, ObjectName, Action, Actor string
	Before                                int64 // id; 0 = newest
	Limit                                 int
}

// Events returns matching events newest first.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]*Event, error) {
	q, args := `SELECT id, at, actor, action, object_type, object_name, before_json, after_json, detail FROM events WHERE 1=1`, []any{}
	add := func(cond string, v any) { q += " AND " + cond; args = append(args, v) }
	if s.owner != "" {
		// A reseller reads the history of its own users and nothing else.
		add("object_type = 'user' AND object_name IN (SELECT name FROM users WHERE owner_admin = ?)", s.owner)
	}
	if f.ObjectType != "" {
		add("object_type = ?", f.ObjectType)
	}
	if f.ObjectName != "" {
		add("object_name = ?", f.ObjectName)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, noLimit(f.Limit))
	var rows []*Event
	if err := s.db.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, err
	}
	for _, e := range rows {
		e.At = unix(e.AtUnix)
		if e.BeforeText != "" {
			e.Before = json.RawMessage(e.BeforeText)
		}
		if e.AfterText != "" {
			e.After = json.RawMessage(e.AfterText)
		}
	}
	return rows, nil
}

// UsersRevision is the number nodes see as their user set's revision.
func (s *Store) UsersRevision(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.GetContext(ctx, &v, `SELECT value FROM meta WHERE name = 'users_revision'`)
	return v, err
}
