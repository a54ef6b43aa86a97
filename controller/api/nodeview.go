package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/deploy"
	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// nodeHealth is a node's score and the inputs of the built-in health
// query (probe availability and latency, sing-box up, connections): the
// parts explain the subscription order. Unknown values are null.
type nodeHealth struct {
	Score *float64            `json:"score"`
	Parts map[string]*float64 `json:"parts"`
}

// shownNode is a node as staff see it: the store's record and what
// Prometheus knows now. Numbers Prometheus did not give are null.
type shownNode struct {
	*store.Node
	Live            bool       `json:"live"`
	Health          nodeHealth `json:"health"`
	OnlineUsers     *float64   `json:"online_users"`
	RateUp          *float64   `json:"rate_up"`
	RateDown        *float64   `json:"rate_down"`
	Connections     *float64   `json:"connections"`
	RevisionWanted  int64      `json:"revision_wanted"`
	RevisionApplied *float64   `json:"revision_applied"`
	ApplyFailures   *float64   `json:"apply_failures"` // failed user-set applies in the last 24 h
	ExporterVersion *string    `json:"exporter_version"`
	DrainedBy       *string    `json:"drained_by"`
	DrainedSince    *time.Time `json:"drained_since"`
}

func (a *API) showNodes(ctx context.Context, ns []*store.Node) ([]shownNode, error) {
	rev, err := a.store.UsersRevision(ctx)
	if err != nil {
		return nil, err
	}
	live, ok := a.nodesLive(ctx)
	out := make([]shownNode, len(ns))
	for i, n := range ns {
		v := shownNode{Node: n, Live: ok, RevisionWanted: rev, Health: nodeHealth{Parts: map[string]*float64{}}}
		if a.health != nil {
			if s, ok := a.health.Score(n.Name); ok {
				v.Health.Score = &s
			}
		}
		if l := live[n.Name]; l != nil {
			if l.hasRate {
				up, down := l.RateUp, l.RateDown
				v.RateUp, v.RateDown = &up, &down
			}
			v.Connections, v.OnlineUsers, v.RevisionApplied, v.ApplyFailures = l.Connections, l.OnlineUsers, l.RevisionApplied, l.ApplyFailures
			if l.ExporterVersion != "" {
				ver := l.ExporterVersion
				v.ExporterVersion = &ver
			}
			v.Health.Parts["probe_success"] = l.ProbeSuccess
			v.Health.Parts["probe_duration_seconds"] = l.ProbeSeconds
			v.Health.Parts["singbox_up"] = l.SingboxUp
			v.Health.Parts["exporter_up"] = l.ExporterUp
			v.Health.Parts["connections"] = l.Connections
		}
		if ok && v.OnlineUsers == nil && l0(live[n.Name]) {
			zero := 0.0
			v.OnlineUsers = &zero
		}
		if n.Drained {
			by := n.DrainedBy
			v.DrainedBy = &by
			evs, err := a.store.Events(ctx, store.EventFilter{ObjectType: "node", ObjectName: n.Name, Action: "node.drain", Limit: 1})
			if err != nil {
				return nil, err
			}
			if len(evs) > 0 {
				at := evs[0].At
				v.DrainedSince = &at
			}
		}
		out[i] = v
	}
	return out, nil
}

// l0 reports whether Prometheus knows the node at all: a node it scrapes
// with nobody online has no online_users series, which means 0.
func l0(l *nodeLive) bool { return l != nil && l.Connections != nil }

func (a *API) listNodes(_ http.ResponseWriter, r *http.Request) (any, error) {
	ns, err := a.store.ListNodes(r.Context())
	if err != nil {
		return nil, err
	}
	a.beats.overlay(ns...)
	if ns == nil {
		ns = []*store.Node{}
	}
	if Who(r).Role == store.RoleReseller {
		out := make([]resellerNode, len(ns))
		for i, n := range ns {
			out[i] = a.nodeForReseller(n)
		}
		return map[string]any{"nodes": out}, nil
	}
	shown, err := a.showNodes(r.Context(), ns)
	if err != nil {
		return nil, err
	}
	return map[string]any{"nodes": shown}, nil
}

func (a *API) getNode(_ http.ResponseWriter, r *http.Request) (any, error) {
	n, err := a.store.GetNode(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return nil, err
	}
	a.beats.overlay(n)
	if Who(r).Role == store.RoleReseller {
		return a.nodeForReseller(n), nil
	}
	shown, err := a.showNodes(r.Context(), []*store.Node{n})
	if err != nil {
		return nil, err
	}
	return shown[0], nil
}

// InstallOptions configure the node install endpoints.
type InstallOptions struct {
	// Dir holds singbox_exporter-linux-amd64 and -arm64 (make dist);
	// empty: the binaries answer 404.
	Dir string
	// ExternalURL is the controller's base URL for the install command;
	// empty: from the request.
	ExternalURL string
}

// installArchs are the binaries a node may fetch.
var installArchs = map[string]bool{"amd64": true, "arm64": true}

func (a *API) installRoutes() {
	a.Handle("install.script", http.MethodGet, "/install/node.sh", public, a.serveInstallFile("install-node.sh", "text/x-shellscript"))
	a.Handle("install.flags", http.MethodGet, "/install/singbox_exporter.flags", public, a.serveInstallFile("singbox_exporter.flags", "text/plain; charset=utf-8"))
	a.Handle("install.unit", http.MethodGet, "/install/singbox_exporter.service", public, a.serveInstallFile("singbox_exporter.service", "text/plain; charset=utf-8"))
	a.Handle("install.binary", http.MethodGet, "/install/singbox_exporter-linux-{arch}", public, a.serveInstallBinary)
}

func (a *API) serveInstallFile(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := deploy.Files.ReadFile(name)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	}
}

func (a *API) serveInstallBinary(w http.ResponseWriter, r *http.Request) {
	arch := mux.Vars(r)["arch"]
	if !installArchs[arch] || a.install.Dir == "" {
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no exporter binary for linux/"+arch+" here (--install.dir, filled by make dist)", "")
		return
	}
	path := filepath.Join(a.install.Dir, "singbox_exporter-linux-"+arch)
	f, err := os.Open(path)
	if err != nil {
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no exporter binary for linux/"+arch+" here (--install.dir, filled by make dist)", "")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no exporter binary for linux/"+arch+" here", "")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, filepath.Base(path), st.ModTime(), f)
}

// installCommand is the one line that makes a fresh VPS a node: the
// script, fetched from this controller, fetches the exporter for the
// node's architecture from it too.
func (a *API) installCommand(r *http.Request, name, token string) string {
	base := strings.TrimSuffix(a.install.ExternalURL, "/")
	if base == "" {
		scheme := "http"
		if a.addr.Secure(r) {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return "curl -fsSL " + base + "/install/node.sh | sudo sh -s -- --controller " + base +
		" --name " + name + " --token " + token
}
