package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// scrapeTimeout is Prometheus's default scrape timeout.
const scrapeTimeout = 10 * time.Second

// scrape is what Prometheus does: a GET with the admin token that gives
// up after the scrape timeout.
func scrape(t *testing.T, url, tok string) (map[string]*dto.MetricFamily, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err := (&http.Client{Timeout: scrapeTimeout}).Do(req)
	if err != nil {
		t.Fatalf("scrape: %v after %s", err, time.Since(start))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("scrape: reading the body: %v after %s", err, took)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d after %s: %.300s", resp.StatusCode, took, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return fams, took
}

func gauge(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		return 0, false
	}
	return f.GetMetric()[0].GetGauge().GetValue(), true
}

// TestMetricsAnswerWhileTheStoreIsDown: a real controller whose database
// stops answering (SQLite closed; MariaDB's link cut, its packets held)
// must still answer Prometheus's scrape, with the admin token it verified
// before, well within the scrape timeout, with boxfleet_store_up 0 and
// its Go and process metrics; once the database is back the scrape is
// whole again. Before, the token lookup failed (500) or hung on the link,
// and the collector's and the per-user reads waited 10 s each: Prometheus
// saw the controller down, and no alert said why.
func TestMetricsAnswerWhileTheStoreIsDown(t *testing.T) {
	run := func(t *testing.T, st *store.Store, cut, mend func()) {
		ctx := context.Background()
		log := logrus.New()
		log.SetOutput(io.Discard)
		ctl, err := Build(st, Config{PrometheusURL: "http://127.0.0.1:1", ID: "t", AccountingInterval: time.Minute,
			LeaseTTL: time.Minute, Actions: actions.Config{MaxDrainedRatio: 0.5}}, log)
		if err != nil {
			t.Fatal(err)
		}
		const tok = "0123456789abcdef0123"
		if err := st.EnsureAdminToken(ctx, "t", tok); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateUser(ctx, "t", "alice", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(ctl.API)
		defer srv.Close()

		fams, took := scrape(t, srv.URL, tok)
		if up, ok := gauge(fams, "boxfleet_store_up"); !ok || up != 1 {
			t.Fatalf("boxfleet_store_up before the outage: %v (present %v), want 1", up, ok)
		}
		if _, ok := fams["boxfleet_user_status"]; !ok {
			t.Fatalf("no per-user families before the outage")
		}
		t.Logf("scrape before the outage: %s", took.Round(time.Millisecond))

		cut()
		for i := range 2 {
			fams, took = scrape(t, srv.URL, tok)
			t.Logf("scrape %d during the outage: %s", i+1, took.Round(time.Millisecond))
			// 2 s for the token lookup, 3 s for the collector's read.
			if took > 7*time.Second {
				t.Errorf("scrape %d during the outage took %s, want under 7s", i+1, took)
			}
			if up, ok := gauge(fams, "boxfleet_store_up"); !ok || up != 0 {
				t.Errorf("boxfleet_store_up during the outage: %v (present %v), want 0", up, ok)
			}
			for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "boxfleet_build_info", "boxfleet_http_requests_total"} {
				if _, ok := fams[name]; !ok {
					t.Errorf("%s missing from the scrape during the outage", name)
				}
			}
		}
		if mend == nil {
			return
		}
		mend()
		deadline := time.Now().Add(10 * time.Second)
		for {
			fams, _ = scrape(t, srv.URL, tok)
			up, _ := gauge(fams, "boxfleet_store_up")
			_, users := fams["boxfleet_user_status"]
			if up == 1 && users {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("10s after the link mended: boxfleet_store_up %v, per-user families %v", up, users)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		st := storetest.SQLite(t)
		run(t, st, func() { st.Close() }, nil)
	})
	t.Run("mysql", func(t *testing.T) {
		db := storetest.NewMySQLDB(t)
		l := testsupport.NewLink()
		proxy := testsupport.StartMySQLProxy(t, db.DSN, func() testsupport.PacketHooks {
			return l.Hooks()
		})
		st, err := store.Open(context.Background(), proxy.DSN(db.DSN), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		t.Cleanup(l.Mend) // first: nothing stays blocked on the link
		run(t, st, l.Cut, l.Mend)
	})
}
