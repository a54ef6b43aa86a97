package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

func (a *API) listNodes(w http.ResponseWriter, r *http.Request) {
	ns, err := a.store.ListNodes(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ns == nil {
		ns = []*store.Node{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": ns})
}

type createNodeBody struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// createdNode is the only response that carries a node's token.
type createdNode struct {
	*store.Node
	Token string `json:"token"`
}

func (a *API) createNode(w http.ResponseWriter, r *http.Request) {
	var b createNodeBody
	if err := decode(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	n, tok, err := a.store.CreateNode(r.Context(), Caller(r), b.Name, b.Labels)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, createdNode{Node: n, Token: tok})
}

func (a *API) getNode(w http.ResponseWriter, r *http.Request) {
	n, err := a.store.GetNode(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (a *API) deleteNode(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteNode(r.Context(), Caller(r), mux.Vars(r)["name"]); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) drainNode(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reason, err := readReason(w, r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		n, _, err := a.store.SetDrained(r.Context(), Caller(r), mux.Vars(r)["name"], drain, reason)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, n)
	}
}

func (a *API) registerNode(w http.ResponseWriter, r *http.Request) {
	var reg sbconfig.Registration
	if err := decode(w, r, &reg); err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.store.RegisterNode(r.Context(), mux.Vars(r)["name"], reg)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// Long-polls wait at most this long; nodes ask again at once.
const maxWait = 60 * time.Second

// nodeUsers answers the node's desired user set. With If-None-Match equal
// to the current ETag it answers 304, after waiting up to ?wait= seconds
// for a change. Changes made by another controller on the same database are
// seen by polling the revision once a second.
func (a *API) nodeUsers(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	wait, err := intParam(r, "wait", 0, int(maxWait/time.Second))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		set, err := a.store.NodeUsers(r.Context(), name)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		body, _ := json.Marshal(set.Users)
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:12]) + `"`
		if r.Header.Get("If-None-Match") != etag {
			w.Header().Set("ETag", etag)
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusOK, set)
			return
		}
		if !a.waitForRevision(r, set.Revision, deadline) {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
}

// waitForRevision returns true when the revision moved before the deadline.
func (a *API) waitForRevision(r *http.Request, rev int64, deadline time.Time) bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-r.Context().Done():
			return false
		case <-t.C:
		}
		cur, err := a.store.UsersRevision(r.Context())
		if err == nil && cur != rev {
			return true
		}
	}
	return false
}

// targetGroup is one entry of Prometheus HTTP service discovery.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func nodeLabels(n *store.Node) map[string]string {
	l := map[string]string{"node": n.Name}
	for k, v := range n.Labels {
		l[k] = v
	}
	return l
}

func (a *API) sdExporters(w http.ResponseWriter, r *http.Request) {
	ns, err := a.store.ListNodes(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	groups := []targetGroup{}
	for _, n := range ns {
		if n.Exporter == "" {
			continue // created but never registered
		}
		groups = append(groups, targetGroup{Targets: []string{n.Exporter}, Labels: nodeLabels(n)})
	}
	writeJSON(w, http.StatusOK, groups)
}

// udpTypes are inbound types a TCP connect probe cannot check.
var udpTypes = map[string]bool{sbconfig.TypeHysteria2: true, sbconfig.TypeTUIC: true}

func (a *API) sdProbes(w http.ResponseWriter, r *http.Request) {
	ns, err := a.store.ListNodes(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	groups := []targetGroup{}
	for _, n := range ns {
		if n.Address == "" {
			continue
		}
		for _, in := range n.Inbounds {
			if udpTypes[in.Type] || in.Port == 0 {
				continue
			}
			l := nodeLabels(n)
			l["inbound"], l["protocol"] = in.Tag, in.Type
			target := net.JoinHostPort(n.Address, strconv.Itoa(int(in.Port)))
			groups = append(groups, targetGroup{Targets: []string{target}, Labels: l})
		}
	}
	writeJSON(w, http.StatusOK, groups)
}
