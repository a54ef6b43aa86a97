package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// Handler writes the users' families itself; what a scraper reads must be
// what the registry would have written.
func TestHandlerMatchesRegistry(t *testing.T) {
	st := storetest.SQLite(t)
	st.Now = func() time.Time { return time.Date(2025, 5, 14, 10, 0, 0, 0, time.UTC) }
	ctx := context.Background()
	month, lim, dev := "month", int64(5<<30), int64(3)
	exp := st.Now().Add(48 * time.Hour)
	for _, u := range []struct {
		name string
		spec store.UserSpec
	}{
		{"plain", store.UserSpec{}},
		{"monthly", store.UserSpec{ResetStrategy: &month, TrafficLimit: &lim}},
		{"dev.ice-1", store.UserSpec{DeviceLimit: &dev, ExpireAt: &exp}},
		{"suspended", store.UserSpec{}},
	} {
		if _, err := st.CreateUser(ctx, "t", u.name, "", u.spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.SuspendUser(ctx, "t", "suspended", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CommitNode(ctx, "", "", "n1", 0, []store.Sample{{User: "monthly", Direction: "upload", Value: 123456789012}}, st.Now()); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)

	plain := prometheus.NewRegistry()
	plain.MustRegister(&Collector{Store: st, Log: log, Timeout: 5 * time.Second})
	streamed := prometheus.NewRegistry()
	streamed.MustRegister(&Collector{Store: st, Log: log, Timeout: 5 * time.Second, StreamUsers: true})

	mfs, err := plain.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := expfmt.NewEncoder(&want, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, gz := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		Handler(streamed, st, log, 5*time.Second).ServeHTTP(rec, req)
		body := io.Reader(rec.Body)
		if gz {
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		got, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := parseText(t, got), parseText(t, want.Bytes()); !slices.Equal(g, w) {
			t.Errorf("gzip %v: handler wrote\n%s\nwant (as the registry)\n%s", gz, got, want.String())
		}
	}
}

// parseText returns every sample of a text exposition, with its family's
// type and help, as sorted lines.
func parseText(t *testing.T, b []byte) []string {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v in\n%s", err, b)
	}
	var out []string
	for name, mf := range fams {
		for _, m := range mf.Metric {
			// The order of labels on a line does not matter.
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
			out = append(out, name+" "+mf.GetType().String()+" "+mf.GetHelp()+" "+m.String())
		}
	}
	slices.Sort(out)
	return out
}

// BenchmarkScrape serves /metrics for 100,000 users through the registry
// (the Collector alone) and through Handler; B/op is what one scrape
// allocates, most of it live at once in the registry's case.
func BenchmarkScrape(b *testing.B) {
	db := storetest.NewSQLiteDB(b)
	st := db.Open(b)
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(db.Dir, "boxfleet.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	const n, chunk = 100_000, 500
	for start := 0; start < n; start += chunk {
		var args []any
		for u := start; u < start+chunk; u++ {
			name := fmt.Sprintf("u%06d", u)
			args = append(args, name, fmt.Sprintf("00000000-0000-4000-8000-%012d", u), name, name, name, "tok-"+name,
				store.StatusActive, int64(u)<<20, "month", 0, int64(u)*1000, 0, 0)
		}
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", 13), ",") + ")"
		if _, err := raw.Exec(`INSERT INTO users (name, uuid, password, ss_key_16, ss_key_32, sub_token,
		  status, traffic_limit, reset_strategy, period_start, used_up, created_at, updated_at) VALUES `+
			strings.TrimSuffix(strings.Repeat(row+",", chunk), ","), args...); err != nil {
			b.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	for _, streamed := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&Collector{Store: st, Log: log, Timeout: time.Minute, StreamUsers: streamed})
		h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		if streamed {
			h = Handler(reg, st, log, time.Minute)
		}
		// Prometheus asks for gzip; the plain scrape shows the rest's cost.
		for _, enc := range []string{"", "gzip"} {
			b.Run(fmt.Sprintf("streamed=%v/encoding=%s", streamed, enc), func(b *testing.B) {
				b.ReportAllocs()
				var sent int
				for b.Loop() {
					rec := httptest.NewRecorder()
					rec.Body = nil // count the scrape, not the recorder's copy
					req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
					if enc != "" {
						req.Header.Set("Accept-Encoding", enc)
					}
					w := discard{rec, 0}
					h.ServeHTTP(&w, req)
					sent = w.n
				}
				b.ReportMetric(float64(sent), "body-bytes")
			})
		}
	}
}

// discard is a ResponseWriter that drops the body and counts its bytes.
type discard struct {
	*httptest.ResponseRecorder
	n int
}

func (d *discard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }
