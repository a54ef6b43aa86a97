// Package api is the controller's HTTP interface: the admin REST API under
// /api/v1, the node endpoints, Prometheus service discovery, health checks
// and metrics. Subscriptions and the Alertmanager webhook plug into the
// same router.
package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/live"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
	"github.com/boxfleet/boxfleet/internal/clientaddr"
)

// API serves the controller's endpoints.
type API struct {
	store   *store.Store
	log     logrus.FieldLogger
	router  *mux.Router
	gather  prometheus.Gatherer
	metrics http.Handler // nil: the registry's own handler

	sets  setCache    // rendered node user sets
	revs  *revWatcher // the users revision, for the long polls
	nodes *nodeDir    // the nodes and their tokens, for the node endpoints
	beats *beats      // registration heartbeats not yet written

	health  Scorer
	live    *live.Cache // Prometheus answers for the UI; nil: live numbers unknown
	install InstallOptions
	sess    SessionOptions
	addr    *clientaddr.Resolver
	cop     *http.CrossOriginProtection
	limiter *loginLimiter
	tokens  *tokenMemory // bearer tokens honoured while the database does not answer
	now     func() time.Time

	drainMinHealthy int // see Options.DrainMinHealthy

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	logins   *prometheus.CounterVec
}

// Options are the API's collaborators.
type Options struct {
	Store    *store.Store
	Log      logrus.FieldLogger   // scoped here with component=api; nil is logrus's standard logger
	Registry *prometheus.Registry // /metrics serves it; request metrics are registered on it
	// Metrics, when set, serves /metrics instead of the registry's own
	// handler: collector.Handler, which writes the per-user families
	// without gathering them into memory first.
	Metrics http.Handler
	// Alerts handles Alertmanager's webhook (package actions); nil answers 503.
	Alerts http.Handler
	// Sub configures subscriptions; nil answers 404 to every token.
	Sub *SubOptions
	// Sessions sets browser session timeouts; zero values take 1h idle and
	// 12h in all.
	Sessions SessionOptions
	// ClientAddr finds a request's client address and scheme behind
	// trusted proxies; nil trusts no proxy.
	ClientAddr *clientaddr.Resolver
	// Now is the login limiter's clock; nil is time.Now.
	Now func() time.Time
	// Health scores nodes for the reseller's node view; nil shows none.
	Health Scorer
	// Live answers the UI's live numbers from Prometheus, cached for the
	// refresh interval; nil reports every live number as unknown.
	Live *live.Cache
	// DrainMinHealthy is how many undrained healthy nodes a manual drain
	// must leave in the node's group (?force=true overrides); 0 is 1, and
	// a negative number turns the guard off.
	DrainMinHealthy int
	// Install configures the node install script and binaries and the
	// install command a new node's answer carries.
	Install InstallOptions
}

// Scorer gives a node's health score in 0..1 (health.Ranker).
type Scorer interface {
	Score(node string) (float64, bool)
}

// New builds the router.
func New(o Options) *API {
	log := o.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	instruments := promauto.With(o.Registry)
	a := &API{
		sets:    setCache{m: map[string]cachedSet{}},
		tokens:  newTokenMemory(tokenMemoryTTL, tokenMemoryLimit),
		store:   o.Store,
		log:     log.WithField("component", "api"),
		router:  mux.NewRouter(),
		gather:  o.Registry,
		metrics: o.Metrics,
		requests: instruments.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"handler", "code"}),
		duration: instruments.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "boxfleet_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"handler"}),
		logins: instruments.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_login_attempts_total",
			Help: "Browser logins, by result (success, failure, locked): an alert can page on brute force.",
		}, []string{"result"}),
		sess:    o.Sessions,
		health:  o.Health,
		live:    o.Live,
		install: o.Install,
		addr:    o.ClientAddr,
		cop:     http.NewCrossOriginProtection(),
		limiter: newLoginLimiter(),
		now:     o.Now,
	}
	a.nodes = newNodeDir(a.store)
	a.revs = newRevWatcher(a.store, a.log, a.nodes.invalidate)
	a.beats = &beats{log: a.log, m: map[string]*beat{}}
	if a.sess.Idle <= 0 {
		a.sess.Idle = time.Hour
	}
	if a.sess.MaxAge <= 0 {
		a.sess.MaxAge = 12 * time.Hour
	}
	if a.now == nil {
		a.now = time.Now
	}
	switch a.drainMinHealthy = o.DrainMinHealthy; {
	case a.drainMinHealthy == 0:
		a.drainMinHealthy = 1
	case a.drainMinHealthy < 0:
		a.drainMinHealthy = 0
	}
	for _, v := range []string{"success", "failure", "locked"} {
		a.logins.WithLabelValues(v)
	}
	a.routes()
	alerts := o.Alerts
	if alerts == nil {
		alerts = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusServiceUnavailable, apiclient.CodeUnavailable, "alert actions are not configured", "")
		})
	}
	a.Handle("alerts.webhook", http.MethodPost, "/api/v1/alerts", staffEdit, alerts.ServeHTTP)
	a.enableSubscriptions(o.Sub)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w, r)
	a.router.ServeHTTP(w, r)
}

