package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// User statuses. Only active and on_hold users are served by nodes.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled" // suspended by an admin or an alert; never lifted automatically unless the alert did it
	StatusLimited  = "limited"  // over quota for the current period
	StatusExpired  = "expired"
	StatusOnHold   = "on_hold" // not used yet; the clock starts at first use
)

// Statuses lists every status, in the order metrics and docs show them.
var Statuses = []string{StatusActive, StatusDisabled, StatusLimited, StatusExpired, StatusOnHold}

// Reset strategies. Periods are calendar periods in UTC: a day starts at
// 00:00, a week on Monday, a month on the 1st, a year on 1 January.
var ResetStrategies = []string{"no_reset", "day", "week", "month", "year"}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ValidName reports whether s is a safe user, plan or node name: it ends up
// in metric labels, file names of client profiles and URLs.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// User is a subscriber as the API shows it.
type User struct {
	Name          string               `json:"name"`
	Credentials   sbconfig.Credentials `json:"credentials"`
	SubToken      string               `json:"subscription_token"`
	Status        string               `json:"status"`
	StatusReason  string               `json:"status_reason,omitempty"`
	TrafficLimit  int64                `json:"traffic_limit_bytes"`
	UsedUp        int64                `json:"used_upload_bytes"`
	UsedDown      int64                `json:"used_download_bytes"`
	ResetStrategy string               `json:"reset_strategy"`
	PeriodStart   time.Time            `json:"period_start"`
	ExpireAt      *time.Time           `json:"expire_at,omitempty"`
	OnHoldSeconds int64                `json:"on_hold_seconds,omitempty"`
	FirstUsedAt   *time.Time           `json:"first_used_at,omitempty"`
	DeviceLimit   int64                `json:"device_limit"`
	Groups        []string             `json:"groups"`
	Note          string               `json:"note"`
	Plan          string               `json:"plan,omitempty"`
	OwnerAdmin    string               `json:"owner_admin,omitempty"` // the reseller account managing the user
	CreatedAt     time.Time            `json:"created_at"`
	UpdatedAt     time.Time            `json:"updated_at"`
}

// Used is the traffic counted against the limit in the current period.
func (u *User) Used() int64 { return u.UsedUp + u.UsedDown }

// Served reports whether nodes should accept the user.
func (u *User) Served() bool { return u.Status == StatusActive || u.Status == StatusOnHold }

// MayUse reports whether the user may use a node in group; a user with no
// groups may use every node.
func (u *User) MayUse(group string) bool {
	return len(u.Groups) == 0 || slices.Contains(u.Groups, group)
}

// redacted is the copy the audit log keeps: who changed what, without the
// secrets that would let a reader of the log impersonate the user.
func (u *User) redacted() *User {
	c := *u
	c.Credentials = sbconfig.Credentials{}
	c.SubToken = ""
	return &c
}

type userRow struct {
	ID            int64  `db:"id"`
	Name          string `db:"name"`
	UUID          string `db:"uuid"`
	Password      string `db:"password"`
	SSKey16       string `db:"ss_key_16"`
	SSKey32       string `db:"ss_key_32"`
	SubToken      string `db:"sub_token"`
	Status        string `db:"status"`
	StatusReason  string `db:"status_reason"`
	TrafficLimit  int64  `db:"traffic_limit"`
	UsedUp        int64  `db:"used_up"`
	UsedDown      int64  `db:"used_down"`
	ResetStrategy string `db:"reset_strategy"`
	PeriodStart   int64  `db:"period_start"`
	ExpireAt      int64  `db:"expire_at"`
	OnHoldSeconds int64  `db:"on_hold_seconds"`
	FirstUsedAt   int64  `db:"first_used_at"`
	DeviceLimit   int64  `db:"device_limit"`
	Groups        string `db:"groups_csv"`
	Note          string `db:"note"`
	Plan          string `db:"plan"`
	OwnerAdmin    string `db:"owner_admin"`
	CreatedAt     int64  `db:"created_at"`
	UpdatedAt     int64  `db:"updated_at"`
}

const userCols = `id, name, uuid, password, ss_key_16, ss_key_32, sub_token, status, status_reason,
  traffic_limit, used_up, used_down, reset_strategy, period_start, expire_at, on_hold_seconds,
  first_used_at, device_limit, groups_csv, note, plan, owner_admin, created_at, updated_at`

