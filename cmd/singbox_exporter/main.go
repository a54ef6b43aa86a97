// Command singbox_exporter meters a sing-box node for Prometheus: node and
// per-user traffic, connections and client IPs, from the Clash API (or
// exactly from the V2Ray stats API when sing-box is built with it).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/agent"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/collector"
	"github.com/boxfleet/boxfleet/exporter/meter"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
	"github.com/boxfleet/boxfleet/exporter/v2rayapi"
	"github.com/boxfleet/boxfleet/internal/logging"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

func main() {
	app := kingpin.New("singbox_exporter", "Prometheus exporter for sing-box: node and per-user traffic.")
	var (
		metricsPath = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
		maxRequests = app.Flag("web.max-requests", "Maximum number of parallel scrape requests. 0 disables the limit.").Default("10").Int()
		clashURL    = app.Flag("singbox.clash-api", "Base URL of sing-box's Clash API (experimental.clash_api.external_controller).").Default("http://127.0.0.1:9090").String()
		secretFile  = app.Flag("singbox.clash-secret-file", "File holding the Clash API secret.").String()
		v2rayAddr   = app.Flag("singbox.v2ray-api", "host:port of sing-box's V2Ray stats API; when set, per-user traffic is read from it exactly.").String()
		apiAddr     = app.Flag("singbox.api", "host:port of sing-box's API service (sing-box 1.14+, services: type api); when set, per-user traffic is read from its connection events exactly.").String()
		apiSecret   = app.Flag("singbox.api-secret-file", "File holding the API service's secret.").String()
		minInterval = app.Flag("singbox.poll-interval", "Regular interval between polls of /connections when they are cheap; the budget stretches it on busy nodes.").Default("250ms").Duration()
		maxInterval = app.Flag("singbox.poll-max-interval", "Longest interval between polls, however many connections are open.").Default("30s").Duration()
		budget      = app.Flag("singbox.poll-budget", "Share of one CPU core that polling may cost sing-box and the exporter together; the interval stretches to keep within it.").Default("0.03").Float64()
		timeout     = app.Flag("singbox.timeout", "Timeout of one poll of sing-box.").Default("10s").Duration()
		statePath   = app.Flag("state.path", "File that keeps counters across restarts. Empty keeps nothing.").Default("singbox_exporter.state.json").String()
		minBytes    = app.Flag("collector.user-min-bytes", "Expose a user's traffic counters only once the user moved at least this many bytes on this node (both directions together); a series that appears later starts from its whole value, which the controller bills in full. 1 hides users who never moved a byte; 0 exposes every user sing-box reports.").Default("1").Uint64()
		idleTimeout = app.Flag("collector.user-idle-timeout", "Hide the traffic counters of a user who moved no byte on this node for this long; they come back with their whole value at the next byte. The bytes such a user moved last are billed only if a controller committed them before the series went, so keep this far above any accounting outage. 0 never hides an idle user.").Default("0").Duration()
		recentWin   = app.Flag("collector.user-recent-window", "Also expose, as singbox_user_traffic_recent_bytes_total, the counters of the users that moved within this window, so that the controller reads only those instead of every user. Keep it above twice the scrape interval plus 30 s (the controller reads the whole node when its last read is older than the window less 30 s). 0 turns the series off.").Default("2m").Duration()
		deviceKey   = app.Flag("collector.device-key-file", "File holding a secret shared by every node of the fleet (at least 16 bytes); when set, singbox_user_source_ip_bucket lets Prometheus count a user's distinct client addresses across nodes without exposing them.").String()
	)
	agentFlags := addAgentFlags(app)
	toolkitFlags := kingpinflag.AddFlags(app, ":9550")
	logConfig := logging.AddFlags(app)
	app.Version(version.Print("singbox_exporter"))
	app.HelpFlag.Short('h')
	kingpin.MustParse(app.Parse(os.Args[1:]))

	log := logging.New(logConfig)
	if err := run(log, options{
		metricsPath: *metricsPath, maxRequests: *maxRequests, clashURL: *clashURL, secretFile: *secretFile,
		v2rayAddr: *v2rayAddr, apiAddr: *apiAddr, apiSecretFile: *apiSecret, minInterval: *minInterval, maxInterval: *maxInterval, budget: *budget,
		timeout: *timeout, statePath: *statePath, toolkit: toolkitFlags, agent: agentFlags,
		userMinBytes: *minBytes, userIdleTimeout: *idleTimeout, userRecentWindow: *recentWin, deviceKeyFile: *deviceKey,
	}); err != nil {
		log.WithError(err).Error("singbox_exporter failed")
		os.Exit(1)
	}
}

