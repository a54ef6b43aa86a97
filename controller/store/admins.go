package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxfleet/boxfleet/internal/totp"
)

// Admin roles, from most to least power.
const (
	RoleOwner    = "owner"    // everything, including admins and tokens
	RoleOperator = "operator" // users, plans, nodes, hooks, events
	RoleViewer   = "viewer"   // reads what an operator reads, without credentials
	RoleReseller = "reseller" // only the users it created, within its limits
)

// Roles lists every role.
var Roles = []string{RoleOwner, RoleOperator, RoleViewer, RoleReseller}

// Limits bound what a reseller may hand out; zero values mean no limit.
type Limits struct {
	MaxUsers   int64    `json:"max_users"`
	MaxTraffic int64    `json:"max_traffic_bytes"` // sum of its users' traffic limits
	Plans      []string `json:"plans"`             // plans it may create users from; empty: any
	Groups     []string `json:"groups"`            // node groups its users may use; empty: any
}

// Admin is an account as the API shows it: never its password hash, TOTP
// secret or recovery codes.
type Admin struct {
	Name          string     `json:"name"`
	Role          string     `json:"role"`
	Disabled      bool       `json:"disabled"`
	TOTP          bool       `json:"totp_enabled"`
	RecoveryCodes int        `json:"recovery_codes_left,omitempty"`
	Limits        *Limits    `json:"limits,omitempty"` // resellers only
	CreatedBy     string     `json:"created_by,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	LastLoginAt   *time.Time `json:"last_login_at,omitempty"`
}

type adminRow struct {
	ID           int64  `db:"id"`
	Name         string `db:"name"`
	Role         string `db:"role"`
	PasswordHash string `db:"password_hash"`
	Disabled     bool   `db:"disabled"`
	TOTPSecret   string `db:"totp_secret"`
	TOTPPending  string `db:"totp_pending"`
	TOTPLastStep int64  `db:"totp_last_step"`
	Recovery     string `db:"recovery_csv"`
	MaxUsers     int64  `db:"max_users"`
	MaxTraffic   int64  `db:"max_traffic"`
	Plans        string `db:"plans_csv"`
	Groups       string `db:"groups_csv"`
	CreatedBy    string `db:"created_by"`
	CreatedAt    int64  `db:"created_at"`
	LastLoginAt  int64  `db:"last_login_at"`
}

const adminCols = `id, name, role, password_hash, disabled, totp_secret, totp_pending, totp_last_step,
  recovery_csv, max_users, max_traffic, plans_csv, groups_csv, created_by, created_at, last_login_at`

func (r *adminRow) admin() *Admin {
	a := &Admin{Name: r.Name, Role: r.Role, Disabled: r.Disabled, TOTP: r.TOTPSecret != "",
		CreatedBy: r.CreatedBy, CreatedAt: unix(r.CreatedAt), LastLoginAt: optUnix(r.LastLoginAt)}
	if a.TOTP {
		a.RecoveryCodes = len(splitCSV(r.Recovery))
	}
	if r.Role == RoleReseller {
		a.Limits = r.limits()
	}
	return a
}

func (r *adminRow) limits() *Limits {
	return &Limits{MaxUsers: r.MaxUsers, MaxTraffic: r.MaxTraffic, Plans: splitCSV(r.Plans), Groups: splitCSV(r.Groups)}
}

func (r *adminRow) setLimits(l *Limits) error {
	if l == nil {
		return nil
	}
	if l.MaxUsers < 0 || l.MaxTraffic < 0 {
		return invalid("limits", "must not be negative")
	}
	plans, err := namesCSV("limits.plans", l.Plans)
	if err != nil {
		return err
	}
	groups, err := namesCSV("limits.groups", l.Groups)
	if err != nil {
		return err
	}
	r.MaxUsers, r.MaxTraffic, r.Plans, r.Groups = l.MaxUsers, l.MaxTraffic, plans, groups
	return nil
}

// namesCSV validates and joins plan or group names as groupsCSV does,
// naming the limit's own field in the error.
func namesCSV(field string, names []string) (string, error) {
	s, err := groupsCSV(names)
	if ve, ok := errors.AsType[*ValidationError](err); ok {
		return "", invalid(field, "%s", ve.Reason)
	}
	return s, err
}

// AdminSpec is what CreateAdmin and UpdateAdmin set; nil leaves a field.
type AdminSpec struct {
	Role     *string `json:"role,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
	Limits   *Limits `json:"limits,omitempty"`
}