func (r *userRow) user() *User {
	return &User{
		Name: r.Name,
		Credentials: sbconfig.Credentials{
			UUID: r.UUID, Password: r.Password, SSKey16: r.SSKey16, SSKey32: r.SSKey32,
		},
		SubToken:      r.SubToken,
		Status:        r.Status,
		StatusReason:  r.StatusReason,
		TrafficLimit:  r.TrafficLimit,
		UsedUp:        r.UsedUp,
		UsedDown:      r.UsedDown,
		ResetStrategy: r.ResetStrategy,
		PeriodStart:   unix(r.shownPeriodStart()),
		ExpireAt:      optUnix(r.ExpireAt),
		OnHoldSeconds: r.OnHoldSeconds,
		FirstUsedAt:   optUnix(r.FirstUsedAt),
		DeviceLimit:   r.DeviceLimit,
		Groups:        splitCSV(r.Groups),
		Note:          r.Note,
		Plan:          r.Plan,
		OwnerAdmin:    r.OwnerAdmin,
		CreatedAt:     unix(r.CreatedAt),
		UpdatedAt:     unix(r.UpdatedAt),
	}
}

func unix(s int64) time.Time { return time.Unix(s, 0).UTC() }

func optUnix(s int64) *time.Time {
	if s == 0 {
		return nil
	}
	t := unix(s)
	return &t
}

func splitCSV(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// UserSpec holds the settable fields of a user; nil leaves a field as it is
// (or as the plan sets it, on create).
type UserSpec struct {
	TrafficLimit  *int64     `json:"traffic_limit_bytes,omitempty"`
	ResetStrategy *string    `json:"reset_strategy,omitempty"`
	ExpireAt      *time.Time `json:"expire_at,omitempty"` // the zero time clears the expiry
	OnHoldSeconds *int64     `json:"on_hold_seconds,omitempty"`
	DeviceLimit   *int64     `json:"device_limit,omitempty"`
	Groups        *[]string  `json:"groups,omitempty"`
	Note          *string    `json:"note,omitempty"`
}

func (sp *UserSpec) apply(r *userRow) error {
	if sp.TrafficLimit != nil {
		if *sp.TrafficLimit < 0 {
			return invalid("traffic_limit_bytes", "must not be negative")
		}
		r.TrafficLimit = *sp.TrafficLimit
	}
	if sp.ResetStrategy != nil {
		if !slices.Contains(ResetStrategies, *sp.ResetStrategy) {
			return invalid("reset_strategy", "must be one of %s", strings.Join(ResetStrategies, ", "))
		}
		r.ResetStrategy = *sp.ResetStrategy
	}
	if sp.ExpireAt != nil {
		r.ExpireAt = 0
		if !sp.ExpireAt.IsZero() {
			r.ExpireAt = sp.ExpireAt.Unix()
		}
	}
	if sp.OnHoldSeconds != nil {
		if *sp.OnHoldSeconds < 0 {
			return invalid("on_hold_seconds", "must not be negative")
		}
		r.OnHoldSeconds = *sp.OnHoldSeconds
	}
	if sp.DeviceLimit != nil {
		if *sp.DeviceLimit < 0 {
			return invalid("device_limit", "must not be negative")
		}
		r.DeviceLimit = *sp.DeviceLimit
	}
	if sp.Groups != nil {
		g, err := groupsCSV(*sp.Groups)
		if err != nil {
			return err
		}
		r.Groups = g
	}
	if sp.Note != nil {
		if len(*sp.Note) > 1024 {
			return invalid("note", "longer than 1024 bytes")
		}
		r.Note = *sp.Note
	}
	return nil
}

func groupsCSV(groups []string) (string, error) {
	g := slices.Clone(groups)
	slices.Sort(g)
	g = slices.Compact(g)
	for _, x := range g {
		if !ValidName(x) {
			return "", invalid("groups", "%q is not a valid group name", x)
		}
	}
	s := strings.Join(g, ",")
	if len(s) > 1024 {
		return "", invalid("groups", "too many groups")
	}
	return s, nil
}

// NewToken returns a subscription token: 24 random bytes (192 bits),
// URL-safe.
func NewToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateUser adds a user from an optional plan and spec, with fresh
// credentials and token.
func (s *Store) CreateUser(ctx context.Context, actor, name, plan string, spec UserSpec) (*User, error) {
	if !ValidName(name) {
		return nil, invalid("name", "must match %s", nameRE)
	}
	now := s.now()
	creds := sbconfig.NewCredentials()
	r := &userRow{
		Name: name, UUID: creds.UUID, Password: creds.Password, SSKey16: creds.SSKey16, SSKey32: creds.SSKey32,
		SubToken: NewToken(), Status: StatusActive, ResetStrategy: "no_reset",
		PeriodStart: now, CreatedAt: now, UpdatedAt: now, OwnerAdmin: s.owner,
	}
	var u *User
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if plan != "" {
			p, err := s.getPlan(ctx, tx, plan)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					return invalid("plan", "no plan named %q", plan)
				}
				return err
			}
			p.applyTo(r, now)
		}
		if err := spec.apply(r); err != nil {
			return err
		}
		if s.owner != "" {
			if err := s.ownerLimits(ctx, tx, r, nil); err != nil {
				return err
			}
		}
		r.PeriodStart = newPeriodStart(r.ResetStrategy, now)
		r.Status = r.derivedStatus(now)
		// TrimPrefix, not ReplaceAll: "uuid, " contains "id, " too.
		res, err := tx.NamedExecContext(ctx, `INSERT INTO users (`+strings.TrimPrefix(userCols, "id, ")+`) VALUES (
		  :name, :uuid, :password, :ss_key_16, :ss_key_32, :sub_token, :status, :status_reason,
		  :traffic_limit, :used_up, :used_down, :reset_strategy, :period_start, :expire_at, :on_hold_seconds,
		  :first_used_at, :device_limit, :groups_csv, :note, :plan, :owner_admin, :created_at, :updated_at)`, r)
		if err != nil {
			if isDuplicate(err) {
				return ErrConflict
			}
			return err
		}
		r.ID, _ = res.LastInsertId()
		if err := s.indexUser(ctx, tx, r.ID); err != nil {
			return err
		}
		if err := s.indexGroups(ctx, tx, r.ID, r.Groups); err != nil {
			return err
		}
		u = r.user()
		return s.changed(ctx, tx, actor, "user.create", "user", name, nil, u.redacted(), "")
	})
	return u, err
}

