package api

import (
	"net/http"
	"net/http/pprof"
	runtimepprof "runtime/pprof"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// debugProfile serves the Go runtime's profiles, as /debug/pprof/ does in
// Prometheus and Alertmanager: a CPU profile taken while a slow accounting
// cycle runs in the real controller is how that time is found. Only the
// owner may take one, since a profile shows the controller's code paths and
// a CPU profile or trace costs it CPU while it runs.
//
//	go tool pprof -http : 'http://HOST/debug/pprof/profile?seconds=30'  (with the owner's bearer token)
func debugProfile(w http.ResponseWriter, r *http.Request) {
	switch name := mux.Vars(r)["name"]; name {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		if runtimepprof.Lookup(name) == nil {
			writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no such profile: the names are profile, trace, heap, allocs, goroutine, block, mutex and threadcreate", "")
			return
		}
		pprof.Handler(name).ServeHTTP(w, r)
	}
}
