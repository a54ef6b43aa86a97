package store

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Hook is an outgoing HTTP hook: every audit-log event whose action one of
// its patterns matches is POSTed to URL, signed with the hook's secret. The
// secret is stored as is (signing needs it) and never leaves the store
// except towards the deliverer.
type Hook struct {
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	SecretSet bool      `json:"secret_set"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// HookSpec is what PutHook sets. An empty Secret keeps the secret of an
// existing hook, so that changing events does not mean handling it again.
type HookSpec struct {
	URL    string
	Secret string
	Events []string
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed" // gave up after the last attempt
)

// Delivery is one event on its way to one hook.
type Delivery struct {
	ID            int64      `db:"id" json:"id"`
	Hook          string     `db:"hook_name" json:"hook"`
	EventID       int64      `db:"event_id" json:"event_id"`
	Action        string     `db:"action" json:"action"`
	Status        string     `db:"status" json:"status"`
	Attempts      int        `db:"attempts" json:"attempts"`
	NextUnix      int64      `db:"next_attempt_at" json:"-"`
	NextAttemptAt *time.Time `db:"-" json:"next_attempt_at,omitempty"`
	LastStatus    int        `db:"last_status" json:"last_status,omitempty"`
	LastError     string     `db:"last_error" json:"last_error,omitempty"`
	CreatedUnix   int64      `db:"created_at" json:"-"`
	UpdatedUnix   int64      `db:"updated_at" json:"-"`
	CreatedAt     time.Time  `db:"-" json:"created_at"`
	UpdatedAt     time.Time  `db:"-" json:"updated_at"`
}

// Outgoing is a claimed delivery with what the deliverer needs to send it.
type Outgoing struct {
	ID       int64  `db:"id"`
	Hook     string `db:"hook_name"`
	Action   string `db:"action"`
	Body     string `db:"body"`
	Attempts int    `db:"attempts"`
	URL      string `db:"url"`
	Secret   string `db:"secret"`
}

type hookRow struct {
	Name      string `db:"name"`
	URL       string `db:"url"`
	Secret    string `db:"secret"`
	Events    string `db:"events_csv"`
	CreatedAt int64  `db:"created_at"`
	UpdatedAt int64  `db:"updated_at"`
}

func (r *hookRow) hook() *Hook {
	return &Hook{Name: r.Name, URL: r.URL, Events: splitCSV(r.Events), SecretSet: r.Secret != "",
		CreatedAt: unix(r.CreatedAt), UpdatedAt: unix(r.UpdatedAt)}
}

// audited is the hook as the audit log keeps it: the query string of the
// URL is left out, since receivers often take a token there.
func (h *Hook) audited() *Hook {
	c := *h
	if u, err := url.Parse(c.URL); err == nil && u.RawQuery != "" {
		u.RawQuery = "redacted"
		c.URL = u.String()
	}
	return &c
}

// MinHookSecret is the shortest secret a hook accepts.
const MinHookSecret = 16

const maxHookEvents = 32

// hookEventRE accepts an action (user.suspend), a family (user.*) or *.
var hookEventRE = regexp.MustCompile(`^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$`)

func (sp *HookSpec) validate(existing bool) error {
	u, err := url.Parse(sp.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "":
		return invalid("url", "must be an absolute http or https URL")
	case u.User != nil:
		return invalid("url", "must not carry a user name or password; receivers check the signature")
	case u.Fragment != "" || len(sp.URL) > 1024:
		return invalid("url", "must have no fragment and at most 1024 characters")
	case sp.Secret == "" && !existing:
		return invalid("secret", "is required for a new hook")
	case sp.Secret != "" && (len(sp.Secret) < MinHookSecret || len(sp.Secret) > 255):
		return invalid("secret", "must have %d to 255 characters", MinHookSecret)
	case sp.Secret != strings.TrimSpace(sp.Secret):
		return invalid("secret", "must not start or end with white space")
	case len(sp.Events) == 0:
		return invalid("events", "must name at least one event (an action such as user.suspend, a family such as node.*, or *)")
	case len(sp.Events) > maxHookEvents:
		return invalid("events", "at most %d patterns", maxHookEvents)
	}
	for _, e := range sp.Events {
		if !hookEventRE.MatchString(e) {
			return invalid("events", "%q is not an action (user.suspend), a family (node.*) or *", e)
		}
	}
	return nil
}

// HighVolumeEvents are the actions "*" leaves out: they come in bursts (a
// node re-registering, every user's period reset at a boundary, logins
// under a password-guessing attack) and would drown what a receiver of
// "*" wants. A hook hears them when it names them or their family
// (node.register, node.*).
var HighVolumeEvents = []string{"node.register", "user.period_reset", "session.login", "session.login_failed", "session.logout"}

// hookMatches reports whether an action is one a hook's patterns name.
func hookMatches(patterns []string, action string) bool {
	for _, p := range patterns {
		if p == "*" && !slices.Contains(HighVolumeEvents, action) {
			return true
		}
		if p == action || (strings.HasSuffix(p, ".*") && strings.HasPrefix(action, p[:len(p)-1])) {
			return true
		}
	}
	return false
}

const hookCols = `name, url, secret, events_csv, created_at, updated_at`

func (s *Store) getHookRow(ctx context.Context, q sqlx.QueryerContext, name string) (*hookRow, error) {
	var r hookRow
	if err := sqlx.GetContext(ctx, q, &r, `SELECT `+hookCols+` FROM hooks WHERE name = ?`, name); err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

// GetHook returns one hook, without its secret.
func (s *Store) GetHook(ctx context.Context, name string) (*Hook, error) {
	r, err := s.getHookRow(ctx, s.db, name)
	if err != nil {
		return nil, err
	}
	return r.hook(), nil
}

// ListHooks returns every hook by name, without secrets.
func (s *Store) ListHooks(ctx context.Context) ([]*Hook, error) {
	var rows []*hookRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+hookCols+` FROM hooks ORDER BY name`); err != nil {
		return nil, err
	}
	out := make([]*Hook, len(rows))
	for i, r := range rows {
		out[i] = r.hook()
	}
	return out, nil
}

// PutHook creates or replaces a hook. Pending deliveries go out with the
// new URL and secret.
func (s *Store) PutHook(ctx context.Context, actor, name string, sp HookSpec) (*Hook, error) {
	if !ValidName(name) {
		return nil, invalid("name", "must match %s", nameRE)
	}
	var out *Hook
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		before, err := s.getHookRow(ctx, tx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := sp.validate(before != nil); err != nil {
			return err
		}
		events := slices.Compact(slices.Sorted(slices.Values(sp.Events)))
		now := s.now()
		r := hookRow{Name: name, URL: sp.URL, Secret: sp.Secret, Events: strings.Join(events, ","), CreatedAt: now, UpdatedAt: now}
		var b any
		if before != nil {
			r.CreatedAt = before.CreatedAt
			if r.Secret == "" {
				r.Secret = before.Secret
			}
			b = before.hook().audited()
		}
		if len(r.Events) > 1024 {
			return invalid("events", "the patterns together must fit in 1024 characters")
		}
		if _, err := tx.NamedExecContext(ctx, `INSERT INTO hooks (`+hookCols+`) VALUES (:name, :url, :secret,
		  :events_csv, :created_at, :updated_at)`+s.upsert([]string{"name"}, "url", "secret", "events_csv", "updated_at"), &r); err != nil {
			return err
		}
		out = r.hook()
		detail := ""
		if before != nil && sp.Secret != "" && sp.Secret != before.Secret {
			detail = "secret changed"
		}
		return s.changed(ctx, tx, actor, "hook.put", "hook", name, b, out.audited(), detail)
	})
	return out, err
}

// DeleteHook removes a hook and the deliveries still waiting for it.
func (s *Store) DeleteHook(ctx context.Context, actor, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getHookRow(ctx, tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM hooks WHERE name = ?`, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM hook_deliveries WHERE hook_name = ?`, name); err != nil {
			return err
		}
		return s.changed(ctx, tx, actor, "hook.delete", "hook", name, r.hook().audited(), nil, "")
	})
}

// enqueueHooks queues ev for every hook whose patterns match its action,
// inside the transaction that appends ev.
func (s *Store) enqueueHooks(ctx context.Context, tx *sqlx.Tx, ev *Event) error {
	var hooks []struct {
		Name   string `db:"name"`
		Events string `db:"events_csv"`
	}
	if err := tx.SelectContext(ctx, &hooks, `SELECT name, events_csv FROM hooks`); err != nil {
		return err
	}
	var body []byte
	for _, h := range hooks {
		if !hookMatches(splitCSV(h.Events), ev.Action) {
			continue
		}
		if body == nil {
			var err error
			if body, err = json.Marshal(ev.fill()); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO hook_deliveries (hook_name, event_id, action, body, status,
		  attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)`,
			h.Name, ev.ID, ev.Action, string(body), DeliveryPending, ev.AtUnix, ev.AtUnix, ev.AtUnix); err != nil {
			return err
		}
	}
	return nil
}