func (sp *AdminSpec) apply(r *adminRow) error {
	if sp.Role != nil {
		if !slices.Contains(Roles, *sp.Role) {
			return invalid("role", "must be one of %s", strings.Join(Roles, ", "))
		}
		r.Role = *sp.Role
	}
	if sp.Disabled != nil {
		r.Disabled = *sp.Disabled
	}
	return r.setLimits(sp.Limits)
}

// CountAdmins returns how many accounts exist (the first start creates the
// owner when there are none).
func (s *Store) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := s.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM admins`)
	return n, err
}

// CreateAdmin adds an account with a password that passes the rules.
func (s *Store) CreateAdmin(ctx context.Context, actor, name, password string, spec AdminSpec) (*Admin, error) {
	if !ValidName(name) {
		return nil, invalid("name", "must match %s", nameRE)
	}
	if spec.Role == nil {
		return nil, invalid("role", "is required")
	}
	if err := CheckPasswordRules(password); err != nil {
		return nil, err
	}
	r := &adminRow{Name: name, PasswordHash: HashPassword(password), CreatedBy: actor, CreatedAt: s.now()}
	if err := spec.apply(r); err != nil {
		return nil, err
	}
	var a *Admin
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.NamedExecContext(ctx, `INSERT INTO admins (name, role, password_hash, disabled, recovery_csv,
		  max_users, max_traffic, plans_csv, groups_csv, created_by, created_at) VALUES (:name, :role, :password_hash,
		  :disabled, '', :max_users, :max_traffic, :plans_csv, :groups_csv, :created_by, :created_at)`, r)
		if isDuplicate(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		a = r.admin()
		return s.changed(ctx, tx, actor, "admin.create", "admin", name, nil, a, "")
	})
	return a, err
}

func (s *Store) getAdminRow(ctx context.Context, q sqlx.QueryerContext, name string) (*adminRow, error) {
	var r adminRow
	query := `SELECT ` + adminCols + ` FROM admins WHERE name = ?`
	if _, ok := q.(*sqlx.Tx); ok && s.dialect == mysqlDialect {
		query += ` FOR UPDATE`
	}
	if err := sqlx.GetContext(ctx, q, &r, query, name); err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

// GetAdmin returns one account.
func (s *Store) GetAdmin(ctx context.Context, name string) (*Admin, error) {
	r, err := s.getAdminRow(ctx, s.db, name)
	if err != nil {
		return nil, err
	}
	return r.admin(), nil
}

// ListAdmins returns every account by name.
func (s *Store) ListAdmins(ctx context.Context) ([]*Admin, error) {
	var rows []adminRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+adminCols+` FROM admins ORDER BY name`); err != nil {
		return nil, err
	}
	out := make([]*Admin, len(rows))
	for i := range rows {
		out[i] = rows[i].admin()
	}
	return out, nil
}

// mutateAdmin changes one account in a transaction and records the event.
// Changes that take power away (disable, role, password, TOTP) end the
// account's sessions in the same transaction, so that no open browser
// keeps the old rights.
func (s *Store) mutateAdmin(ctx context.Context, actor, action, name string, endSessions bool, fn func(r *adminRow) error) (*Admin, error) {
	var a *Admin
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getAdminRow(ctx, tx, name)
		if err != nil {
			return err
		}
		before := r.admin()
		if err := fn(r); err != nil {
			return err
		}
		if err := s.lastOwnerGuard(ctx, tx, before, r); err != nil {
			return err
		}
		if _, err := tx.NamedExecContext(ctx, `UPDATE admins SET role = :role, password_hash = :password_hash,
		  disabled = :disabled, totp_secret = :totp_secret, totp_pending = :totp_pending, totp_last_step = :totp_last_step,
		  recovery_csv = :recovery_csv, max_users = :max_users, max_traffic = :max_traffic, plans_csv = :plans_csv,
		  groups_csv = :groups_csv WHERE id = :id`, r); err != nil {
			return err
		}
		if endSessions {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE admin_name = ?`, name); err != nil {
				return err
			}
		}
		a = r.admin()
		return s.changed(ctx, tx, actor, action, "admin", name, before, a, "")
	})
	return a, err
}

