// Package logging sets up logrus from Prometheus-style --log.level and
// --log.format flags, and hands libraries that want log/slog (the
// exporter-toolkit web server) a logger that writes through the same logrus.
package logging

import (
	"context"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/sirupsen/logrus"
)

// Config holds the parsed flags.
type Config struct {
	Level  string
	Format string
}

// AddFlags registers --log.level and --log.format.
func AddFlags(app *kingpin.Application) *Config {
	c := &Config{}
	app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").EnumVar(&c.Level, "debug", "info", "warn", "error")
	app.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").
		Default("logfmt").EnumVar(&c.Format, "logfmt", "json")
	return c
}

// New returns a logger writing to stderr.
func New(c *Config) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	if lvl, err := logrus.ParseLevel(c.Level); err == nil {
		l.SetLevel(lvl)
	}
	if c.Format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	}
	return l
}

// Slog returns a log/slog logger that writes through l.
func Slog(l *logrus.Logger) *slog.Logger {
	return slog.New(&handler{l: l})
}

type handler struct {
	l     *logrus.Logger
	attrs []slog.Attr
	group string
}

func (h *handler) Enabled(_ context.Context, lvl slog.Level) bool {
	return h.l.IsLevelEnabled(toLogrus(lvl))
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{}
	add := func(a slog.Attr) bool {
		k := a.Key
		if h.group != "" {
			k = h.group + "." + k
		}
		fields[k] = a.Value.Any()
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.l.WithFields(fields).Log(toLogrus(r.Level), r.Message)
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{l: h.l, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...), group: h.group}
}

func (h *handler) WithGroup(name string) slog.Handler {
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &handler{l: h.l, attrs: h.attrs, group: g}
}

func toLogrus(l slog.Level) logrus.Level {
	switch {
	case l >= slog.LevelError:
		return logrus.ErrorLevel
	case l >= slog.LevelWarn:
		return logrus.WarnLevel
	case l >= slog.LevelInfo:
		return logrus.InfoLevel
	default:
		return logrus.DebugLevel
	}
}
