package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// SessionOptions are the browser sessions' timeouts.
type SessionOptions struct {
	Idle   time.Duration // a session unused this long ends
	MaxAge time.Duration // a session ends this long after login, used or not
}

// Cookie names. Over TLS the __Host- prefix makes browsers refuse the
// cookie unless it is Secure, host-only and for Path=/, so that no
// subdomain or plain-HTTP page can plant or overwrite it. Browsers drop
// such a cookie when it comes without Secure, so plain HTTP uses the plain
// name.
const (
	cookieSecure = "__Host-boxfleet_session"
	cookiePlain  = "boxfleet_session"
)

func sessionCookie(r *http.Request) string {
	for _, n := range []string{cookieSecure, cookiePlain} {
		if c, err := r.Cookie(n); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

func (a *API) setSessionCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	secure := a.addr.Secure(r)
	name := cookiePlain
	if secure {
		name = cookieSecure
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
}

type loginBody struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
}

// whoami is what GET /api/v1/session and a login answer.
type whoami struct {
	Actor     string     `json:"actor"`
	Name      string     `json:"name,omitempty"` // the account, for sessions and reseller tokens
	Role      string     `json:"role"`
	Via       string     `json:"via"` // session or token
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	IdleFor   int64      `json:"idle_timeout_seconds,omitempty"`
	// TOTP: the account has a second factor; false for a credential
	// without an account (a token-file admin token).
	TOTP bool `json:"totp_enabled"`
}

// login checks a name, password and (when the account has one) TOTP code
// and starts a session. Every refusal looks the same and, up to the TOTP
// step, takes the same time: a name that does not exist still costs one
// argon2id check.
func (a *API) login(w http.ResponseWriter, r *http.Request) (any, error) {
	// A login form posted from another site would log the victim into the
	// attacker's account: the same cross-origin rule as for any cookie
	// request applies.
	if err := a.cop.Check(r); err != nil {
		return nil, &apiclient.Error{Status: http.StatusForbidden, Code: apiclient.CodeForbidden, Message: "cross-origin request refused"}
	}
	var b loginBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	addr := a.addr.Client(r)
	// The name is whatever was typed: cut it so that a megabyte of name
	// cannot become a megabyte of limiter table.
	name := b.Name
	if len(name) > 64 {
		name = name[:64]
	}
	addrKey, nameKey := "addr:"+limitKey(addr), "name:"+name
	now := a.now()
	if until := a.limiter.attempt(now, addrKey, nameKey); !until.IsZero() {
		a.logins.WithLabelValues("locked").Inc()
		retry := int(until.Sub(now).Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		return nil, &apiclient.Error{Status: http.StatusTooManyRequests, Code: apiclient.CodeRateLimited,
			Message: fmt.Sprintf("too many failed logins; try again after %s (in %d s)", until.UTC().Format(time.RFC3339), retry)}
	}
	acct, err := a.store.AdminLogin(r.Context(), b.Name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	why := ""
	switch {
	case acct == nil:
		store.DummyPasswordCheck(b.Password)
		why = "unknown account"
	case !store.CheckPassword(acct.PasswordHash, b.Password):
		why = "wrong password"
	case acct.Disabled:
		why = "account disabled"
	case acct.TOTP && b.TOTP == "":
		why = "no TOTP code"
	case acct.TOTP:
		ok, _, err := a.store.CheckSecondFactor(r.Context(), acct.Name, b.TOTP)
		if err != nil {
			return nil, err
		}
		if !ok {
			why = "wrong or reused TOTP code"
		}
	}
	if why != "" {
		locked := a.limiter.failed(now, addrKey, nameKey)
		a.logins.WithLabelValues("failure").Inc()
		if err := a.store.RecordLoginFailure(r.Context(), b.Name, addr, why); err != nil {
			a.log.WithError(err).Warn("recording a failed login")
		}
		msg := "wrong name, password or TOTP code"
		if locked {
			msg += fmt.Sprintf("; too many failures: locked for %s", lockFor)
		}
		return nil, &apiclient.Error{Status: http.StatusUnauthorized, Code: apiclient.CodeUnauthorized, Message: msg}
	}
	a.limiter.succeeded(nameKey, addrKey)
	tok, err := a.store.CreateSession(r.Context(), acct.Name, addr, r.UserAgent(), a.sess.MaxAge)
	if err != nil {
		return nil, err
	}
	if err := a.store.RecordLogin(r.Context(), acct.Name, addr); err != nil {
		a.log.WithError(err).Warn("recording a login")
	}
	a.logins.WithLabelValues("success").Inc()
	a.setSessionCookie(w, r, tok, int(a.sess.MaxAge/time.Second))
	exp := a.store.Now().Add(a.sess.MaxAge).UTC().Truncate(time.Second)
	return whoami{Actor: "admin:" + acct.Name, Name: acct.Name, Role: acct.Role, Via: "session",
		ExpiresAt: &exp, IdleFor: int64(a.sess.Idle / time.Second), TOTP: acct.TOTP}, nil
}

func (a *API) getSession(_ http.ResponseWriter, r *http.Request) (any, error) {
	p := Who(r)
	out := whoami{Actor: p.Actor, Name: p.Account, Role: p.Role, Via: "token"}
	if p.Session != nil {
		out.Via, out.ExpiresAt, out.IdleFor = "session", &p.Session.ExpiresAt, int64(a.sess.Idle/time.Second)
	}
	if p.Account != "" {
		acct, err := a.store.AdminLogin(r.Context(), p.Account)
		if err != nil {
			return nil, err
		}
		out.TOTP = acct.TOTP
	}
	return out, nil
}

// logout ends the caller's session; with a bearer token there is none, and
// the answer is the same.
func (a *API) logout(w http.ResponseWriter, r *http.Request) (any, error) {
	if p := Who(r); p.Session != nil {
		if _, err := a.store.EndSession(r.Context(), sessionCookie(r)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		a.setSessionCookie(w, r, "", -1)
	}
	return noContent, nil
}

func (a *API) listSessions(_ http.ResponseWriter, r *http.Request) (any, error) {
	ss, err := a.store.ListSessions(r.Context())
	if err != nil {
		return nil, err
	}
	if ss == nil {
		ss = []*store.Session{}
	}
	return map[string]any{"sessions": ss}, nil
}

func (a *API) revokeSession(_ http.ResponseWriter, r *http.Request) (any, error) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil {
		return nil, &apiclient.Error{Status: http.StatusNotFound, Code: apiclient.CodeNotFound, Message: "no such session"}
	}
	if err := a.store.RevokeSession(r.Context(), Caller(r), id); err != nil {
		return nil, err
	}
	return noContent, nil
}

// ownAccount returns the account of a session, or a 400: only a browser
// session has a person behind it whose password or second factor it may
// change (a reseller bot's token may not change its account's).
func ownAccount(r *http.Request) (string, error) {
	if p := Who(r); p.Session != nil {
		return p.Session.Admin, nil
	}
	return "", &apiclient.Error{Status: http.StatusBadRequest, Code: apiclient.CodeBadRequest, Message: "only a browser session can change its own account"}
}

// changeOwnPassword lets any logged-in admin change its password, given
// the current one. Like every password change it ends the account's
// sessions, this one too.
func (a *API) changeOwnPassword(w http.ResponseWriter, r *http.Request) (any, error) {
	name, err := ownAccount(r)
	if err != nil {
		return nil, err
	}
	var b struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	acct, err := a.store.AdminLogin(r.Context(), name)
	if err != nil {
		return nil, err
	}
	if !store.CheckPassword(acct.PasswordHash, b.Current) {
		return nil, &store.ValidationError{Field: "current_password", Reason: "is wrong"}
	}
	if err := a.store.SetAdminPassword(r.Context(), Caller(r), name, b.New); err != nil {
		return nil, err
	}
	a.setSessionCookie(w, r, "", -1)
	return noContent, nil
}

// beginOwnTOTP and confirmOwnTOTP are the admin's own enrolment; an owner
// can also do it for an account (the CLI's admin totp enable).
func (a *API) beginOwnTOTP(_ http.ResponseWriter, r *http.Request) (any, error) {
	name, err := ownAccount(r)
	if err != nil {
		return nil, err
	}
	e, err := a.store.BeginTOTP(r.Context(), Caller(r), name)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (a *API) confirmOwnTOTP(w http.ResponseWriter, r *http.Request) (any, error) {
	name, err := ownAccount(r)
	if err != nil {
		return nil, err
	}
	var b struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	codes, err := a.store.ConfirmTOTP(r.Context(), Caller(r), name, b.Code)
	if err != nil {
		return nil, err
	}
	// Enabling TOTP ends the account's sessions (a second factor that
	// left a stolen session alive would protect little): log in again.
	a.setSessionCookie(w, r, "", -1)
	return map[string]any{"recovery_codes": codes}, nil
}

// disableOwnTOTP turns the caller's own second factor off, given the
// current password or a current TOTP (or recovery) code: a session left
// open on a shared screen must not be enough. It is audited as
// admin.totp_disable, like an owner's, and like every change of the
// second factor it ends the account's sessions, this one too.
func (a *API) disableOwnTOTP(w http.ResponseWriter, r *http.Request) (any, error) {
	name, err := ownAccount(r)
	if err != nil {
		return nil, err
	}
	var b struct {
		Password string `json:"current_password"`
		Code     string `json:"code"`
	}
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	acct, err := a.store.AdminLogin(r.Context(), name)
	if err != nil {
		return nil, err
	}
	if !acct.TOTP {
		return nil, &apiclient.Error{Status: http.StatusConflict, Code: apiclient.CodeConflict, Message: "this account has no TOTP to turn off"}
	}
	switch {
	case b.Password != "":
		if !store.CheckPassword(acct.PasswordHash, b.Password) {
			return nil, &store.ValidationError{Field: "current_password", Reason: "is wrong"}
		}
	case b.Code != "":
		ok, _, err := a.store.CheckSecondFactor(r.Context(), name, b.Code)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &store.ValidationError{Field: "code", Reason: "is wrong or was used already"}
		}
	default:
		return nil, &store.ValidationError{Field: "current_password", Reason: "give the current password or a current TOTP code"}
	}
	if _, err := a.store.DisableTOTP(r.Context(), Caller(r), name); err != nil {
		return nil, err
	}
	a.setSessionCookie(w, r, "", -1)
	return noContent, nil
}
