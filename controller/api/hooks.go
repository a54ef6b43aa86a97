package api

import (
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (a *API) listHooks(w http.ResponseWriter, r *http.Request) {
	hs, err := a.store.ListHooks(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for i, h := range hs {
		hs[i] = shownHook(r, h)
	}
	writeJSON(w, http.StatusOK, map[string]any{"hooks": hs})
}

func (a *API) getHook(w http.ResponseWriter, r *http.Request) {
	h, err := a.store.GetHook(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shownHook(r, h))
}

// hookBody is what PUT accepts. The secret is write-only: no answer
// carries it, and leaving it out keeps the one a hook already has.
type hookBody struct {
	URL    string   `json:"url"`
	Secret string   `json:"secret"`
	Events []string `json:"events"`
}

func (a *API) putHook(w http.ResponseWriter, r *http.Request) {
	var b hookBody
	if err := decode(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	h, err := a.store.PutHook(r.Context(), Caller(r), mux.Vars(r)["name"], store.HookSpec{URL: b.URL, Secret: b.Secret, Events: b.Events})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (a *API) deleteHook(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteHook(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) hookDeliveries(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 50, 1000)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ds, err := a.store.HookDeliveries(r.Context(), mux.Vars(r)["name"], limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ds == nil {
		ds = []*store.Delivery{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds})
}

// shownHook cuts a hook's URL to scheme and host for a viewer: receivers
// often carry their secret in the URL (a Telegram bot token in the path, a
// key in the query, a password before the host).
func shownHook(r *http.Request, h *store.Hook) *store.Hook {
	if seesSecrets(r) {
		return h
	}
	c := *h
	if u, err := url.Parse(h.URL); err == nil {
		c.URL = (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	} else {
		c.URL = ""
	}
	return &c
}