// derivedStatus is the status the user's numbers imply. A user an admin or
// an alert disabled stays disabled: only an explicit resume lifts that.
func (r *userRow) derivedStatus(now int64) string {
	switch {
	case r.Status == StatusDisabled:
		return StatusDisabled
	case r.ExpireAt != 0 && r.ExpireAt <= now:
		return StatusExpired
	case r.TrafficLimit > 0 && r.UsedUp+r.UsedDown >= r.TrafficLimit:
		return StatusLimited
	case r.OnHoldSeconds > 0 && r.FirstUsedAt == 0 && r.ExpireAt == 0:
		return StatusOnHold
	}
	return StatusActive
}

func (s *Store) getUserRow(ctx context.Context, q sqlx.QueryerContext, name string) (*userRow, error) {
	var r userRow
	query := `SELECT ` + userCols + ` FROM users WHERE name = ?`
	if s.dialect == mysqlDialect {
		if _, ok := q.(*sqlx.Tx); ok {
			query += ` FOR UPDATE`
		}
	}
	if err := sqlx.GetContext(ctx, q, &r, query, name); err != nil {
		return nil, notFound(err)
	}
	if s.owner != "" && r.OwnerAdmin != s.owner {
		// Another's user is not there at all for a reseller, rather than
		// forbidden: no read or change reaches it. (Names are global, so
		// a create can still learn that a name is taken.)
		return nil, ErrNotFound
	}
	return &r, nil
}

// GetUser returns one user by name.
func (s *Store) GetUser(ctx context.Context, name string) (*User, error) {
	r, err := s.getUserRow(ctx, s.db, name)
	if err != nil {
		return nil, err
	}
	return r.user(), nil
}

// UserByToken finds the owner of a subscription token.
func (s *Store) UserByToken(ctx context.Context, token string) (*User, error) {
	var r userRow
	if err := s.byToken.GetContext(ctx, &r, token); err != nil {
		return nil, notFound(err)
	}
	return r.user(), nil
}

// UserFilter selects users for List; zero fields match everything.
type UserFilter struct {
	Status string
	Group  string
	Plan   string
	Search string // substring of name or note
	// Over90 keeps users who used at least 90 % of a non-zero limit.
	Over90 bool
	// ExpiringWithin keeps users whose expiry is in the next this many
	// seconds (not the already expired); 0 = no such filter.
	ExpiringWithin int64
	// OverDevices keeps users with a device limit whom Devices (distinct
	// source addresses now, by user, from Prometheus) shows above it.
	OverDevices bool
	Devices     map[string]int64
	// Sort is one of UserSorts; "" is by name.
	Sort   string
	Limit  int
	Offset int
}