// ErrLastOwner refuses a change that would leave no enabled owner: the
// controller would then be manageable only through the admin token file.
var ErrLastOwner = invalid("role", "this is the last enabled owner account")

func (s *Store) lastOwnerGuard(ctx context.Context, tx *sqlx.Tx, before *Admin, after *adminRow) error {
	if before.Role != RoleOwner || before.Disabled || (after.Role == RoleOwner && !after.Disabled) {
		return nil
	}
	var n int
	if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM admins WHERE role = ? AND disabled = 0 AND name <> ?`, RoleOwner, before.Name); err != nil {
		return err
	}
	if n == 0 {
		return ErrLastOwner
	}
	return nil
}

// UpdateAdmin changes role, disabled flag or limits.
func (s *Store) UpdateAdmin(ctx context.Context, actor, name string, spec AdminSpec) (*Admin, error) {
	end := spec.Role != nil || (spec.Disabled != nil && *spec.Disabled)
	return s.mutateAdmin(ctx, actor, "admin.update", name, end, spec.apply)
}

// SetAdminPassword replaces a password and ends the account's sessions.
func (s *Store) SetAdminPassword(ctx context.Context, actor, name, password string) error {
	if err := CheckPasswordRules(password); err != nil {
		return err
	}
	h := HashPassword(password)
	_, err := s.mutateAdmin(ctx, actor, "admin.password", name, true, func(r *adminRow) error {
		r.PasswordHash = h
		return nil
	})
	return err
}

// DeleteAdmin removes an account and its sessions and tokens. Users a
// reseller managed stay, still marked as its, for the owner to reassign or
// delete.
func (s *Store) DeleteAdmin(ctx context.Context, actor, name string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getAdminRow(ctx, tx, name)
		if err != nil {
			return err
		}
		before := r.admin()
		if err := s.lastOwnerGuard(ctx, tx, before, &adminRow{Role: "", Disabled: true}); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM admins WHERE id = ?`, `DELETE FROM sessions WHERE admin_name = ?`, `DELETE FROM api_tokens WHERE admin_name = ?`} {
			arg := any(name)
			if strings.Contains(q, "id = ?") {
				arg = r.ID
			}
			if _, err := tx.ExecContext(ctx, q, arg); err != nil {
				return err
			}
		}
		return s.changed(ctx, tx, actor, "admin.delete", "admin", name, before, nil, "")
	})
}

// Login is what a password check needs of an account.
type Login struct {
	Name         string
	Role         string
	PasswordHash string
	Disabled     bool
	TOTP         bool
}

// AdminLogin returns the credentials of an account, or ErrNotFound.
func (s *Store) AdminLogin(ctx context.Context, name string) (*Login, error) {
	r, err := s.getAdminRow(ctx, s.db, name)
	if err != nil {
		return nil, err
	}
	return &Login{Name: r.Name, Role: r.Role, PasswordHash: r.PasswordHash, Disabled: r.Disabled, TOTP: r.TOTPSecret != ""}, nil
}

// CheckSecondFactor accepts a current TOTP code, each at most once (a
// step at or before the last accepted one is refused), or an unused
// recovery code, which is then spent. It reports whether the factor was
// accepted and, for a recovery code, how many are left.
func (s *Store) CheckSecondFactor(ctx context.Context, name, code string) (ok bool, recoveryLeft int, err error) {
	code = strings.TrimSpace(code)
	err = s.tx(ctx, func(tx *sqlx.Tx) error {
		r, err := s.getAdminRow(ctx, tx, name)
		if err != nil || r.TOTPSecret == "" {
			return err
		}
		if step, match := totp.Match(r.TOTPSecret, code, s.Now()); match {
			if step <= r.TOTPLastStep {
				return nil // replayed
			}
			ok = true
			_, err = tx.ExecContext(ctx, `UPDATE admins SET totp_last_step = ? WHERE id = ?`, step, r.ID)
			return err
		}
		h := recoveryHash(code)
		codes := splitCSV(r.Recovery)
		i := slices.Index(codes, h)
		if i < 0 {
			return nil
		}
		codes = slices.Delete(codes, i, i+1)
		ok, recoveryLeft = true, len(codes)
		if _, err := tx.ExecContext(ctx, `UPDATE admins SET recovery_csv = ? WHERE id = ?`, strings.Join(codes, ","), r.ID); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, "admin:"+name, "admin.recovery_code", "admin", name, nil, nil, "a recovery code was used")
	})
	return ok, recoveryLeft, err
}

