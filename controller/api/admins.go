package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (a *API) listAdmins(_ http.ResponseWriter, r *http.Request) (any, error) {
	as, err := a.store.ListAdmins(r.Context())
	if err != nil {
		return nil, err
	}
	if as == nil {
		as = []*store.Admin{}
	}
	return map[string]any{"admins": as}, nil
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

func (a *API) createAdmin(w http.ResponseWriter, r *http.Request) (any, error) {
	var b createAdminBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	generated := ""
	if b.Password == "" {
		generated = store.RandomPassword()
		b.Password = generated
	}
	ad, err := a.store.CreateAdmin(r.Context(), Caller(r), b.Name, b.Password, b.AdminSpec)
	if err != nil {
		return nil, err
	}
	return created(createdAdmin{Admin: ad, Password: generated}), nil
}

func (a *API) getAdmin(_ http.ResponseWriter, r *http.Request) (any, error) {
	ad, err := a.store.GetAdmin(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	return ad, nil
}

func (a *API) updateAdmin(w http.ResponseWriter, r *http.Request) (any, error) {
	var spec store.AdminSpec
	if err := decode(w, r, &spec); err != nil {
		return nil, err
	}
	ad, err := a.store.UpdateAdmin(r.Context(), Caller(r), mux.Vars(r)["name"], spec)
	if err != nil {
		return nil, err
	}
	return ad, nil
}

func (a *API) deleteAdmin(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.store.DeleteAdmin(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		return nil, err
	}
	return noContent, nil
}

func (a *API) setAdminPassword(w http.ResponseWriter, r *http.Request) (any, error) {
	var b struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	if err := a.store.SetAdminPassword(r.Context(), Caller(r), mux.Vars(r)["name"], b.Password); err != nil {
		return nil, err
	}
	return noContent, nil
}

// beginTOTP answers a new pending secret; the second factor is on only
// after confirmTOTP sees a code from it.
func (a *API) beginTOTP(_ http.ResponseWriter, r *http.Request) (any, error) {
	e, err := a.store.BeginTOTP(r.Context(), Caller(r), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (a *API) confirmTOTP(w http.ResponseWriter, r *http.Request) (any, error) {
	var b struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	codes, err := a.store.ConfirmTOTP(r.Context(), Caller(r), mux.Vars(r)["name"], b.Code)
	if err != nil {
		return nil, err
	}
	return map[string]any{"recovery_codes": codes}, nil
}

func (a *API) disableTOTP(_ http.ResponseWriter, r *http.Request) (any, error) {
	ad, err := a.store.DisableTOTP(r.Context(), Caller(r), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	return ad, nil
}

func (a *API) listTokens(_ http.ResponseWriter, r *http.Request) (any, error) {
	ts, err := a.store.ListAPITokens(r.Context())
	if err != nil {
		return nil, err
	}
	if ts == nil {
		ts = []*store.APIToken{}
	}
	return map[string]any{"tokens": ts}, nil
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

func (a *API) createToken(w http.ResponseWriter, r *http.Request) (any, error) {
	var b createTokenBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	t, secret, err := a.store.CreateAPIToken(r.Context(), Caller(r), b.Name, b.APITokenSpec)
	if err != nil {
		return nil, err
	}
	return created(createdToken{APIToken: t, Token: secret}), nil
}

func (a *API) deleteToken(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.store.DeleteAPIToken(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		return nil, err
	}
	return noContent, nil
}