// UserSorts are the orders ListUsers knows; "-" reverses.
var UserSorts = []string{"name", "-name", "used", "-used", "expire", "-expire", "created", "-created", "limit", "-limit"}

// orderBy is the ORDER BY of a sort. The id breaks ties, so that pages
// never repeat or skip a user; it is the id rather than the name because
// every index ends with it, so the sort's index gives the whole order.
// "Never expires" and "unlimited" sort as the largest values.
func orderBy(sort string) (string, error) {
	desc := strings.HasPrefix(sort, "-")
	dir := ""
	if desc {
		dir = " DESC"
	}
	switch strings.TrimPrefix(sort, "-") {
	case "", "name":
		return "name" + dir, nil
	case "used":
		return "used_total" + dir + ", id" + dir, nil
	case "expire":
		return "expire_sort" + dir + ", id" + dir, nil
	case "created":
		return "id" + dir, nil
	case "limit":
		return "limit_sort" + dir + ", id" + dir, nil
	}
	return "", invalid("sort", "must be one of %s", strings.Join(UserSorts, ", "))
}

// where builds the filter's condition; narrowed says that the trigram
// index narrows its search, so that no scan of every user is needed.
func (s *Store) where(ctx context.Context, f UserFilter) (cond string, args []any, narrowed bool, err error) {
	where := []string{"1=1"}
	args = []any{}
	if s.owner != "" {
		where, args = append(where, "owner_admin = ?"), append(args, s.owner)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	if f.Plan != "" {
		where, args = append(where, "plan = ?"), append(args, f.Plan)
	}
	if f.Group != "" {
		// A user with no groups may use every group; names compare with
		// case, as MayUse does (usergroups.go).
		c, a := s.groupCond(f.Group)
		where, args = append(where, c), append(args, a...)
	}
	if f.Search != "" {
		// An explicit ESCAPE: SQLite has no default LIKE escape character. Search
		// ignores case on both back ends: MySQL columns compare binary, so
		// both sides are lowered there; SQLite's LIKE ignores ASCII case
		// already (and, like its LOWER, no other), so it skips LOWER on a
		// hundred thousand rows.
		cond := "(name LIKE ? ESCAPE '!' OR note LIKE ? ESCAPE '!')"
		if s.dialect == mysqlDialect {
			cond = "(LOWER(name) LIKE ? ESCAPE '!' OR LOWER(note) LIKE ? ESCAPE '!')"
		}
		lowered := strings.ToLower(f.Search)
		// The trigram index narrows the rows the LIKE reads
		// (usersearch.go); the LIKE still decides.
		var narrow string
		var nargs []any
		narrow, nargs, narrowed, err = s.searchCandidates(ctx, lowered)
		if err != nil {
			return "", nil, false, err
		}
		if narrowed {
			where, args = append(where, narrow), append(args, nargs...)
		}
		where = append(where, cond)
		p := "%" + escapeLike(lowered) + "%"
		args = append(args, p, p)
	}
	if f.Over90 {
		where = append(where, s.over90Cond(f))
	}
	if f.ExpiringWithin > 0 {
		// expire_sort is expire_at for every user that expires at all,
		// and indexed.
		now := s.now()
		where, args = append(where, "(expire_sort > ? AND expire_sort <= ?)"), append(args, now, now+f.ExpiringWithin)
	}
	if f.OverDevices {
		// The counts come from Prometheus, the limits from here: only the
		// few users connected now are candidates.
		over, err := s.overDevices(ctx, f.Devices)
		if err != nil {
			return "", nil, false, err
		}
		if len(over) == 0 {
			where = append(where, "1=0")
		} else {
			q, a, err := sqlx.In("name IN (?)", over)
			if err != nil {
				return "", nil, false, err
			}
			where, args = append(where, q), append(args, a...)
		}
	}
	return strings.Join(where, " AND "), args, narrowed, nil
}

// The "over 90 %" filter, two ways. over90Flag is the indexed virtual
// column (migration 28): counting it and reading it by expiry are index
// reads. over90ByUsage is the same test written on the row's columns. By
// usage, MySQL finds it in its (status, used_total, id, traffic_limit)
// index alone (migration 49); through the flag it read the row of every
// user it passed to learn whether the user was over 90 %: thousands of
// rows a page when the heaviest users are unlimited (p95 50 ms on
// 100,000 users). By the other orders but expiry, MySQL reads the rows in
// the sort's order anyway; and MariaDB 10.11 answered "over90 = 1 ORDER
// BY name LIMIT 2" from the flag's index with no rows at all, now and
// then, while the server was busy (TestOver90SameByEveryOrder).
const (
	over90Flag    = "over90 = 1"
	over90ByUsage = "(traffic_limit > 0 AND used_total >= traffic_limit - traffic_limit / 10)"
)

func (s *Store) over90Cond(f UserFilter) string {
	if s.dialect == mysqlDialect && strings.TrimPrefix(f.Sort, "-") != "expire" {
		return over90ByUsage
	}
	return over90Flag
}

// overDevices returns the users of devices whose count is above their
// device limit.
func (s *Store) overDevices(ctx context.Context, devices map[string]int64) ([]string, error) {
	var names []string
	for n, d := range devices {
		if d > 0 {
			names = append(names, n)
		}
	}
	var over []string
	for start := 0; start < len(names); start += 1000 {
		part := names[start:min(start+1000, len(names))]
		q, args, err := sqlx.In(`SELECT name, device_limit FROM users WHERE device_limit > 0 AND name IN (?)`, part)
		if err != nil {
			return nil, err
		}
		var rows []struct {
			Name  string `db:"name"`
			Limit int64  `db:"device_limit"`
		}
		if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(q), args...); err != nil {
			return nil, err
		}
		for _, r := range rows {
			if devices[r.Name] > r.Limit {
				over = append(over, r.Name)
			}
		}
	}
	return over, nil
}

