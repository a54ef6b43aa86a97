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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// API serves the controller's endpoints.
type API struct {
	store  *store.Store
	log    *logrus.Logger
	router *mux.Router
	gather prometheus.Gatherer

	sets setCache // rendered node user sets

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Options are the API's collaborators.
type Options struct {
	Store    *store.Store
	Log      *logrus.Logger
	Registry *prometheus.Registry // /metrics serves it; request metrics are registered on it
	// Alerts handles Alertmanager's webhook (package actions); nil answers 503.
	Alerts http.Handler
	// Sub configures subscriptions; nil answers 404 to every token.
	Sub *SubOptions
}

// New builds the router.
func New(o Options) *API {
	a := &API{
		sets:   setCache{m: map[string]cachedSet{}},
		store:  o.Store,
		log:    o.Log,
		router: mux.NewRouter(),
		gather: o.Registry,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "boxfleet_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"handler"}),
	}
	o.Registry.MustRegister(a.requests, a.duration)
	a.routes()
	alerts := o.Alerts
	if alerts == nil {
		alerts = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "alert actions are not configured", "")
		})
	}
	a.Handle("alerts.webhook", http.MethodPost, "/api/v1/alerts", Admin, alerts.ServeHTTP)
	a.enableSubscriptions(o.Sub)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Router exposes the router so that other packages (subscriptions, the
// webhook) add their routes and the OpenAPI test can walk them.
func (a *API) Router() *mux.Router { return a.router }

// Access says who may call a route.
type Access int

const (
	Public  Access = iota // /sub/, health checks
	Admin                 // admin bearer tokens
	NodeOwn               // the token of the node named in the path
)

// Handle registers a route with its access rule and instrumentation.
func (a *API) Handle(name, method, path string, access Access, h http.HandlerFunc) {
	inner := h
	switch access {
	case Admin:
		inner = a.require(isAdmin, h)
	case NodeOwn:
		inner = a.require(isPathNode, h)
	}
	a.router.Handle(path, a.instrument(name, inner)).Methods(method).Name(name)
}

func (a *API) routes() {
	a.Handle("healthy", http.MethodGet, "/-/healthy", Public, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("Healthy.\n"))
	})
	a.Handle("ready", http.MethodGet, "/-/ready", Public, a.ready)
	a.Handle("metrics", http.MethodGet, "/metrics", Admin,
		promhttp.HandlerFor(a.gather, promhttp.HandlerOpts{ErrorLog: a.log}).ServeHTTP)
	a.Handle("openapi", http.MethodGet, "/api/v1/openapi.json", Admin, serveOpenAPI)

	a.Handle("users.list", http.MethodGet, "/api/v1/users", Admin, a.listUsers)
	a.Handle("users.create", http.MethodPost, "/api/v1/users", Admin, a.createUser)
	a.Handle("users.get", http.MethodGet, "/api/v1/users/{name}", Admin, a.getUser)
	a.Handle("users.update", http.MethodPatch, "/api/v1/users/{name}", Admin, a.updateUser)
	a.Handle("users.delete", http.MethodDelete, "/api/v1/users/{name}", Admin, a.deleteUser)
	a.Handle("users.suspend", http.MethodPost, "/api/v1/users/{name}/suspend", Admin, a.suspendUser)
	a.Handle("users.resume", http.MethodPost, "/api/v1/users/{name}/resume", Admin, a.userAction(a.store.ResumeUser))
	a.Handle("users.reset", http.MethodPost, "/api/v1/users/{name}/reset", Admin, a.userAction(a.store.ResetUsage))
	a.Handle("users.rotate_token", http.MethodPost, "/api/v1/users/{name}/rotate-token", Admin, a.userAction(a.store.RotateToken))
	a.Handle("users.usage", http.MethodGet, "/api/v1/users/{name}/usage", Admin, a.userUsage)

	a.Handle("plans.list", http.MethodGet, "/api/v1/plans", Admin, a.listPlans)
	a.Handle("plans.get", http.MethodGet, "/api/v1/plans/{name}", Admin, a.getPlan)
	a.Handle("plans.put", http.MethodPut, "/api/v1/plans/{name}", Admin, a.putPlan)
	a.Handle("plans.delete", http.MethodDelete, "/api/v1/plans/{name}", Admin, a.deletePlan)

	a.Handle("nodes.list", http.MethodGet, "/api/v1/nodes", Admin, a.listNodes)
	a.Handle("nodes.create", http.MethodPost, "/api/v1/nodes", Admin, a.createNode)
	a.Handle("nodes.get", http.MethodGet, "/api/v1/nodes/{name}", Admin, a.getNode)
	a.Handle("nodes.delete", http.MethodDelete, "/api/v1/nodes/{name}", Admin, a.deleteNode)
	a.Handle("nodes.drain", http.MethodPost, "/api/v1/nodes/{name}/drain", Admin, a.drainNode(true))
	a.Handle("nodes.undrain", http.MethodPost, "/api/v1/nodes/{name}/undrain", Admin, a.drainNode(false))
	a.Handle("nodes.register", http.MethodPut, "/api/v1/nodes/{name}", NodeOwn, a.registerNode)
	a.Handle("nodes.users", http.MethodGet, "/api/v1/nodes/{name}/users", NodeOwn, a.nodeUsers)

	a.Handle("hooks.list", http.MethodGet, "/api/v1/hooks", Admin, a.listHooks)
	a.Handle("hooks.get", http.MethodGet, "/api/v1/hooks/{name}", Admin, a.getHook)
	a.Handle("hooks.put", http.MethodPut, "/api/v1/hooks/{name}", Admin, a.putHook)
	a.Handle("hooks.delete", http.MethodDelete, "/api/v1/hooks/{name}", Admin, a.deleteHook)
	a.Handle("hooks.deliveries", http.MethodGet, "/api/v1/hooks/{name}/deliveries", Admin, a.hookDeliveries)

	a.Handle("events.list", http.MethodGet, "/api/v1/events", Admin, a.listEvents)
	a.Handle("sd.exporters", http.MethodGet, "/api/v1/sd", Admin, a.serveSD(exporterTargets))
	a.Handle("sd.probes", http.MethodGet, "/api/v1/sd/probes", Admin, a.serveSD(probeTargets))

	a.router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such endpoint", "")
	})
	a.router.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, codeBadRequest, "method not allowed", "")
	})
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "database unreachable", "")
		return
	}
	w.Write([]byte("Ready.\n"))
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush keeps long-polls and streaming working through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (a *API) instrument(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		a.requests.WithLabelValues(name, strconv.Itoa(rec.code)).Inc()
		a.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	})
}

