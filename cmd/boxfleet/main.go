// Command boxfleet is the fleet's control plane: `boxfleet serve` runs the
// controller; the other subcommands are its admin command line.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/boxfleet/boxfleet/controller/cli"
	"github.com/boxfleet/boxfleet/controller/server"
	"github.com/boxfleet/boxfleet/internal/logging"
)

func main() {
	app := kingpin.New("boxfleet", "Control plane for a fleet of sing-box nodes: users, quotas, subscriptions, alert-driven actions.")
	app.Version(version.Print("boxfleet"))
	app.HelpFlag.Short('h')
	logConfig := logging.AddFlags(app)
	cli.Register(app)

	serve := app.Command("serve", "Run the controller.")
	host, _ := os.Hostname()
	var c server.Config
	serve.Flag("data.dir", "Directory for the embedded SQLite database and the generated admin token.").Default("./data").StringVar(&c.DataDir)
	serve.Flag("db.dsn", "MySQL DSN (user:pass@tcp(host:3306)/boxfleet). Empty: embedded SQLite in --data.dir.").Envar("BOXFLEET_DB_DSN").StringVar(&c.DSN)
	serve.Flag("db.dsn-file", "File holding the MySQL DSN (keeps the password out of the process list).").StringVar(&c.DSNFile)
	serve.Flag("admin.token-file", "Admin token file; created with a random token (mode 0600) when missing. Default: <data.dir>/admin.token.").StringVar(&c.AdminTokenFile)
	serve.Flag("prometheus.url", "Prometheus that scrapes the exporters (accounting, health ranking).").Default("http://127.0.0.1:9090").StringVar(&c.PrometheusURL)
	serve.Flag("accounting.interval", "How often traffic is read from Prometheus into the ledger, and quotas and expiries are swept.").Default("1m").DurationVar(&c.AccountingInterval)
	serve.Flag("lease.ttl", "How long the accounting lease lasts without renewal: another controller takes over within this after the leader dies.").Default("15s").DurationVar(&c.LeaseTTL)
	serve.Flag("controller.id", "This controller's identity in the lease (several controllers on one MySQL).").Default(fmt.Sprintf("%s-%d", host, os.Getpid())).StringVar(&c.ID)
	serve.Flag("testing.commit-delay", "Pause before each ledger commit (fault-injection for tests).").Hidden().DurationVar(&c.CommitDelay)
	c.Web = kingpinflag.AddFlags(serve, ":8080")

	cmd, err := app.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxfleet: %v\n", err)
		os.Exit(1)
	}
	if cmd != serve.FullCommand() {
		return // admin commands ran as kingpin actions
	}
	if c.LeaseTTL < 3*time.Second {
		app.Fatalf("--lease.ttl must be at least 3s")
	}
	log := logging.New(logConfig)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, c, log); err != nil {
		log.WithError(err).Error("boxfleet stopped")
		os.Exit(1)
	}
}