// ListUsers returns one page of users in the filter's order, and the
// number of users matching the filter.
func (s *Store) ListUsers(ctx context.Context, f UserFilter) ([]*User, int, error) {
	order, err := orderBy(f.Sort)
	if err != nil {
		return nil, 0, err
	}
	cond, args, narrowed, err := s.where(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	// On MySQL the count runs beside the page: each reads an index of its
	// own (tens of ms each at 100,000 users, a deep offset or a large
	// status), and the server runs them on two threads, so the answer
	// takes the longer of the two instead of their sum. It runs to its end
	// even when the page turns out not to need it (a short last page), so
	// that no connection is closed mid-query; SQLite answers both in a few
	// ms and counts after the page only when needed. A group filter counts
	// after the page too: its page and its count read the same small
	// index, and side by side MariaDB answered them in 60-90 ms instead of
	// about 20 in two runs of three.
	var counted chan countResult
	if f.Search == "" && f.Group == "" && s.dialect != sqlite {
		counted = make(chan countResult, 1)
		go func() {
			n, err := s.countUsers(context.WithoutCancel(ctx), f, cond, args, narrowed)
			counted <- countResult{n, err}
		}()
	}
	// The page first, by id alone: the sort's index answers it without
	// reading whole rows, even deep into the list; then the page's rows.
	var ids []int64
	var total int
	if f.Search != "" {
		// A substring search reads every row whatever the index: one
		// scan that also counts (a window function), not two.
		var page []struct {
			ID    int64 `db:"id"`
			Total int   `db:"total"`
		}
		q := `SELECT id, COUNT(*) OVER () AS total FROM ` + s.scanFrom(f, narrowed) + ` WHERE ` + cond + ` ORDER BY ` + order + ` LIMIT ? OFFSET ?`
		if err := s.db.SelectContext(ctx, &page, q, append(slices.Clone(args), noLimit(f.Limit), f.Offset)...); err != nil {
			return nil, 0, err
		}
		for _, p := range page {
			ids, total = append(ids, p.ID), p.Total
		}
	} else if s.mergeStatuses(f) {
		q, a := mergedPage(cond, args, order, f)
		if err := s.db.SelectContext(ctx, &ids, q, a...); err != nil {
			return nil, 0, err
		}
	} else {
		q := `SELECT id FROM users WHERE ` + cond + ` ORDER BY ` + order + ` LIMIT ? OFFSET ?`
		if err := s.db.SelectContext(ctx, &ids, q, append(slices.Clone(args), noLimit(f.Limit), f.Offset)...); err != nil {
			return nil, 0, err
		}
	}
	if f.Search == "" || len(ids) == 0 {
		// A short page that ends the list holds the last match: no count
		// needed.
		if f.Limit > 0 && len(ids) < f.Limit && (len(ids) > 0 || f.Offset == 0) {
			total = f.Offset + len(ids)
		} else if counted != nil {
			c := <-counted
			if c.err != nil {
				return nil, 0, c.err
			}
			total = c.n
		} else if total, err = s.countUsers(ctx, f, cond, args, narrowed); err != nil {
			return nil, 0, err
		}
	}
	var rows []userRow
	if len(ids) > 0 {
		q, a, err := sqlx.In(`SELECT `+userCols+` FROM users WHERE id IN (?) ORDER BY `+order, ids)
		if err != nil {
			return nil, 0, err
		}
		if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(q), a...); err != nil {
			return nil, 0, err
		}
	}
	out := make([]*User, len(rows))
	for i := range rows {
		out[i] = rows[i].user()
	}
	return out, total, nil
}

