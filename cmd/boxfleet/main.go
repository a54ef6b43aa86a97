// Command boxfleet is the fleet's control plane: `boxfleet serve` runs the
// controller; the other subcommands are its admin command line.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/cli"
	"github.com/boxfleet/boxfleet/controller/server"
	"github.com/boxfleet/boxfleet/internal/logging"
)

func main() {
	app := kingpin.New("boxfleet", "Control plane for a fleet of sing-box nodes: users, quotas, subscriptions, alert-driven actions.")
	app.Version(version.Print("boxfleet"))
	app.HelpFlag.Short('h')
	logConfig := logging.AddFlags(app)
	admin := cli.Register(app)

	serve := app.Command("serve", "Run the controller.")
	host, _ := os.Hostname()
	var c server.Config
	serve.Flag("data.dir", "Directory for the embedded SQLite database, the generated admin token and the first owner's password (admin.password).").Default("./data").StringVar(&c.DataDir)
	serve.Flag("db.dsn", "MySQL DSN (user:pass@tcp(host:3306)/boxfleet). Empty: embedded SQLite in --data.dir.").Envar("BOXFLEET_DB_DSN").StringVar(&c.DSN)
	serve.Flag("db.dsn-file", "File holding the MySQL DSN (keeps the password out of the process list).").StringVar(&c.DSNFile)
	serve.Flag("prometheus.url", "Prometheus that scrapes the exporters (accounting, health ranking).").Default("http://127.0.0.1:9090").StringVar(&c.PrometheusURL)
	serve.Flag("accounting.skip-quiet-nodes", "Leave unread each cycle the nodes whose singbox_exporter_user_counters_change_timestamp_seconds stood still since their last commit.").Default("true").BoolVar(&c.AccountingSkipQuiet)
	serve.Flag("accounting.full-reads", "Read every per-user series of every node each cycle instead of only those that moved since the node's last commit; for a metrics back end whose scrapes do not become visible all at once or that does not write scrape_series_added.").BoolVar(&c.AccountingFullReads)
	serve.Flag("accounting.interval", "How often traffic is read from Prometheus into the ledger, and quotas and expiries are swept.").Default("10s").DurationVar(&c.AccountingInterval)
	serve.Flag("lease.ttl", "How long the accounting lease lasts without renewal: another controller takes over within this after the leader dies. On MySQL the server also ends a transaction left idle this long, so that a leader cut off mid-commit does not keep the lease row locked.").Default("15s").DurationVar(&c.LeaseTTL)
	serve.Flag("controller.id", "This controller's identity in the lease (several controllers on one MySQL).").Default(fmt.Sprintf("%s-%d", host, os.Getpid())).StringVar(&c.ID)
	serve.Flag("health.query", "PromQL giving each node a score in 0..1 (label node); empty uses the built-in one, documented in the README.").StringVar(&c.HealthQuery)
	serve.Flag("health.interval", "How often node scores are read from Prometheus.").Default("30s").DurationVar(&c.HealthInterval)
	serve.Flag("nodes.drain-min-healthy", "A manual drain is refused (unless forced) when it would leave fewer than this many undrained healthy nodes in the node's group; 0 turns the guard off.").Default("1").IntVar(&c.DrainMinHealthy)
	serve.Flag("actions.dry-run", "Record what alert actions would do without doing it.").BoolVar(&c.Actions.DryRun)
	rate := serve.Flag("actions.rate-limit", "At most this many alert actions of any kind, as N/window.").Default("30/1m").String()
	suspendRate := serve.Flag("actions.suspend-rate-limit", "At most this many users suspended by alerts, as N/window.").Default("20/1m").String()
	drainRate := serve.Flag("actions.drain-rate-limit", "At most this many nodes drained by alerts, as N/window.").Default("3/10m").String()
	serve.Flag("actions.reconcile-interval", "How often the lease holder resolves alert episodes whose resolved notification was lost.").Default("30s").DurationVar(&c.Actions.ReconcileInterval)
	serve.Flag("actions.reconcile-grace", "How long Prometheus must report an acting alert not firing before the reconcile loop resolves it; keep it above the controller route's group_interval.").Default("2m").DurationVar(&c.Actions.ReconcileGrace)
	serve.Flag("actions.max-drained-ratio", "Alerts never drain more than this share of a node group (and never its last healthy node).").Default("0.5").Float64Var(&c.Actions.MaxDrainedRatio)
	serve.Flag("sub.title", "Profile title clients show; default: the user's name.").StringVar(&c.SubTitle)
	serve.Flag("sub.support-url", "support-url header: where users ask for help.").StringVar(&c.SubSupportURL)
	serve.Flag("sub.web-page-url", "profile-web-page-url header; default: the subscription page itself.").StringVar(&c.SubWebPageURL)
	serve.Flag("sub.update-interval", "profile-update-interval: how often clients refresh.").Default("12h").DurationVar(&c.SubUpdateInterval)
	serve.Flag("sub.templates-dir", "Directory of templates overriding the built-in ones by file name.").StringVar(&c.SubTemplates)
	serve.Flag("sub.misses-per-minute", "Unknown tokens one IP may try per minute before it is refused (429) for the rest of the minute; 0 disables.").Default("10").IntVar(&c.SubMissesPerMinute)
	serve.Flag("web.external-url", "Public base URL of the controller, for subscription links; default: from each request's Host.").StringVar(&c.ExternalURL)
	serve.Flag("web.admin-listen-address", "When set, the API, UI and /metrics answer only on this address; --web.listen-address then serves only /sub/ and health checks.").StringVar(&c.AdminListen)
	serve.Flag("web.trusted-proxies", "CIDR of a reverse proxy or CDN whose X-Forwarded-For and X-Forwarded-Proto are believed (repeatable, or comma-separated).").StringsVar(&c.TrustedProxies)
	serve.Flag("web.session-idle-timeout", "A browser session unused for this long ends.").Default("1h").DurationVar(&c.SessionIdle)
	serve.Flag("web.session-max-age", "A browser session ends this long after login, however much it is used.").Default("12h").DurationVar(&c.SessionMaxAge)
	serve.Flag("web.ui-refresh", "How long the admin UI's live numbers from Prometheus are cached: any number of open tabs costs one query per view per interval.").Default("10s").DurationVar(&c.UIRefresh)
	serve.Flag("install.dir", "Directory with singbox_exporter-linux-amd64 and -arm64 (make dist), served at /install/ for the one-line node install.").StringVar(&c.InstallDir)
	c.Web = kingpinflag.AddFlags(serve, ":8080")

	if servesHelp(app, os.Args[1:]) {
		admin.HideAdminFlags()
	}
	cmd, err := app.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxfleet: %v\n", err)
		os.Exit(1)
	}
	if cmd != serve.FullCommand() {
		return // admin commands ran as kingpin actions
	}
	c.AdminTokenFile = admin.TokenFile // --admin.token-file is shared with the admin commands
	var proxies []string
	for _, p := range c.TrustedProxies {
		proxies = append(proxies, strings.Split(p, ",")...)
	}
	c.TrustedProxies = proxies
	if c.SessionIdle < time.Second || c.SessionMaxAge < c.SessionIdle {
		app.Fatalf("--web.session-idle-timeout must be at least 1s and at most --web.session-max-age")
	}
	if c.UIRefresh < time.Second {
		app.Fatalf("--web.ui-refresh must be at least 1s")
	}
	if c.LeaseTTL < 3*time.Second {
		app.Fatalf("--lease.ttl must be at least 3s")
	}
	for _, r := range []struct {
		flag string
		dst  *actions.Rate
		val  string
	}{{"actions.rate-limit", &c.Actions.Rate, *rate}, {"actions.suspend-rate-limit", &c.Actions.SuspendRate, *suspendRate}, {"actions.drain-rate-limit", &c.Actions.DrainRate, *drainRate}} {
		var err error
		if *r.dst, err = actions.ParseRate(r.val); err != nil {
			app.Fatalf("--%s: %v", r.flag, err)
		}
	}
	log := logging.New(logConfig)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, c, log); err != nil {
		log.WithError(err).Error("boxfleet stopped")
		os.Exit(1)
	}
}

// servesHelp reports whether args ask for serve's help (serve --help, help
// serve), which should not list the admin commands' flags. Parsing the
// context runs no action and sets no value.
func servesHelp(app *kingpin.Application, args []string) bool {
	pc, err := app.ParseContext(args)
	if err != nil || pc.SelectedCommand == nil {
		return false
	}
	switch pc.SelectedCommand.FullCommand() {
	case "serve":
		return true
	case "help":
		for _, e := range pc.Elements {
			if _, ok := e.Clause.(*kingpin.ArgClause); ok && e.Value != nil && *e.Value == "serve" {
				return true
			}
		}
	}
	return false
}