type options struct {
	metricsPath, clashURL, secretFile, v2rayAddr, statePath string
	apiAddr, apiSecretFile, deviceKeyFile                   string
	maxRequests                                             int
	userMinBytes                                            uint64
	minInterval, maxInterval, timeout, userIdleTimeout      time.Duration
	userRecentWindow                                        time.Duration
	budget                                                  float64
	toolkit                                                 *web.FlagConfig
	agent                                                   *agentFlags
}

func run(log *logrus.Logger, o options) error {
	log.WithField("version", version.Info()).Info("starting singbox_exporter")
	secret, err := readSecret(o.secretFile)
	if err != nil {
		return err
	}
	collectorOpts := collector.Options{UserMinBytes: o.userMinBytes, UserIdleTimeout: o.userIdleTimeout, UserRecentWindow: o.userRecentWindow}
	if o.deviceKeyFile != "" {
		if collectorOpts.DeviceKey, err = collector.LoadDeviceKey(o.deviceKeyFile); err != nil {
			return err
		}
		log.WithField("file", o.deviceKeyFile).Info("device key loaded: client addresses are exposed as keyed-hash buckets")
	} else {
		log.Info("no --collector.device-key-file: devices are counted per node only, and a device on two nodes counts twice")
	}
	clash, err := clashapi.NewClient(o.clashURL, secret)
	if err != nil {
		return err
	}
	cfg := meter.Config{
		Clash: clash, StatePath: o.statePath, MinInterval: o.minInterval, MaxInterval: o.maxInterval,
		Budget: o.budget, Timeout: o.timeout, Log: log.WithField("component", "meter"),
	}
	if o.v2rayAddr != "" {
		stats, err := v2rayapi.Dial(o.v2rayAddr)
		if err != nil {
			return err
		}
		defer stats.Close()
		cfg.Stats = stats
	}
	apiAddr, apiSecret := o.apiAddr, ""
	if o.apiAddr != "" {
		if o.v2rayAddr != "" {
			return errors.New("--singbox.api and --singbox.v2ray-api both measure users exactly: set one")
		}
		if apiSecret, err = readSecret(o.apiSecretFile); err != nil {
			return err
		}
	} else if o.v2rayAddr == "" && o.agent.controllerURL != "" {
		// The agent owns sing-box's config: an API service there is used
		// without further flags, so adding the block is all it takes.
		if b, err := os.ReadFile(o.agent.config); err == nil {
			if addr, secret, ok := sbconfig.APIService(b); ok {
				apiAddr, apiSecret = addr, secret
				log.WithField("address", addr).Info("sing-box's config has an API service: users are read from its connection events")
			}
		}
	}
	if apiAddr != "" {
		events, err := sbapi.Dial(apiAddr, apiSecret)
		if err != nil {
			return err
		}
		defer events.Close()
		cfg.Events = events
	}
	m := meter.New(cfg)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector.NewWithOptions(m, collectorOpts),
		versioncollector.NewCollector("singbox_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	var nodeAgent *agent.Agent
	if o.agent.controllerURL != "" {
		nodeAgent, err = o.agent.build(clash, o.statePath, *o.toolkit.WebListenAddresses, reg, log,
			func(ctx context.Context) {
				if err := m.Flush(ctx); err != nil {
					log.WithError(err).Warn("flush before reload failed")
				}
			})
		if err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	if nodeAgent != nil {
		go nodeAgent.Run(ctx)
	}

	srv := &http.Server{Handler: routes(reg, o, m, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, o.toolkit, logging.Slog(log)) }()
	select {
	case err = <-errc:
		stop()
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}
	<-done // the meter writes its state before we exit
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func routes(reg *prometheus.Registry, o options, f flusher, log logrus.FieldLogger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(o.metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: o.maxRequests,
	}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	mux.Handle("/-/flush", flushHandler(f, log))
	if o.metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "sing-box Exporter",
			Description: "Prometheus exporter for sing-box: node and per-user traffic",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: o.metricsPath, Text: "Metrics"}, {Address: "/-/healthy", Text: "Health"}},
		})
		if err == nil {
			mux.Handle("/", landing)
		}
	}
	return mux
}

// flusher is the meter's Flush.
type flusher interface {
	Flush(ctx context.Context) error
}

// flushHandler answers POST /-/flush only once the meter has polled, settled
// and written its state. sing-box's unit runs it before every stop (see
// deploy/install-node.sh), and the stop waits for the answer: that is what
// makes a planned stop lose nothing.
func flushHandler(f flusher, log logrus.FieldLogger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "Only POST is allowed", http.StatusMethodNotAllowed)
			return
		}
		if err := f.Flush(r.Context()); err != nil {
			log.WithError(err).Warn("flush failed")
			http.Error(w, "Flush failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Flushed")
	})
}

func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading Clash API secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
