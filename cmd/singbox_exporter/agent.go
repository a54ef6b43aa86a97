package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/agent"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
)

// agentFlags are the node agent's flags; the agent runs when
// --controller.url is set.
type agentFlags struct {
	controllerURL, tokenFile                string
	nodeName, nodeAddress, exporterAddress  string
	labels                                  map[string]string
	config, binary, pidFile, reloadCommand  string
	managed                                 []string
	reloadMinInterval, reloadTimeout, heart time.Duration
}

func addAgentFlags(app *kingpin.Application) *agentFlags {
	f := &agentFlags{labels: map[string]string{}}
	hostname, _ := os.Hostname()
	app.Flag("controller.url", "Base URL of the boxfleet controller; when set, the node registers and applies the controller's user set to sing-box.").StringVar(&f.controllerURL)
	app.Flag("controller.token-file", "File holding this node's controller token.").StringVar(&f.tokenFile)
	app.Flag("node.name", "Name of this node at the controller.").Default(hostname).StringVar(&f.nodeName)
	app.Flag("node.address", "Public host clients dial to reach this node.").StringVar(&f.nodeAddress)
	app.Flag("node.label", "Label of this node, as key=value (region, group, ...). Repeatable.").StringMapVar(&f.labels)
	app.Flag("node.exporter-address", "host:port Prometheus scrapes this exporter at. Default: --node.address with the port of --web.listen-address.").StringVar(&f.exporterAddress)
	app.Flag("singbox.config", "sing-box config file whose inbounds' users the agent manages.").Default("/etc/sing-box/config.json").StringVar(&f.config)
	app.Flag("singbox.binary", "sing-box binary, for 'sing-box check' before every reload.").Default("sing-box").StringVar(&f.binary)
	app.Flag("singbox.pid-file", "File holding sing-box's pid; the agent reloads sing-box with SIGHUP.").StringVar(&f.pidFile)
	app.Flag("singbox.reload-command", "Command (run by /bin/sh) that reloads sing-box, instead of SIGHUP to --singbox.pid-file.").StringVar(&f.reloadCommand)
	app.Flag("singbox.reload-min-interval", "Least time between two reloads of sing-box; user-set changes within it are applied together.").Default("30s").DurationVar(&f.reloadMinInterval)
	app.Flag("singbox.reload-timeout", "How long sing-box may take to serve again after a reload before the previous config is restored.").Default("30s").DurationVar(&f.reloadTimeout)
	app.Flag("singbox.managed-inbounds", "Tag of an inbound whose users the agent manages. Repeatable or comma-separated. Default: every vless, vmess, trojan, shadowsocks, hysteria2 and tuic inbound.").StringsVar(&f.managed)
	app.Flag("controller.heartbeat-interval", "How often the node registers again.").Default("60s").Hidden().DurationVar(&f.heart)
	return f
}

// build makes the agent. beforeReload is the meter's Flush: a reload restarts
// sing-box's counters, so the bytes since the last poll must be read first.
func (f *agentFlags) build(clash *clashapi.Client, statePath string, listen []string, reg prometheus.Registerer, log *logrus.Logger, beforeReload func(context.Context)) (*agent.Agent, error) {
	exporter := f.exporterAddress
	if exporter == "" && len(listen) > 0 {
		_, port, err := net.SplitHostPort(listen[0])
		if err != nil {
			return nil, fmt.Errorf("--web.listen-address %q: %w", listen[0], err)
		}
		exporter = net.JoinHostPort(f.nodeAddress, port)
	}
	var managed []string
	for _, m := range f.managed {
		for tag := range strings.SplitSeq(m, ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				managed = append(managed, tag)
			}
		}
	}
	return agent.New(agent.Config{
		ControllerURL:     f.controllerURL,
		TokenFile:         f.tokenFile,
		NodeName:          f.nodeName,
		NodeAddress:       f.nodeAddress,
		ExporterAddress:   exporter,
		Labels:            f.labels,
		ConfigPath:        f.config,
		Managed:           managed,
		Binary:            f.binary,
		PIDFile:           f.pidFile,
		ReloadCommand:     f.reloadCommand,
		MinReloadInterval: f.reloadMinInterval,
		ReloadTimeout:     f.reloadTimeout,
		Heartbeat:         f.heart,
		BeforeReload:      beforeReload,
		StatePath:         statePath,
		Clash:             clash,
		Registerer:        reg,
		Log:               log.WithField("component", "agent"),
	})
}