// fill sets the fields the API shows from the stored ones.
func (e *Event) fill() *Event {
	e.At = unix(e.AtUnix)
	if e.BeforeText != "" {
		e.Before = json.RawMessage(e.BeforeText)
	}
	if e.AfterText != "" {
		e.After = json.RawMessage(e.AfterText)
	}
	return e
}

// HookDeliveries returns a hook's deliveries newest first.
func (s *Store) HookDeliveries(ctx context.Context, hook string, limit int) ([]*Delivery, error) {
	if _, err := s.getHookRow(ctx, s.db, hook); err != nil {
		return nil, err
	}
	var ds []*Delivery
	if err := s.db.SelectContext(ctx, &ds, `SELECT id, hook_name, event_id, action, status, attempts, next_attempt_at,
	  last_status, last_error, created_at, updated_at FROM hook_deliveries WHERE hook_name = ? ORDER BY id DESC LIMIT ?`,
		hook, noLimit(limit)); err != nil {
		return nil, err
	}
	for _, d := range ds {
		d.CreatedAt, d.UpdatedAt = unix(d.CreatedUnix), unix(d.UpdatedUnix)
		if d.Status == DeliveryPending {
			d.NextAttemptAt = optUnix(d.NextUnix)
		}
	}
	return ds, nil
}