// recoveryHash normalises a recovery code (case, dashes) and hashes it:
// the codes carry 80 random bits, so a fast hash is enough.
func recoveryHash(code string) string {
	c := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	sum := sha256.Sum256([]byte(c))
	return hex.EncodeToString(sum[:])
}

// TOTPEnrolment is what an account needs to set up its authenticator.
type TOTPEnrolment struct {
	Secret string `json:"secret"`
	URI    string `json:"otpauth_uri"`
}

// BeginTOTP stores a fresh pending secret; it takes effect only when
// ConfirmTOTP sees a valid code from it, so that a mistyped enrolment
// cannot lock the account out.
func (s *Store) BeginTOTP(ctx context.Context, actor, name string) (*TOTPEnrolment, error) {
	secret := totp.NewSecret()
	_, err := s.mutateAdmin(ctx, actor, "admin.totp_begin", name, false, func(r *adminRow) error {
		r.TOTPPending = secret
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &TOTPEnrolment{Secret: secret, URI: totp.URI("boxfleet", name, secret)}, nil
}

// ConfirmTOTP enables the pending secret when code matches it and returns
// ten new recovery codes, shown this once.
func (s *Store) ConfirmTOTP(ctx context.Context, actor, name, code string) ([]string, error) {
	codes := make([]string, 10)
	hashes := make([]string, 10)
	for i := range codes {
		raw := make([]byte, 10) // 80 bits, 16 base32 characters
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		c := base32.StdEncoding.EncodeToString(raw)
		codes[i] = c[:4] + "-" + c[4:8] + "-" + c[8:12] + "-" + c[12:]
		hashes[i] = recoveryHash(codes[i])
	}
	_, err := s.mutateAdmin(ctx, actor, "admin.totp_enable", name, true, func(r *adminRow) error {
		if r.TOTPPending == "" {
			return invalid("code", "no enrolment is pending; start one first")
		}
		step, ok := totp.Match(r.TOTPPending, strings.TrimSpace(code), s.Now())
		if !ok {
			return invalid("code", "does not match the pending secret (check the device's clock)")
		}
		r.TOTPSecret, r.TOTPPending, r.TOTPLastStep = r.TOTPPending, "", step
		r.Recovery = strings.Join(hashes, ",")
		return nil
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// DisableTOTP removes the second factor (the way back for an admin who
// lost the device and the recovery codes).
func (s *Store) DisableTOTP(ctx context.Context, actor, name string) (*Admin, error) {
	return s.mutateAdmin(ctx, actor, "admin.totp_disable", name, true, func(r *adminRow) error {
		r.TOTPSecret, r.TOTPPending, r.TOTPLastStep, r.Recovery = "", "", 0, ""
		return nil
	})
}

// RecordLogin notes a successful login and audits it.
func (s *Store) RecordLogin(ctx context.Context, name, address string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE admins SET last_login_at = ? WHERE name = ?`, s.now(), name); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, "admin:"+name, "session.login", "admin", name, nil, nil, "from "+address)
	})
}

// RecordLoginFailure audits a refused login. The name is whatever was
// typed; one that no account could have is recorded as "-" (cutting it
// could split a character, which MySQL refuses).
func (s *Store) RecordLoginFailure(ctx context.Context, name, address, why string) error {
	if !ValidName(name) {
		name = "-"
	}
	return s.RecordEvent(ctx, "anonymous", "session.login_failed", "admin", name, why+" from "+address)
}
