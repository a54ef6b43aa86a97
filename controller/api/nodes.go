package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
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

func (a *API) createNode(w http.ResponseWriter, r *http.Request) (any, error) {
	var b createNodeBody
	if err := decode(w, r, &b); err != nil {
		return nil, err
	}
	n, tok, err := a.store.CreateNode(r.Context(), Caller(r), b.Name, b.Labels)
	if err != nil {
		return nil, err
	}
	return created(createdNode{Node: n, Token: tok, InstallCommand: a.installCommand(r, n.Name, tok)}), nil
}

func (a *API) deleteNode(_ http.ResponseWriter, r *http.Request) (any, error) {
	name := mux.Vars(r)["name"]
	if err := a.store.DeleteNode(r.Context(), Caller(r), name); err != nil {
		return nil, err
	}
	a.beats.forget(name)
	return noContent, nil
}

func (a *API) drainNode(drain bool) handler {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		reason, err := readReason(w, r)
		if err != nil {
			return nil, err
		}
		name := mux.Vars(r)["name"]
		if drain {
			if err := a.guardDrain(r, name); err != nil {
				return nil, err
			}
		}
		n, _, err := a.store.SetDrained(r.Context(), Caller(r), name, drain, reason)
		if err != nil {
			return nil, err
		}
		return n, nil
	}
}

// guardDrain refuses a manual drain that would leave the node's group
// with fewer undrained healthy nodes than the configured minimum, unless
// the request says ?force=true; a forced drain past the guard is recorded
// in the audit log with the reason it overrode. Only a healthy node (one
// the health query scores above 0) is guarded: draining a node that
// serves nobody well, or that nothing is known of yet, never makes things
// worse. The check and the drain are two steps, so two admins draining the
// last two nodes at the same moment can both pass it; the guard is for
// the common mistake, alerts have their own.
func (a *API) guardDrain(r *http.Request, name string) error {
	force := false
	if s := r.URL.Query().Get("force"); s != "" {
		var err error
		if force, err = strconv.ParseBool(s); err != nil {
			return &store.ValidationError{Field: "force", Reason: "must be true or false"}
		}
	}
	if a.drainMinHealthy <= 0 {
		return nil
	}
	nodes, err := a.store.ListNodes(r.Context())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(nodes, func(n *store.Node) bool { return n.Name == name })
	if i < 0 || nodes[i].Drained || !a.healthyNode(nodes[i].Name) {
		// An unknown node is the store's to report; draining a drained or
		// unhealthy node takes nothing away.
		return nil
	}
	group, left := nodes[i].Group(), 0
	for _, n := range nodes {
		if n.Name != name && n.Group() == group && !n.Drained && a.healthyNode(n.Name) {
			left++
		}
	}
	if left >= a.drainMinHealthy {
		return nil
	}
	where := fmt.Sprintf("in its group %q", group)
	if group == "" {
		where = "among the nodes without a group"
	}
	why := fmt.Sprintf("draining %s would leave %d undrained healthy node(s) %s, fewer than the %d that must stay", name, left, where, a.drainMinHealthy)
	if !force {
		return &apiclient.Error{Status: http.StatusConflict, Code: apiclient.CodeConflict, Field: "force",
			Message: why + "; drain with force=true to override"}
	}
	return a.store.RecordEvent(r.Context(), Caller(r), "node.drain_forced", "node", name, why)
}

// healthyNode: the health query scores the node above 0.
func (a *API) healthyNode(name string) bool {
	if a.health == nil {
		return false
	}
	s, ok := a.health.Score(name)
	return ok && s > 0
}

// registerNode stores a node's registration. The agent sends it again
// every minute as a heartbeat: one that repeats the stored registration
// only moves last_seen, in memory (see beats).
func (a *API) registerNode(w http.ResponseWriter, r *http.Request) (any, error) {
	var reg sbconfig.Registration
	if err := decode(w, r, &reg); err != nil {
		return nil, err
	}
	name := mux.Vars(r)["name"]
	if n, ok := a.heartbeat(r.Context(), name, reg); ok {
		return n, nil
	}
	before, _ := a.nodes.node(r.Context(), name)
	n, err := a.store.RegisterNode(r.Context(), name, reg)
	if err != nil {
		return nil, err
	}
	a.beats.wrote(name, *n.LastSeen)
	if before == nil || before.Group() != n.Group() {
		// The node's user set changed with its group.
		a.nodes.invalidate()
		a.revs.Poke()
	} else {
		a.nodes.put(n)
	}
	return n, nil
}
