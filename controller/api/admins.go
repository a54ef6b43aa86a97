package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (a *API) listAdmins(w http.ResponseWriter, r *http.Request) {
	as, err := a.store.ListAdmins(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if as == nil {
		as = []*store.Admin{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"admins": as})
}

type createAdminBody struct {
	Name     string `json:"name"`
	Password string `json:"password,omitempty"` // empty: a random one, answered once
	store.AdminSpec
}

// createdAdmin carries the generated password, the only answer that does.
type createdAdmin struct {
	*store.Admin
	Password string `json:"password,omitempty"`
}

func (a *API) createAdmin(w http.ResponseWriter, r *http.Request) {
	var b createAdminBody
	if err := decode(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	generated := ""
	if b.Password == "" {
		generated = store.RandomPassword()
		b.Password = generated
	}
	ad, err := a.store.CreateAdmin(r.Context(), Caller(r), b.Name, b.Password, b.AdminSpec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, createdAdmin{Admin: ad, Password: generated})
}

func (a *API) getAdmin(w http.ResponseWriter, r *http.Request) {
	ad, err := a.store.GetAdmin(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ad)
}

func (a *API) updateAdmin(w http.ResponseWriter, r *http.Request) {
	var spec store.AdminSpec
	if err := decode(w, r, &spec); err != nil {
		a.fail(w, r, err)
		return
	}
	ad, err := a.store.UpdateAdmin(r.Context(), Caller(r), mux.Vars(r)["name"], spec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ad)
}

func (a *API) deleteAdmin(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteAdmin(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setAdminPassword(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.SetAdminPassword(r.Context(), Caller(r), mux.Vars(r)["name"], b.Password); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// beginTOTP answers a new pending secret; the second factor is on only
// after confirmTOTP sees a code from it.
func (a *API) beginTOTP(w http.ResponseWriter, r *http.Request) {
	e, err := a.store.BeginTOTP(r.Context(), Caller(r), mux.Vars(r)["name"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (a *API) confirmTOTP(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	codes, err := a.store.ConfirmTOTP(r.Context(), Caller(r), mux.Vars(r)["name"], b.Code)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

func (a *API) disableTOTP(w http.ResponseWriter, r *http.Request) {
	ad, err := a.store.DisableTOTP(r.Context(), Caller(r), mux.Vars(r)["name"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ad)
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := a.store.ListAPITokens(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ts == nil {
		ts = []*store.APIToken{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

type createTokenBody struct {
	Name string `json:"name"`
	store.APITokenSpec
}

// createdToken is the only answer that carries a named token's secret.
type createdToken struct {
	*store.APIToken
	Token string `json:"token"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var b createTokenBody
	if err := decode(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	t, secret, err := a.store.CreateAPIToken(r.Context(), Caller(r), b.Name, b.APITokenSpec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, createdToken{APIToken: t, Token: secret})
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteAPIToken(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
