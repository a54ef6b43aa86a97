// Package server wires the controller together for `boxfleet serve`: store,
// admin token, API, metrics, and the singleton loops under the lease.
package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/accounting"
	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/collector"
	"github.com/boxfleet/boxfleet/controller/health"
	"github.com/boxfleet/boxfleet/controller/hooks"
	"github.com/boxfleet/boxfleet/controller/live"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/webui"
	"github.com/boxfleet/boxfleet/internal/clientaddr"
	"github.com/boxfleet/boxfleet/internal/logging"
	"github.com/boxfleet/boxfleet/subscribe"
)

// Config is what `boxfleet serve` flags set.
type Config struct {
	DataDir            string
	DSN                string
	DSNFile            string
	AdminTokenFile     string
	PrometheusURL      string
	AccountingInterval time.Duration
	// AccountingFullReads reads every series each cycle (accounting.Accountant.FullReads).
	AccountingFullReads bool
	// AccountingSkipQuiet leaves unread the nodes whose change timestamp
	// stood still (accounting.Accountant.SkipQuiet).
	AccountingSkipQuiet bool
	LeaseTTL            time.Duration
	ID                  string

	HealthQuery    string
	HealthInterval time.Duration
	// DrainMinHealthy is how many undrained healthy nodes a manual drain
	// must leave in its group; 0 turns the guard off.
	DrainMinHealthy int

	Actions actions.Config

	SubTitle, SubSupportURL, SubWebPageURL, ExternalURL, SubTemplates string
	SubUpdateInterval                                                 time.Duration
	SubMissesPerMinute                                                int
	Web                                                               *web.FlagConfig

	// AdminListen, when set, is the only address that serves the API,
	// /metrics and the UI; the main listener then serves only /sub/ and
	// health checks.
	AdminListen string
	// TrustedProxies are the CIDRs whose X-Forwarded-For and
	// X-Forwarded-Proto are believed.
	TrustedProxies []string
	SessionIdle    time.Duration
	SessionMaxAge  time.Duration
	// UIRefresh is how long the UI's live numbers from Prometheus are
	// cached: one query per view and interval, however many tabs.
	UIRefresh time.Duration
	// InstallDir holds the exporter binaries a node's install fetches.
	InstallDir string
}

// Controller is the wired controller without its listener and loops.
type Controller struct {
	Registry *prometheus.Registry
	API      *api.API
	Leader   *accounting.Leader
	Ranker   *health.Ranker
	Actor    *actions.Actor
	Hooks    *hooks.Deliverer
}

// Build wires the controller's parts around an open store.
func Build(st *store.Store, c Config, log *logrus.Logger) (*Controller, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("boxfleet"),
		// The per-user families are written by collector.Handler below,
		// straight from the database: gathered through the registry they
		// cost over a hundred MiB per scrape at 100,000 users.
		&collector.Collector{Store: st, Log: log.WithField("component", "collector"), Timeout: collectTimeout, StreamUsers: true},
	)
	acct, err := accounting.New(st, c.PrometheusURL, c.ID, log.WithField("component", "accounting"), reg)
	if err != nil {
		return nil, err
	}
	acct.FullReads = c.AccountingFullReads
	acct.SkipQuiet = c.AccountingSkipQuiet
	ranker := health.New(acct.Prom, c.HealthQuery, log.WithField("component", "health"), reg)
	actor := actions.New(st, acct.Prom, ranker, log.WithField("component", "actions"), c.Actions, reg)
	renderer, err := subscribe.New(c.SubTemplates)
	if err != nil {
		return nil, fmt.Errorf("--sub.templates-dir: %w", err)
	}
	addr, err := clientaddr.New(c.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--web.trusted-proxies: %w", err)
	}
	metrics := &storeGuard{store: st,
		full:  collector.Handler(reg, st, log.WithField("component", "collector"), usersTimeout),
		plain: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: log.WithField("component", "collector")}),
	}
	a := api.New(api.Options{Store: st, Log: log, Registry: reg, Alerts: actor, ClientAddr: addr, Health: ranker,
		Metrics:         metrics,
		Live:            live.New(acct.Prom, c.UIRefresh),
		DrainMinHealthy: drainMinHealthy(c.DrainMinHealthy),
		Install:         api.InstallOptions{Dir: c.InstallDir, ExternalURL: c.ExternalURL},
		Sessions:        api.SessionOptions{Idle: c.SessionIdle, MaxAge: c.SessionMaxAge}, Sub: &api.SubOptions{
			Renderer: renderer, Ranker: ranker, Title: c.SubTitle, SupportURL: c.SubSupportURL,
			WebPageURL: c.SubWebPageURL, UpdateInterval: c.SubUpdateInterval, ExternalURL: c.ExternalURL,
			MissesPerMinute: c.SubMissesPerMinute,
		}})
	leader := &accounting.Leader{Store: st, Acct: acct, Log: log.WithField("component", "leader"), Holder: c.ID, Interval: c.AccountingInterval, TTL: c.LeaseTTL}
	leader.Register(reg)
	deliverer := hooks.New(st, leader.IsLeader, log.WithField("component", "hooks"), reg)
	return &Controller{Registry: reg, API: a, Leader: leader, Ranker: ranker, Actor: actor, Hooks: deliverer}, nil
}