type countResult struct {
	n   int
	err error
}

// countUsers counts the users matching the filter's condition.
func (s *Store) countUsers(ctx context.Context, f UserFilter, cond string, args []any, narrowed bool) (int, error) {
	var total int
	if s.groupOnly(f) {
		err := s.db.GetContext(ctx, &total, `SELECT COUNT(*) FROM user_groups WHERE grp IN ('', ?)`, f.Group)
		return total, err
	}
	// Counted from the flag's index, not the usage index that found the
	// page.
	err := s.db.GetContext(ctx, &total, `SELECT COUNT(*) FROM `+s.scanFrom(f, narrowed)+` WHERE `+
		strings.Replace(cond, over90ByUsage, over90Flag, 1), args...)
	return total, err
}

// mergeStatuses says whether a page in usage order across statuses is
// read as a merge of each status's page: usage is indexed only after the
// status (migrations 44-48: every index holding usage costs the ledger).
// On SQLite "over 90 %" has an index of its own by usage.
func (s *Store) mergeStatuses(f UserFilter) bool {
	return strings.TrimPrefix(f.Sort, "-") == "used" && f.Status == "" && !(f.Over90 && s.dialect == sqlite)
}

// mergedPage reads the first offset+limit users of each status from its
// index in usage order, and takes the page from their union: a few
// hundred index entries instead of sorting every user.
func mergedPage(cond string, args []any, order string, f UserFilter) (string, []any) {
	n := int64(noLimit(f.Limit)) + int64(f.Offset)
	parts := make([]string, len(Statuses))
	var all []any
	for i, st := range Statuses {
		parts[i] = fmt.Sprintf(`SELECT id, used_total FROM (SELECT id, used_total FROM users WHERE status = ? AND %s ORDER BY %s LIMIT ?) AS s%d`, cond, order, i)
		all = append(all, st)
		all = append(all, args...)
		all = append(all, n)
	}
	q := `SELECT id FROM (` + strings.Join(parts, ` UNION ALL `) + `) AS m ORDER BY ` + order + ` LIMIT ? OFFSET ?`
	return q, append(all, noLimit(f.Limit), f.Offset)
}

// scanFrom is the FROM of a query that reads every user anyway (a
// substring search the trigram index cannot narrow; counting a group): on
// SQLite, the narrow index that holds what the filter reads, which its
// planner does not pick by itself for LIKE and INSTR (migrations 38 and
// 39); twice as fast on 100,000 users.
func (s *Store) scanFrom(f UserFilter, narrowed bool) string {
	switch {
	case s.dialect != sqlite:
	case narrowed:
	case f.Search != "":
		return "users INDEXED BY users_search"
	case f.Group != "" && strings.Contains(f.Group, ",") && f.Status == "" && f.Plan == "" && !f.Over90 && f.ExpiringWithin == 0 && !f.OverDevices:
		return "users INDEXED BY users_groups"
	}
	return "users"
}

// UserNames returns the names of every user the filter matches, in its
// order (bulk actions on "everything matching").
func (s *Store) UserNames(ctx context.Context, f UserFilter) ([]string, error) {
	order, err := orderBy(f.Sort)
	if err != nil {
		return nil, err
	}
	cond, args, _, err := s.where(ctx, f)
	if err != nil {
		return nil, err
	}
	var names []string
	err = s.db.SelectContext(ctx, &names, `SELECT name FROM users WHERE `+cond+` ORDER BY `+order+` LIMIT ?`, append(args, noLimit(f.Limit))...)
	return names, err
}