// ClaimDeliveries takes up to limit due deliveries, oldest first, and
// pushes their next attempt hold into the future so that no other
// controller (a former leader finishing its cycle) sends them meanwhile. A
// claim that is neither recorded nor released, because the controller
// died, lapses after hold and the delivery goes out again.
func (s *Store) ClaimDeliveries(ctx context.Context, limit int, hold time.Duration) ([]*Outgoing, error) {
	var claimed []*Outgoing
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		now := s.now()
		var due []struct {
			Outgoing
			Next int64 `db:"next_attempt_at"`
		}
		if err := tx.SelectContext(ctx, &due, `SELECT d.id, d.hook_name, d.action, d.body, d.attempts, d.next_attempt_at,
		  h.url, h.secret FROM hook_deliveries d JOIN hooks h ON h.name = d.hook_name
		  WHERE d.status = ? AND d.next_attempt_at <= ? ORDER BY d.id LIMIT ?`, DeliveryPending, now, limit); err != nil {
			return err
		}
		until := now + int64(hold/time.Second)
		for _, d := range due {
			res, err := tx.ExecContext(ctx, `UPDATE hook_deliveries SET next_attempt_at = ?
			  WHERE id = ? AND status = ? AND next_attempt_at = ?`, until, d.ID, DeliveryPending, d.Next)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				o := d.Outgoing
				claimed = append(claimed, &o)
			}
		}
		return nil
	})
	return claimed, err
}

// DeliverySucceeded records a delivery the receiver accepted.
func (s *Store) DeliverySucceeded(ctx context.Context, id int64, attempts, status int) error {
	return s.recordDelivery(ctx, id, DeliveryDelivered, attempts, 0, status, "")
}

// DeliveryFailed records a failed attempt: the delivery is tried again
// after retryIn, or given up when retryIn is negative.
func (s *Store) DeliveryFailed(ctx context.Context, id int64, attempts, status int, reason string, retryIn time.Duration) error {
	st := DeliveryPending
	if retryIn < 0 {
		st, retryIn = DeliveryFailed, 0
	}
	return s.recordDelivery(ctx, id, st, attempts, retryIn, status, reason)
}

func (s *Store) recordDelivery(ctx context.Context, id int64, status string, attempts int, retryIn time.Duration, code int, reason string) error {
	if r := []rune(reason); len(r) > 200 {
		reason = string(r[:200])
	}
	now := s.now()
	_, err := s.w.ExecContext(ctx, `UPDATE hook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
	  last_status = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		status, attempts, now+int64(retryIn/time.Second), code, reason, now, id)
	return err
}

// ReleaseDeliveries gives back claimed deliveries that were not attempted;
// they are due again at once and keep their attempt count.
func (s *Store) ReleaseDeliveries(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE hook_deliveries SET next_attempt_at = ? WHERE status = ? AND id IN (?)`, s.now(), DeliveryPending, ids)
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, q, args...)
	return err
}

// PruneDeliveries forgets finished deliveries last touched before age ago.
func (s *Store) PruneDeliveries(ctx context.Context, age time.Duration) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM hook_deliveries WHERE status <> ? AND updated_at < ?`,
		DeliveryPending, s.now()-int64(age/time.Second))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
