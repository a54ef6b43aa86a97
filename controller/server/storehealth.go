package server

import (
	"context"
	"net/http"
	"time"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
)

// Deadlines for the database at scrape time. Together with the API's token
// lookup (2 s) they keep a scrape of a controller whose database does not
// answer under 7 s, inside Prometheus's default scrape timeout of 10 s.
const (
	// storePingTimeout bounds the ping that decides whether a scrape
	// reads the users at all.
	storePingTimeout = 2 * time.Second
	// collectTimeout bounds the collector's own read (the nodes, a few
	// hundred rows); its failure is boxfleet_store_up 0.
	collectTimeout = 3 * time.Second
	// usersTimeout bounds the per-user families: 0.3 s at 100,000 users.
	usersTimeout = 10 * time.Second
)

// storeGuard serves /metrics so that a database that does not answer
// cannot hold a scrape past Prometheus's scrape timeout. Prometheus would
// then mark the controller down and lose its Go and process metrics and
// boxfleet_store_up 0, exactly when they say what is wrong: a cut link
// holds a query until TCP gives up, not until a deadline the driver knows.
//
// The store is pinged with a short deadline first; when it does not
// answer, or the caller's token was already answered from memory because
// the database did not, the scrape is the registry alone (whose collector
// reports boxfleet_store_up 0 within collectTimeout) and the per-user
// families are left out.
type storeGuard struct {
	store *store.Store
	full  http.Handler // registry and per-user families (collector.Handler)
	plain http.Handler // the registry alone
}

func (g *storeGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := api.Who(r); p != nil && p.Remembered {
		g.plain.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storePingTimeout)
	err := g.store.Ping(ctx)
	cancel()
	if err != nil {
		g.plain.ServeHTTP(w, r)
		return
	}
	g.full.ServeHTTP(w, r)
}