// noLimit makes a zero limit mean "all", as the filters' zero values do.
// LIMIT 0 would return nothing.
func noLimit(n int) int {
	if n <= 0 {
		return math.MaxInt32
	}
	return n
}

// escapeLike neutralises LIKE wildcards in user input for ESCAPE '!'. Not
// backslash: it means different things inside MySQL and SQLite literals.
func escapeLike(s string) string {
	return strings.NewReplacer(`!`, `!!`, `%`, `!%`, `_`, `!_`).Replace(s)
}

// AllUsers returns every user (for metrics and node user sets).
func (s *Store) AllUsers(ctx context.Context) ([]*User, error) {
	var rows []userRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+userCols+` FROM users ORDER BY name`); err != nil {
		return nil, err
	}
	out := make([]*User, len(rows))
	for i := range rows {
		out[i] = rows[i].user()
	}
	return out, nil
}

// mutateUser loads a user for update, lets fn change it, writes it back,
// bumps the user-set revision and records the event, all in one
// transaction.
func (s *Store) mutateUser(ctx context.Context, actor, action, name, detail string, fn func(r *userRow, now int64) error) (*User, error) {
	return s.mutateUserAfter(ctx, nil, actor, action, name, detail, fn)
}

// mutateUserAfter is mutateUser with before run first in the transaction,
// ahead of the user's row lock.
func (s *Store) mutateUserAfter(ctx context.Context, before func(*sqlx.Tx) error, actor, action, name, detail string, fn func(r *userRow, now int64) error) (*User, error) {
	var u *User
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		if before != nil {
			if err := before(tx); err != nil {
				return err
			}
		}
		r, err := s.getUserRow(ctx, tx, name)
		if err != nil {
			return err
		}
		before, orig := r.user(), *r
		now := s.now()
		if err := fn(r, now); err != nil {
			return err
		}
		if s.owner != "" {
			if err := s.ownerLimits(ctx, tx, r, &orig); err != nil {
				return err
			}
		}
		r.UpdatedAt = now
		if err := s.writeUser(ctx, tx, r); err != nil {
			return err
		}
		if r.Name != orig.Name || r.Note != orig.Note {
			if err := s.indexUser(ctx, tx, r.ID); err != nil {
				return err
			}
		}
		if r.Groups != orig.Groups {
			if err := s.indexGroups(ctx, tx, r.ID, r.Groups); err != nil {
				return err
			}
		}
		u = r.user()
		return s.changed(ctx, tx, actor, action, "user", name, before.redacted(), u.redacted(), detail)
	})
	return u, err
}

func (s *Store) writeUser(ctx context.Context, tx *sqlx.Tx, r *userRow) error {
	_, err := tx.NamedExecContext(ctx, `UPDATE users SET uuid = :uuid, password = :password,
	  ss_key_16 = :ss_key_16, ss_key_32 = :ss_key_32, sub_token = :sub_token, status = :status,
	  status_reason = :status_reason, traffic_limit = :traffic_limit, used_up = :used_up,
	  used_down = :used_down, reset_strategy = :reset_strategy, period_start = :period_start,
	  expire_at = :expire_at, on_hold_seconds = :on_hold_seconds, first_used_at = :first_used_at,
	  device_limit = :device_limit, groups_csv = :groups_csv, note = :note, plan = :plan,
	  updated_at = :updated_at WHERE id = :id`, r)
	return err
}

// UpdateUser applies spec and re-derives the status (a raised limit lifts
// "limited", a new expiry lifts "expired").
func (s *Store) UpdateUser(ctx context.Context, actor, name string, spec UserSpec) (*User, error) {
	return s.mutateUser(ctx, actor, "user.update", name, "", func(r *userRow, now int64) error {
		old := r.ResetStrategy
		if err := spec.apply(r); err != nil {
			return err
		}
		if r.ResetStrategy != old {
			r.PeriodStart = switchedPeriodStart(r.ResetStrategy, now, r.PeriodStart)
		}
		r.Status = r.derivedStatus(now)
		return nil
	})
}

// SuspendUser disables a user; reason says who asked and why (admin, or the
// alert that fired), and decides who may lift it.
func (s *Store) SuspendUser(ctx context.Context, actor, name, reason string) (*User, error) {
	if s.owner != "" {
		reason = resellerMark(s.owner) + strings.TrimPrefix(reason, "admin: ")
	}
	return s.mutateUser(ctx, actor, "user.suspend", name, reason, func(r *userRow, now int64) error {
		r.Status, r.StatusReason = StatusDisabled, reason
		return nil
	})
}

