package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/health"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// subFleet is the sizing case: one user, 50 nodes with 3 inbounds
// each, on the SQLite store; it returns the API and the user's token.
func subFleet(tb testing.TB) (*api.API, string) {
	st := storetest.SQLite(tb)
	log := logrus.New()
	log.SetOutput(io.Discard)
	// The real ranker, with no scores yet: it still sorts every request.
	ranker := health.New(nil, "", log, prometheus.NewRegistry())
	e, _ := newSubEnv(tb, st, api.SubOptions{Ranker: ranker, MissesPerMinute: 10, Title: "Fleet"})
	for i := range 50 {
		addNode(tb, st, fmt.Sprintf("node-%02d", i), []string{"eu", "us", "asia"}[i%3], i)
	}
	u, err := st.CreateUser(context.Background(), "admin:test", "alice", "", store.UserSpec{})
	if err != nil {
		tb.Fatal(err)
	}
	return e.api, u.SubToken
}

var subClients = []struct{ name, ua string }{
	{"base64", "v2rayNG/1.9.0"},
	{"sing-box", "SFA/1.13.0 (Android 14)"},
	{"mihomo", "clash-verge/v2.0.0"},
}

// BenchmarkSub is one /sub/{token} request through the router, the token
// lookup in SQLite, the node list, ranking and rendering.
func BenchmarkSub(b *testing.B) {
	a, token := subFleet(b)
	for _, c := range subClients {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/sub/"+token, nil)
			req.Header.Set("User-Agent", c.ua)
			w := httptest.NewRecorder()
			a.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
			b.SetBytes(int64(w.Body.Len()))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				a.ServeHTTP(w, req)
			}
		})
	}
}

// TestSubLoad drives a real HTTP server on loopback with keep-alive clients
// for BOXFLEET_LOAD_SECONDS (10) per client kind and reports requests/s,
// p50 and p99. It only runs with BOXFLEET_LOAD=1: it measures, it does not
// check, since the machine is shared.
func TestSubLoad(t *testing.T) {
	if os.Getenv("BOXFLEET_LOAD") != "1" {
		t.Skip("set BOXFLEET_LOAD=1 to run the load measurement")
	}
	dur := 10 * time.Second
	if s, err := strconv.Atoi(os.Getenv("BOXFLEET_LOAD_SECONDS")); err == nil && s > 0 {
		dur = time.Duration(s) * time.Second
	}
	conc := 8
	if n, err := strconv.Atoi(os.Getenv("BOXFLEET_LOAD_CLIENTS")); err == nil && n > 0 {
		conc = n
	}
	a, token := subFleet(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + l.Addr().String() + "/sub/" + token

	for _, c := range subClients {
		res := load(t, url, c.ua, conc, dur)
		t.Logf("%-8s %d clients %s: %d requests, %.0f req/s, p50 %s, p99 %s, max %s, errors %d",
			c.name, conc, dur, res.n, float64(res.n)/dur.Seconds(), res.pct(50), res.pct(99), res.pct(100), res.errors)
	}
}

type loadResult struct {
	n, errors int
	lat       []time.Duration // sorted
}

func (r loadResult) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := (len(r.lat)*p + 99) / 100
	return r.lat[max(i-1, 0)]
}

// load runs conc clients, each on its own keep-alive connection, sending
// requests back to back for dur.
func load(t *testing.T, url, ua string, conc int, dur time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	stop := time.Now().Add(dur)
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<16)
			errs := 0
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("User-Agent", ua)
			for time.Now().Before(stop) {
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(res.lat)
	res.n = len(res.lat)
	return res
}
