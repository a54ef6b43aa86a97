package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// TestMetricsListed builds a real controller, makes every part produce its
// series (a user with every limit, a drained node, a health score, an API
// request, a webhook call, an accounting cycle) and checks /metrics
// against Metrics, name by name, type and labels.
func TestMetricsListed(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctl, err := Build(st, Config{PrometheusURL: "http://127.0.0.1:1", ID: "t", AccountingInterval: time.Minute,
		LeaseTTL: time.Minute, Actions: actions.Config{MaxDrainedRatio: 0.5}}, log)
	if err != nil {
		t.Fatal(err)
	}
	limit, devices, exp, month := int64(1<<30), int64(2), time.Now().Add(time.Hour), "month"
	if _, err := st.CreateUser(ctx, "t", "alice", "", store.UserSpec{TrafficLimit: &limit, DeviceLimit: &devices, ExpireAt: &exp, ResetStrategy: &month}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateNode(ctx, "t", "n1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RegisterNode(ctx, "n1", sbconfig.Registration{Address: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	ctl.Ranker.Set(map[string]float64{"n1": 1})
	ctl.Leader.Acct.Cycle(ctx) // fails (no Prometheus): the error counter and histogram appear
	if err := st.EnsureAdminToken(ctx, "t", "0123456789abcdef0123"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ctl.API)
	defer srv.Close()
	post(t, srv.URL+"/api/v1/alerts", `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"X"},"fingerprint":"f","startsAt":"2026-01-01T00:00:00Z"}]}`)

	// What a scrape gets, not what the registry holds: the per-user
	// families are written by collector.Handler beside the registry.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Metric{}
	for _, f := range fams {
		name := f.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		got[name] = Metric{Name: name, Type: strings.ToLower(f.GetType().String()), Labels: labelNames(f)}
	}
	for _, m := range Metrics {
		g, ok := got[m.Name]
		if !ok {
			t.Errorf("%s is listed but not exposed", m.Name)
			continue
		}
		if g.Type != m.Type || !slices.Equal(g.Labels, m.Labels) {
			t.Errorf("%s: exposed as %s %v, listed as %s %v", m.Name, g.Type, g.Labels, m.Type, m.Labels)
		}
		delete(got, m.Name)
	}
	for name := range got {
		t.Errorf("%s is exposed but not listed in Metrics", name)
	}
}

func labelNames(f *dto.MetricFamily) []string {
	seen := map[string]bool{}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			seen[l.GetName()] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func post(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
}