// drainMinHealthy maps the flag, where 0 is off, to api.Options, where 0
// is the default.
func drainMinHealthy(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// Run serves until ctx ends.
func Run(ctx context.Context, c Config, log *logrus.Logger) error {
	// The components Build wires scope their own loggers; these are the
	// messages of the server itself.
	serverLog := log.WithField("component", "server")
	dsn, err := c.dsn()
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, dsn, c.DataDir, c.LeaseTTL)
	if err != nil {
		return fmt.Errorf("opening the store: %w", err)
	}
	defer st.Close()
	tokenFile := c.AdminTokenFile
	if tokenFile == "" {
		tokenFile = filepath.Join(c.DataDir, "admin.token")
	}
	token, created, err := EnsureTokenFile(tokenFile)
	if err != nil {
		return err
	}
	if created {
		serverLog.WithField("file", tokenFile).Info("created a new admin token")
	}
	if err := st.EnsureAdminToken(ctx, "file:"+filepath.Base(tokenFile), token); err != nil {
		return fmt.Errorf("registering the admin token: %w", err)
	}
	if err := EnsureOwner(ctx, st, filepath.Join(c.DataDir, "admin.password"), serverLog); err != nil {
		return err
	}

	ctl, err := Build(st, c, log)
	if err != nil {
		return err
	}
	leader, ranker := ctl.Leader, ctl.Ranker

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loops := make(chan struct{})
	go func() { leader.Run(ctx); close(loops) }()
	go ranker.Run(ctx, c.HealthInterval)
	delivering := make(chan struct{})
	go func() { ctl.Hooks.Run(ctx); close(delivering) }()
	reconciling := make(chan struct{})
	go func() { ctl.Actor.Reconcile(ctx, leader.IsLeader); close(reconciling) }()

	// The admin UI beside the API, on whichever listener serves the API.
	adminHandler := webui.New().Mount(ctl.API)
	handler := adminHandler
	if c.AdminListen != "" {
		handler = ctl.API.PublicHandler()
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 2)
	go func() { errc <- web.ListenAndServe(srv, c.Web, logging.Slog(log)) }()
	var adminSrv *http.Server
	if c.AdminListen != "" {
		// Same TLS and basic-auth config as the main listener.
		noSocket := false
		adminFlags := &web.FlagConfig{WebListenAddresses: &[]string{c.AdminListen}, WebSystemdSocket: &noSocket, WebConfigFile: c.Web.WebConfigFile}
		adminSrv = &http.Server{Handler: adminHandler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		go func() { errc <- web.ListenAndServe(adminSrv, adminFlags, logging.Slog(log)) }()
		serverLog.WithField("address", c.AdminListen).Info("the API, UI and /metrics answer only on the admin listener")
	}
	go sweepSessions(ctx, st, c.SessionIdle, serverLog)
	serverLog.WithFields(logrus.Fields{"store": st.Backend(), "id": c.ID, "prometheus": c.PrometheusURL}).Info("boxfleet controller started")

	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	if adminSrv != nil {
		adminSrv.Shutdown(sctx)
	}
	<-loops
	<-delivering
	<-reconciling
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (c Config) dsn() (string, error) {
	if c.DSNFile == "" {
		return c.DSN, nil
	}
	b, err := os.ReadFile(c.DSNFile)
	if err != nil {
		return "", fmt.Errorf("--db.dsn-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// EnsureTokenFile reads the admin token from path, creating the file with a
// fresh random token (mode 0600) when it does not exist.
func EnsureTokenFile(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		token = strings.TrimSpace(string(b))
		if len(token) < 16 {
			return "", false, fmt.Errorf("admin token in %s is shorter than 16 characters", path)
		}
		return token, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("reading the admin token: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	token = base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process won the race
			return EnsureTokenFile(path)
		}
		return "", false, err
	}
	defer f.Close()
	if _, err := f.WriteString(token + "\n"); err != nil {
		return "", false, err
	}
	return token, true, f.Sync()
}

// EnsureOwner creates the owner account "admin" when no account exists,
// with a random password written to path (mode 0600). The log says where
// the password is, never what it is. With several controllers on one
// database, the one whose insert wins writes its file; the others find an
// account and do nothing.
func EnsureOwner(ctx context.Context, st *store.Store, path string, log logrus.FieldLogger) error {
	n, err := st.CountAdmins(ctx)
	if err != nil || n > 0 {
		return err
	}
	pw := store.RandomPassword()
	role := store.RoleOwner
	if _, err := st.CreateAdmin(ctx, "boxfleet", "admin", pw, store.AdminSpec{Role: &role}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil
		}
		return fmt.Errorf("creating the owner account: %w", err)
	}
	// A file left from an earlier database holds a password that no longer
	// works: replace it, never append to or reuse it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing the owner's password: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(pw + "\n"); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	log.WithField("file", path).Info("created the owner account \"admin\"; its password is in the file")
	return nil
}

// sweepSessions deletes expired sessions now and then, so that sessions
// nobody comes back to do not pile up.
func sweepSessions(ctx context.Context, st *store.Store, idle time.Duration, log logrus.FieldLogger) {
	if idle <= 0 {
		idle = time.Hour
	}
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := st.DeleteExpiredSessions(ctx, idle); err != nil && ctx.Err() == nil {
				log.WithError(err).Warn("deleting expired sessions")
			}
		}
	}
}