// ResumeUser lifts a suspension; the user comes back as whatever the
// numbers say (active, limited, expired, on hold).
func (s *Store) ResumeUser(ctx context.Context, actor, name string) (*User, error) {
	return s.mutateUser(ctx, actor, "user.resume", name, "", func(r *userRow, now int64) error {
		if s.owner != "" && r.Status == StatusDisabled && !strings.HasPrefix(r.StatusReason, resellerMark(s.owner)) {
			return overLimit("status", "suspended by staff or an alert (%s); only staff can resume the user", r.StatusReason)
		}
		r.Status, r.StatusReason = StatusActive, ""
		r.Status = r.derivedStatus(now)
		return nil
	})
}

// ResetUsage zeroes the current period's usage and starts a new period.
func (s *Store) ResetUsage(ctx context.Context, actor, name string) (*User, error) {
	// Traffic committed but not yet folded belongs to the period that ends.
	dropPending := func(tx *sqlx.Tx) error { return s.dropPending(ctx, tx, name) }
	return s.mutateUserAfter(ctx, dropPending, actor, "user.reset", name, "", func(r *userRow, now int64) error {
		r.UsedUp, r.UsedDown = 0, 0
		r.PeriodStart = newPeriodStart(r.ResetStrategy, now)
		r.Status = r.derivedStatus(now)
		return nil
	})
}

// RotateToken gives the user a new subscription token; the old one stops
// working when the transaction commits.
func (s *Store) RotateToken(ctx context.Context, actor, name string) (*User, error) {
	return s.mutateUser(ctx, actor, "user.rotate_token", name, "", func(r *userRow, now int64) error {
		r.SubToken = NewToken()
		return nil
	})
}

// DeleteUser removes a user; its ledger history stays.
func (s *Store) DeleteUser(ctx context.Context, actor, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		// A user created later under the same name starts from nothing.
		if err := s.dropPending(ctx, tx, name); err != nil {
			return err
		}
		r, err := s.getUserRow(ctx, tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, r.ID); err != nil {
			return err
		}
		if err := s.unindexUser(ctx, tx, r.ID); err != nil {
			return err
		}
		return s.changed(ctx, tx, actor, "user.delete", "user", name, r.user().redacted(), nil, "")
	})
}

// UserGauge is what the metrics collector needs of a user: no credentials,
// no text, so a scrape of 100,000 users stays small.
type UserGauge struct {
	Name         string `db:"name"`
	Status       string `db:"status"`
	Used         int64  `db:"used"`
	TrafficLimit int64  `db:"traffic_limit"`
	ExpireAt     int64  `db:"expire_at"`
	DeviceLimit  int64  `db:"device_limit"`
	// ResetStrategy and PeriodStart give PeriodEnd.
	ResetStrategy string `db:"reset_strategy"`
	PeriodStart   int64  `db:"period_start"`
}

// PeriodEnd is when the sweep next resets the user's use (the end of the
// current period); ok is false for no_reset, whose one period never ends.
func (g *UserGauge) PeriodEnd() (time.Time, bool) {
	return NextPeriodStart(g.ResetStrategy, time.Unix(g.PeriodStart, 0))
}

// UserGauges streams every user's gauge values to fn, without holding them
// all in memory.
func (s *Store) UserGauges(ctx context.Context, fn func(*UserGauge)) error {
	rows, err := s.db.QueryxContext(ctx, `SELECT name, status, used_up + used_down AS used, traffic_limit, expire_at, device_limit,
	  reset_strategy, period_start FROM users`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var g UserGauge
	for rows.Next() {
		// Scan, not StructScan: sqlx maps the columns to fields by
		// reflection on every row: 7 % of the CPU of a 100,000-user scrape
		// in a profile of boxfleet serve.
		if err := rows.Scan(&g.Name, &g.Status, &g.Used, &g.TrafficLimit, &g.ExpireAt, &g.DeviceLimit, &g.ResetStrategy, &g.PeriodStart); err != nil {
			return err
		}
		fn(&g)
	}
	return rows.Err()
}

// resellerMark starts the reason of a suspension a reseller made: still an
// admin's (no alert lifts it), and the one kind the reseller may lift.
func resellerMark(owner string) string { return "admin: [" + owner + "] " }