// PublicHandler serves only what a public host needs, subscriptions and
// health checks, for the main listener when the API has a listener of its
// own (--web.admin-listen-address); everything else is a 404 there, so
// the subscription host shows no login page and no API.
func (a *API) PublicHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/sub/") || p == "/-/healthy" || p == "/-/ready" {
			a.ServeHTTP(w, r)
			return
		}
		securityHeaders(w, r)
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no such endpoint", "")
	})
}

// Router exposes the router so that other packages (subscriptions, the
// webhook) add their routes and the OpenAPI test can walk them.
func (a *API) Router() *mux.Router { return a.router }

func (a *API) routes() {
	a.Handle("healthy", http.MethodGet, "/-/healthy", public, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("Healthy.\n"))
	})
	a.Handle("ready", http.MethodGet, "/-/ready", public, a.ready)
	metrics := a.metrics
	if metrics == nil {
		metrics = promhttp.HandlerFor(a.gather, promhttp.HandlerOpts{ErrorLog: a.log})
	}
	a.Handle("metrics", http.MethodGet, "/metrics", staffRead, metrics.ServeHTTP)
	a.Handle("openapi", http.MethodGet, "/api/v1/openapi.json", anyAdmin, serveOpenAPI)
	a.Handle("debug.pprof", http.MethodGet, "/debug/pprof/{name}", ownerOnly, debugProfile)

	a.Handle("users.list", http.MethodGet, "/api/v1/users", userRead, a.serve(a.listUsers))
	a.Handle("users.create", http.MethodPost, "/api/v1/users", userEdit, a.serve(a.createUser))
	a.Handle("users.get", http.MethodGet, "/api/v1/users/{name}", userRead, a.serve(a.getUser))
	a.Handle("users.update", http.MethodPatch, "/api/v1/users/{name}", userEdit, a.serve(a.updateUser))
	a.Handle("users.delete", http.MethodDelete, "/api/v1/users/{name}", userEdit, a.serve(a.deleteUser))
	a.Handle("users.suspend", http.MethodPost, "/api/v1/users/{name}/suspend", userEdit, a.serve(a.suspendUser))
	a.Handle("users.resume", http.MethodPost, "/api/v1/users/{name}/resume", userEdit, a.userAction((*store.Store).ResumeUser))
	// Not resellers: a reset hands out a period's traffic anew, past any
	// total the owner set on the account.
	a.Handle("users.reset", http.MethodPost, "/api/v1/users/{name}/reset", staffEdit, a.userAction((*store.Store).ResetUsage))
	a.Handle("users.rotate_token", http.MethodPost, "/api/v1/users/{name}/rotate-token", userEdit, a.userAction((*store.Store).RotateToken))
	a.Handle("users.usage", http.MethodGet, "/api/v1/users/{name}/usage", userRead, a.serve(a.userUsage))
	a.Handle("users.timeline", http.MethodGet, "/api/v1/users/{name}/timeline", userRead, a.serve(a.userTimeline))
	a.Handle("users.live", http.MethodGet, "/api/v1/users/{name}/live", userRead, a.serve(a.userLiveHandler))
	// Only POST: a user named "bulk" is still reached by GET, PATCH and
	// DELETE /api/v1/users/bulk, which no other route takes.
	a.Handle("users.bulk", http.MethodPost, "/api/v1/users/bulk", userEdit, a.serve(a.bulkUsers))

	a.Handle("stats.overview", http.MethodGet, "/api/v1/stats/overview", userRead, a.serve(a.statsOverview))
	a.Handle("stats.series", http.MethodGet, "/api/v1/stats/series", userRead, a.serve(a.statsSeries))
	a.Handle("stats.top_users", http.MethodGet, "/api/v1/stats/top-users", userRead, a.serve(a.statsTopUsers))
	a.installRoutes()

	a.Handle("plans.list", http.MethodGet, "/api/v1/plans", userRead, a.serve(a.listPlans))
	a.Handle("plans.get", http.MethodGet, "/api/v1/plans/{name}", userRead, a.serve(a.getPlan))
	a.Handle("plans.put", http.MethodPut, "/api/v1/plans/{name}", staffEdit, a.serve(a.putPlan))
	a.Handle("plans.delete", http.MethodDelete, "/api/v1/plans/{name}", staffEdit, a.serve(a.deletePlan))

	a.Handle("nodes.list", http.MethodGet, "/api/v1/nodes", userRead, a.serve(a.listNodes))
	a.Handle("nodes.create", http.MethodPost, "/api/v1/nodes", staffEdit, a.serve(a.createNode))
	a.Handle("nodes.get", http.MethodGet, "/api/v1/nodes/{name}", userRead, a.serve(a.getNode))
	a.Handle("nodes.delete", http.MethodDelete, "/api/v1/nodes/{name}", staffEdit, a.serve(a.deleteNode))
	a.Handle("nodes.drain", http.MethodPost, "/api/v1/nodes/{name}/drain", staffEdit, a.serve(a.drainNode(true)))
	a.Handle("nodes.undrain", http.MethodPost, "/api/v1/nodes/{name}/undrain", staffEdit, a.serve(a.drainNode(false)))
	a.Handle("nodes.register", http.MethodPut, "/api/v1/nodes/{name}", nodeOwn, a.serve(a.registerNode))
	a.Handle("nodes.users", http.MethodGet, "/api/v1/nodes/{name}/users", nodeOwn, a.nodeUsers)

	a.Handle("hooks.list", http.MethodGet, "/api/v1/hooks", staffRead, a.serve(a.listHooks))
	a.Handle("hooks.get", http.MethodGet, "/api/v1/hooks/{name}", staffRead, a.serve(a.getHook))
	a.Handle("hooks.put", http.MethodPut, "/api/v1/hooks/{name}", staffEdit, a.serve(a.putHook))
	a.Handle("hooks.delete", http.MethodDelete, "/api/v1/hooks/{name}", staffEdit, a.serve(a.deleteHook))
	a.Handle("hooks.deliveries", http.MethodGet, "/api/v1/hooks/{name}/deliveries", staffRead, a.serve(a.hookDeliveries))
	a.Handle("hooks.redeliver", http.MethodPost, "/api/v1/hooks/{name}/deliveries/{id}/redeliver", staffEdit, a.serve(a.redeliver))
	a.Handle("alerts.list", http.MethodGet, "/api/v1/alerts", staffRead, a.serve(a.listAlerts))

	a.Handle("events.list", http.MethodGet, "/api/v1/events", userRead, a.serve(a.listEvents))
	a.Handle("sd.exporters", http.MethodGet, "/api/v1/sd", staffRead, a.serve(a.serveSD(exporterTargets)))
	a.Handle("sd.probes", http.MethodGet, "/api/v1/sd/probes", staffRead, a.serve(a.serveSD(probeTargets)))

	a.Handle("session.login", http.MethodPost, "/api/v1/session", public, a.serve(a.login))
	a.Handle("session.get", http.MethodGet, "/api/v1/session", anyAdmin, a.serve(a.getSession))
	a.Handle("session.logout", http.MethodDelete, "/api/v1/session", anyAdmin, a.serve(a.logout))
	a.Handle("session.password", http.MethodPut, "/api/v1/session/password", anyAdmin, a.serve(a.changeOwnPassword))
	a.Handle("session.totp_begin", http.MethodPost, "/api/v1/session/totp", anyAdmin, a.serve(a.beginOwnTOTP))
	a.Handle("session.totp_disable", http.MethodDelete, "/api/v1/session/totp", anyAdmin, a.serve(a.disableOwnTOTP))
	a.Handle("session.totp_confirm", http.MethodPost, "/api/v1/session/totp/confirm", anyAdmin, a.serve(a.confirmOwnTOTP))
	a.Handle("sessions.list", http.MethodGet, "/api/v1/sessions", ownerOnly, a.serve(a.listSessions))
	a.Handle("sessions.revoke", http.MethodDelete, "/api/v1/sessions/{id}", ownerOnly, a.serve(a.revokeSession))

	a.Handle("admins.list", http.MethodGet, "/api/v1/admins", ownerOnly, a.serve(a.listAdmins))
	a.Handle("admins.create", http.MethodPost, "/api/v1/admins", ownerOnly, a.serve(a.createAdmin))
	a.Handle("admins.get", http.MethodGet, "/api/v1/admins/{name}", ownerOnly, a.serve(a.getAdmin))
	a.Handle("admins.update", http.MethodPatch, "/api/v1/admins/{name}", ownerOnly, a.serve(a.updateAdmin))
	a.Handle("admins.delete", http.MethodDelete, "/api/v1/admins/{name}", ownerOnly, a.serve(a.deleteAdmin))
	a.Handle("admins.password", http.MethodPut, "/api/v1/admins/{name}/password", ownerOnly, a.serve(a.setAdminPassword))
	a.Handle("admins.totp_begin", http.MethodPost, "/api/v1/admins/{name}/totp", ownerOnly, a.serve(a.beginTOTP))
	a.Handle("admins.totp_confirm", http.MethodPost, "/api/v1/admins/{name}/totp/confirm", ownerOnly, a.serve(a.confirmTOTP))
	a.Handle("admins.totp_disable", http.MethodDelete, "/api/v1/admins/{name}/totp", ownerOnly, a.serve(a.disableTOTP))

	a.Handle("tokens.list", http.MethodGet, "/api/v1/tokens", ownerOnly, a.serve(a.listTokens))
	a.Handle("tokens.create", http.MethodPost, "/api/v1/tokens", ownerOnly, a.serve(a.createToken))
	a.Handle("tokens.delete", http.MethodDelete, "/api/v1/tokens/{name}", ownerOnly, a.serve(a.deleteToken))

	a.router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no such endpoint", "")
	})
	a.router.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", strings.Join(a.allowed(r), ", "))
		writeError(w, http.StatusMethodNotAllowed, apiclient.CodeBadRequest, "method not allowed", "")
	})
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, apiclient.CodeUnavailable, "database unreachable", "")
		return
	}
	w.Write([]byte("Ready.\n"))
}

