package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Plan is a named template for new users' limits.
type Plan struct {
	Name            string    `db:"name" json:"name"`
	TrafficLimit    int64     `db:"traffic_limit" json:"traffic_limit_bytes"`
	ResetStrategy   string    `db:"reset_strategy" json:"reset_strategy"`
	DurationSeconds int64     `db:"duration_seconds" json:"duration_seconds"`
	OnHoldSeconds   int64     `db:"on_hold_seconds" json:"on_hold_seconds"`
	DeviceLimit     int64     `db:"device_limit" json:"device_limit"`
	GroupsCSV       string    `db:"groups_csv" json:"-"`
	Groups          []string  `db:"-" json:"groups"`
	Note            string    `db:"note" json:"note"`
	CreatedUnix     int64     `db:"created_at" json:"-"`
	UpdatedUnix     int64     `db:"updated_at" json:"-"`
	CreatedAt       time.Time `db:"-" json:"created_at"`
	UpdatedAt       time.Time `db:"-" json:"updated_at"`
}

func (p *Plan) fill() *Plan {
	p.Groups = splitCSV(p.GroupsCSV)
	p.CreatedAt, p.UpdatedAt = unix(p.CreatedUnix), unix(p.UpdatedUnix)
	return p
}

// applyTo copies the plan into a new user. A plan with on_hold_seconds
// starts the user on hold: the duration runs from first use. Otherwise
// duration_seconds runs from now.
func (p *Plan) applyTo(r *userRow, now int64) {
	r.Plan = p.Name
	r.TrafficLimit = p.TrafficLimit
	r.ResetStrategy = p.ResetStrategy
	r.DeviceLimit = p.DeviceLimit
	r.Groups = p.GroupsCSV
	r.OnHoldSeconds = p.OnHoldSeconds
	if p.OnHoldSeconds == 0 && p.DurationSeconds > 0 {
		r.ExpireAt = now + p.DurationSeconds
	}
}

func (p *Plan) validate() error {
	switch {
	case !ValidName(p.Name):
		return invalid("name", "must match %s", nameRE)
	case p.TrafficLimit < 0:
		return invalid("traffic_limit_bytes", "must not be negative")
	case !slices.Contains(ResetStrategies, p.ResetStrategy):
		return invalid("reset_strategy", "must be one of %s", strings.Join(ResetStrategies, ", "))
	case p.DurationSeconds < 0 || p.OnHoldSeconds < 0 || p.DeviceLimit < 0:
		return invalid("duration_seconds", "durations and limits must not be negative")
	}
	g, err := groupsCSV(p.Groups)
	p.GroupsCSV = g
	return err
}

const planCols = `name, traffic_limit, reset_strategy, duration_seconds, on_hold_seconds, device_limit, groups_csv, note, created_at, updated_at`

func (s *Store) getPlan(ctx context.Context, q sqlx.QueryerContext, name string) (*Plan, error) {
	var p Plan
	if err := sqlx.GetContext(ctx, q, &p, `SELECT `+planCols+` FROM plans WHERE name = ?`, name); err != nil {
		return nil, notFound(err)
	}
	return p.fill(), nil
}

// GetPlan returns one plan.
func (s *Store) GetPlan(ctx context.Context, name string) (*Plan, error) {
	return s.getPlan(ctx, s.db, name)
}

// ListPlans returns every plan by name.
func (s *Store) ListPlans(ctx context.Context) ([]*Plan, error) {
	var ps []*Plan
	if err := s.db.SelectContext(ctx, &ps, `SELECT `+planCols+` FROM plans ORDER BY name`); err != nil {
		return nil, err
	}
	for _, p := range ps {
		p.fill()
	}
	return ps, nil
}

// PutPlan creates or replaces a plan. Users made from it keep their own
// copy of its fields.
func (s *Store) PutPlan(ctx context.Context, actor string, p Plan) (*Plan, error) {
	if p.ResetStrategy == "" {
		p.ResetStrategy = "no_reset"
	}
	if p.Groups == nil {
		p.Groups = []string{}
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	now := s.now()
	p.CreatedUnix, p.UpdatedUnix = now, now
	var out *Plan
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		before, err := s.getPlan(ctx, tx, p.Name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if before != nil {
			p.CreatedUnix = before.CreatedUnix
		}
		_, err = tx.NamedExecContext(ctx, `INSERT INTO plans (`+planCols+`) VALUES (:name, :traffic_limit,
		  :reset_strategy, :duration_seconds, :on_hold_seconds, :device_limit, :groups_csv, :note, :created_at, :updated_at)`+
			s.upsert([]string{"name"}, "traffic_limit", "reset_strategy", "duration_seconds", "on_hold_seconds",
				"device_limit", "groups_csv", "note", "updated_at"), &p)
		if err != nil {
			return err
		}
		out = p.fill()
		var b any
		if before != nil {
			b = before
		}
		return s.changed(ctx, tx, actor, "plan.put", "plan", p.Name, b, out, "")
	})
	return out, err
}

// DeletePlan removes a plan; users made from it are unaffected.
func (s *Store) DeletePlan(ctx context.Context, actor, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		before, err := s.getPlan(ctx, tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM plans WHERE name = ?`, name); err != nil {
			return err
		}
		return s.changed(ctx, tx, actor, "plan.delete", "plan", name, before, nil, "")
	})
}
