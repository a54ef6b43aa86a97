package api

import (
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (a *API) listHooks(_ http.ResponseWriter, r *http.Request) (any, error) {
	hs, err := a.store.ListHooks(r.Context())
	if err != nil {
		return nil, err
	}
	for i, h := range hs {
		hs[i] = shownHook(r, h)
	}
	return map[string]any{"hooks": hs}, nil
}

func (a *API) getHook(_ http.ResponseWriter, r *http.Request) (any, error) {
	h, err := a.store.GetHook(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	return shownHook(r, h), nil
}

// hookBody is what PUT accepts. The secret is write-only: no answer
// carries it, and leaving it out keeps the one a hook already has.
type hookBody struct {
	URL    string   `json:"url"`
	Secret string   `json:"secret"`
	Events []string `json:"events"`
}

func (a *API) putHook(w http.ResponseWriter, r *http.Request) (any, error) {
	var b hookBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	h, err := a.store.PutHook(r.Context(), Caller(r), mux.Vars(r)["name"], store.HookSpec{URL: b.URL, Secret: b.Secret, Events: b.Events})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (a *API) deleteHook(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.store.DeleteHook(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		return nil, err
	}
	return noContent, nil
}

func (a *API) hookDeliveries(_ http.ResponseWriter, r *http.Request) (any, error) {
	limit, err := limitParam(r, 50, 1000)
	if err != nil {
		return nil, err
	}
	ds, err := a.store.HookDeliveries(r.Context(), mux.Vars(r)["name"], limit)
	if err != nil {
		return nil, err
	}
	if ds == nil {
		ds = []*store.Delivery{}
	}
	return map[string]any{"deliveries": ds}, nil
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
