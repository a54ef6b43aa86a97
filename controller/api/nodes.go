package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// resellerNode is what a reseller sees of a node: whether its users can
// use it, not how it is set up (address, exporter, inbound parameters).
type resellerNode struct {
	Name     string     `json:"name"`
	Group    string     `json:"group,omitempty"`
	Drained  bool       `json:"drained"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Health   *float64   `json:"health_score,omitempty"` // 0..1, from the health query
}

func (a *API) nodeForReseller(n *store.Node) resellerNode {
	v := resellerNode{Name: n.Name, Group: n.Group(), Drained: n.Drained, LastSeen: n.LastSeen}
	if a.health != nil {
		if s, ok := a.health.Score(n.Name); ok {
			v.Health = &s
		}
	}
	return v
}

type createNodeBody struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// createdNode is the only response that carries a node's token, and
// the one-line install command that uses it.
type createdNode struct {
	*store.Node
	Token          string `json:"token"`
	InstallCommand string `json:"install_command"`
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
	writeJSON(w, http.StatusCreated, createdNode{Node: n, Token: tok, InstallCommand: a.installCommand(r, n.Name, tok)})
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
		set, err := a.userSet(r.Context(), name)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.Header().Set("ETag", set.etag)
		if r.Header.Get("If-None-Match") != set.etag {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Write(set.body)
			return
		}
		if !a.waitForRevision(r, set.rev, deadline) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
}

// renderedSet is one node group's user set as the endpoint sends it.
type renderedSet struct {
	ready chan struct{} // closed once the fields below are set
	err   error
	rev   int64  // the revision in body, at least the one it is cached under
	body  []byte // sbconfig.NodeUsers as JSON
	etag  string // a hash of the users alone, so that it survives revisions that do not change them
}

type cachedSet struct {
	rev int64 // the revision read before rendering
	set *renderedSet
}

// setCache keeps each node group's rendered set for one revision.
// An entry answers only requests that read exactly its revision: every
// change of the user set bumps the revision in the same transaction, and
// store.GroupUsers reads the revision before the users, so an entry is
// never older than its revision. Requests that miss together wait for one
// rendering.
//
// Rendering a 5,000-user set costs tens of milliseconds, and a change wakes
// every long-polling node at once: so a set is rendered once per revision
// and group, and a request costs a few indexed reads.
// It is emptied when it holds more groups than any real fleet.
type setCache struct {
	sync.Mutex
	m map[string]cachedSet // by node group
}

const maxRenderedSets = 1024

func (a *API) userSet(ctx context.Context, node string) (*renderedSet, error) {
	n, err := a.store.GetNode(ctx, node)
	if err != nil {
		return nil, err
	}
	rev, err := a.store.UsersRevision(ctx)
	if err != nil {
		return nil, err
	}
	key, sets := n.Group(), &a.sets
	sets.Lock()
	c, ok := sets.m[key]
	if !ok || c.rev != rev {
		if len(sets.m) >= maxRenderedSets {
			clear(sets.m)
		}
		c = cachedSet{rev: rev, set: &renderedSet{ready: make(chan struct{})}}
		sets.m[key] = c
		sets.Unlock()
		// Not the request's context: the requests waiting for this
		// rendering must not fail because this one's client left.
		a.render(context.WithoutCancel(ctx), key, c.set)
		if c.set.err != nil {
			sets.Lock()
			if sets.m[key].set == c.set {
				delete(sets.m, key)
			}
			sets.Unlock()
		}
	} else {
		sets.Unlock()
	}
	select {
	case <-c.set.ready:
		return c.set, c.set.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// render fills rs and closes rs.ready. The body is compact JSON built
// around the users' encoding, which is also what the ETag hashes.
func (a *API) render(ctx context.Context, group string, rs *renderedSet) {
	defer close(rs.ready)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	set, err := a.store.GroupUsers(ctx, group)
	if err != nil {
		rs.err = err
		return
	}
	users, err := json.Marshal(set.Users)
	if err != nil {
		rs.err = err
		return
	}
	sum := sha256.Sum256(users)
	rs.rev, rs.etag = set.Revision, `"`+hex.EncodeToString(sum[:12])+`"`
	rs.body = fmt.Appendf(make([]byte, 0, len(users)+40), `{"revision":%d,"users":%s}`+"\n", set.Revision, users)
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
	maps.Copy(l, n.Labels)
	return l
}

// serveSD answers Prometheus HTTP service discovery with the target
// groups targets makes of each node.
func (a *API) serveSD(targets func(*store.Node) []targetGroup) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, err := a.store.ListNodes(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		groups := []targetGroup{}
		for _, n := range ns {
			groups = append(groups, targets(n)...)
		}
		writeJSON(w, http.StatusOK, groups)
	}
}

// exporterTargets is the node's exporter, once it has registered.
func exporterTargets(n *store.Node) []targetGroup {
	if n.Exporter == "" {
		return nil
	}
	return []targetGroup{{Targets: []string{n.Exporter}, Labels: nodeLabels(n)}}
}

// udpTypes are inbound types a TCP connect probe cannot check.
var udpTypes = map[string]bool{sbconfig.TypeHysteria2: true, sbconfig.TypeTUIC: true}

// probeTargets is every TCP inbound of the node, for blackbox tcp_connect.
func probeTargets(n *store.Node) []targetGroup {
	if n.Address == "" {
		return nil
	}
	var groups []targetGroup
	for _, in := range n.Inbounds {
		if udpTypes[in.Type] || in.Port == 0 {
			continue
		}
		l := nodeLabels(n)
		l["inbound"], l["protocol"] = in.Tag, in.Type
		target := net.JoinHostPort(n.Address, strconv.Itoa(int(in.Port)))
		groups = append(groups, targetGroup{Targets: []string{target}, Labels: l})
	}
	return groups
}
