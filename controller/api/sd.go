package api

import (
	"maps"
	"net"
	"net/http"
	"strconv"

	"github.com/boxfleet/boxfleet/controller/store"
)

// This file answers Prometheus HTTP service discovery: the exporters to
// scrape and the inbounds for blackbox to probe.

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
func (a *API) serveSD(targets func(*store.Node) []targetGroup) handler {
	return func(_ http.ResponseWriter, r *http.Request) (any, error) {
		ns, err := a.store.ListNodes(r.Context())
		if err != nil {
			return nil, err
		}
		groups := []targetGroup{}
		for _, n := range ns {
			groups = append(groups, targets(n)...)
		}
		return groups, nil
	}
}

// exporterTargets is the node's exporter, once it has registered.
func exporterTargets(n *store.Node) []targetGroup {
	if n.Exporter == "" {
		return nil
	}
	return []targetGroup{{Targets: []string{n.Exporter}, Labels: nodeLabels(n)}}
}

// probeTargets is every TCP inbound of the node, for blackbox tcp_connect.
func probeTargets(n *store.Node) []targetGroup {
	if n.Address == "" {
		return nil
	}
	var groups []targetGroup
	for _, in := range n.Inbounds {
		if !in.TCPProbeable() {
			continue
		}
		l := nodeLabels(n)
		l["inbound"], l["protocol"] = in.Tag, in.Type
		target := net.JoinHostPort(n.Address, strconv.Itoa(int(in.Port)))
		groups = append(groups, targetGroup{Targets: []string{target}, Labels: l})
	}
	return groups
}