// instrument counts and times the route's requests with promhttp, which
// passes Flush through (long-polls and streams need it).
func (a *API) instrument(name string, h http.Handler) http.Handler {
	route := prometheus.Labels{"handler": name}
	return promhttp.InstrumentHandlerDuration(a.duration.MustCurryWith(route),
		promhttp.InstrumentHandlerCounter(a.requests.MustCurryWith(route), h))
}

// intParam reads a non-negative integer query parameter with a default and
// an upper bound.
func intParam(r *http.Request, name string, def, maxV int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, &store.ValidationError{Field: name, Reason: "must be a non-negative integer"}
	}
	return min(n, maxV), nil
}

// limitParam reads a page size between 1 and maxV: the store reads a zero
// limit as "no limit", which would bypass the cap.
func limitParam(r *http.Request, def, maxV int) (int, error) {
	n, err := intParam(r, "limit", def, maxV)
	if err == nil && n == 0 {
		err = &store.ValidationError{Field: "limit", Reason: "must be at least 1"}
	}
	return n, err
}

// allowed lists the methods some route serves at the request's path, for
// the Allow header a 405 must carry (RFC 9110).
func (a *API) allowed(r *http.Request) []string {
	var methods []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if a.router.Match(probe, &match) && match.MatchErr == nil {
			methods = append(methods, m)
		}
	}
	return methods
}
