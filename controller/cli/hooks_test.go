package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/cli"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

const (
	adminToken = "cli-admin-token-0123456789abcdef"
	hookSecret = "cli-hook-secret-0123456789"
)

// controller serves the real API on a fresh store; run runs one boxfleet
// command line against it the way main does.
type controller struct {
	t         *testing.T
	store     *store.Store
	url       string
	tokenFile string
}

func newController(t *testing.T) *controller {
	s := storetest.SQLite(t)
	if err := s.EnsureAdminToken(context.Background(), "test", adminToken); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := httptest.NewServer(api.New(api.Options{Store: s, Log: log, Registry: prometheus.NewRegistry()}))
	t.Cleanup(srv.Close)
	tf := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tf, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &controller{t: t, store: s, url: srv.URL, tokenFile: tf}
}

func (c *controller) run(args ...string) (string, error) {
	app := kingpin.New("boxfleet", "")
	cmd := cli.Register(app)
	var out bytes.Buffer
	cmd.Out = &out
	_, err := app.Parse(append([]string{"--url", c.url, "--token-file", c.tokenFile}, args...))
	return out.String(), err
}

func (c *controller) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("boxfleet %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestHookCommands(t *testing.T) {
	c := newController(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := c.ok("hook", "put", "ops", "https://hooks.example/in", "--secret-file", secretFile, "--event", "user.suspend", "--event", "node.drain")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		strings.Join(strings.Fields(lines[1]), " ") != "ops https://hooks.example/in node.drain,user.suspend" {
		t.Fatalf("hook put printed:\n%s", out)
	}
	// The file ends in a newline, which is not part of the secret (the
	// store refuses a secret with white space around it).

	if _, err := c.run("hook", "put", "bad", "ftp://x", "--secret-file", secretFile, "--event", "*"); err == nil || !strings.Contains(err.Error(), "url") {
		t.Errorf("an ftp URL: %v", err)
	}
	if _, err := c.run("hook", "put", "bad", "https://x", "--secret-file", filepath.Join(t.TempDir(), "missing"), "--event", "*"); err == nil {
		t.Error("a missing secret file was accepted")
	}

	out = c.ok("hook", "list")
	if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "ops") || strings.Contains(out, "bad") {
		t.Errorf("hook list:\n%s", out)
	}
	var list struct {
		Hooks []map[string]any `json:"hooks"`
	}
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "hook", "list")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Hooks) != 1 || list.Hooks[0]["secret_set"] != true {
		t.Errorf("hook list -o json: %v", list)
	}
	if _, ok := list.Hooks[0]["secret"]; ok {
		t.Error("hook list -o json shows the secret")
	}

	if _, err := c.store.CreateUser(context.Background(), "admin", "alice", "", store.UserSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.SuspendUser(context.Background(), "admin", "alice", "abuse"); err != nil {
		t.Fatal(err)
	}
	out = c.ok("hook", "deliveries", "ops")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "user.suspend") || !strings.Contains(lines[1], "pending") {
		t.Errorf("hook deliveries:\n%s", out)
	}
	if _, err := c.run("hook", "deliveries", "nobody"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("deliveries of an unknown hook: %v", err)
	}

	// A delivery is queued again by hand, with a fresh count of attempts.
	ds, err := c.store.HookDeliveries(context.Background(), "ops", 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries %v (%v)", ds, err)
	}
	id := strconv.FormatInt(ds[0].ID, 10)
	out = c.ok("hook", "redeliver", "ops", id)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || strings.Fields(lines[1])[0] != id || !strings.Contains(lines[1], "pending") {
		t.Errorf("hook redeliver printed:\n%s", out)
	}
	if _, err := c.run("hook", "redeliver", "ops", "999999"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("redeliver of an unknown delivery: %v", err)
	}
	if _, err := c.run("hook", "redeliver", "ops", "x"); err == nil {
		t.Error("redeliver of a delivery id that is not a number was accepted")
	}
	if evs, err := c.store.Events(context.Background(), store.EventFilter{Action: "hook.redeliver"}); err != nil || len(evs) != 1 {
		t.Errorf("hook.redeliver audited %d times (%v), want once", len(evs), err)
	}

	if out := c.ok("hook", "delete", "ops"); out != "deleted ops\n" {
		t.Errorf("hook delete printed %q", out)
	}
	if out := c.ok("hook", "list"); strings.Contains(out, "ops") {
		t.Errorf("deleted hook still listed:\n%s", out)
	}
}