// Caller identity, stored in the request context by the auth middleware.
type callerKey struct{}

// Caller returns the audit-log actor of an authenticated request.
func Caller(r *http.Request) string {
	if s, ok := r.Context().Value(callerKey{}).(string); ok {
		return s
	}
	return "anonymous"
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// identify says whose token this is: "admin:<name>", "node:<name>", or ""
// for a token nobody issued. Admin tokens are compared in constant time;
// node tokens are found by the hash of the token.
func (a *API) identify(r *http.Request, tok string) (string, error) {
	name, err := a.store.AdminTokenName(r.Context(), tok)
	if err != nil || name != "" {
		return "admin:" + name, err
	}
	node, err := a.store.NodeNameForToken(r.Context(), tok)
	if err != nil || node == "" {
		return "", err
	}
	return "node:" + node, nil
}

// require lets a request through when its token's owner may use the
// route: 401 for no or an unknown token, 403 for one of the wrong kind.
func (a *API) require(may func(r *http.Request, who string) bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if tok == "" {
			unauthorized(w)
			return
		}
		who, err := a.identify(r, tok)
		switch {
		case err != nil:
			a.fail(w, r, err)
		case who == "":
			unauthorized(w)
		case !may(r, who):
			writeError(w, http.StatusForbidden, codeForbidden, "this token may not use this endpoint", "")
		default:
			h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
		}
	}
}

func isAdmin(_ *http.Request, who string) bool { return strings.HasPrefix(who, "admin:") }

// isPathNode admits only the node named in the path.
func isPathNode(r *http.Request, who string) bool { return who == "node:"+mux.Vars(r)["name"] }

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="boxfleet"`)
	writeError(w, http.StatusUnauthorized, codeUnauthorized, "missing or unknown bearer token", "")
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
