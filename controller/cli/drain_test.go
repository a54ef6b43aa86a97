package cli_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/cli"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

type healthy struct{}

func (healthy) Score(string) (float64, bool) { return 1, true }

// TestNodeDrainForce: the API's refusal reaches the operator as the API's
// error, and --force drains anyway.
func TestNodeDrainForce(t *testing.T) {
	s := storetest.SQLite(t)
	if err := s.EnsureAdminToken(context.Background(), "test", adminToken); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateNode(context.Background(), "test", "n1", nil); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := httptest.NewServer(api.New(api.Options{Store: s, Log: log, Registry: prometheus.NewRegistry(), Health: healthy{}}))
	t.Cleanup(srv.Close)
	tf := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tf, []byte(adminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		app := kingpin.New("boxfleet", "")
		c := cli.Register(app)
		var out bytes.Buffer
		c.Out = &out
		_, err := app.Parse(append([]string{"--url", srv.URL, "--admin.token-file", tf}, args...))
		return out.String(), err
	}
	_, err := run("node", "drain", "n1")
	if err == nil || !strings.Contains(err.Error(), "conflict (HTTP 409): draining n1 would leave 0 undrained healthy node(s)") {
		t.Fatalf("drain of the last healthy node: %v", err)
	}
	out, err := run("node", "drain", "n1", "--force", "--reason", "moving")
	if err != nil || !strings.Contains(out, "yes: moving") {
		t.Fatalf("forced drain: %v\n%s", err, out)
	}
}
