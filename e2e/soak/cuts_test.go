package soak

import (
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/boxfleet/boxfleet/controller/accounting"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// lockAll takes the locks of several targets, always in the order given
// (callers name them in one order: controller:c1, controller:c2, mariadb),
// and returns what releases them.
func (in *injector) lockAll(targets ...string) func() {
	for _, k := range targets {
		in.locks[k].Lock()
	}
	return func() {
		for _, k := range targets {
			in.locks[k].Unlock()
		}
	}
}

// worst raises *w to d under the injector's lock.
func (in *injector) worst(w *time.Duration, d time.Duration) {
	in.mu.Lock()
	*w = max(*w, d)
	in.mu.Unlock()
}

// timedGet fetches url from the host with the admin token, saying how
// long the answer took.
func (f *fleet) timedGet(url string, timeout time.Duration) (code int, body string, took time.Duration, err error) {
	c := http.Client{Timeout: timeout}
	began := time.Now()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", 0, err
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", time.Since(began), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(began), err
}

// metricValue is the value of an unlabelled series in an exposition.
func metricValue(body, name string) (float64, bool) {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// holder is the controller holding an unexpired lease now ("" when none
// does or the database cannot say), as the soak reads it over MariaDB's
// socket.
func (f *fleet) holder() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h, exp, err := f.store.LeaseHolder(ctx, accounting.LeaseName)
	if err != nil || exp <= time.Now().UnixMilli() {
		return ""
	}
	return h
}

// cutMariaDB takes MariaDB off the network while it runs: every query of
// both controllers hangs on a connection whose packets vanish. Meanwhile
// each controller must go on answering, within its own timeouts, what
// needs no database: healthy, not ready, and /metrics to the scraper's
// token (remembered from before the cut) with boxfleet_store_up 0.
// When the link heals each must serve again by itself. The kills of
// MariaDB and of the controllers wait for the cut.
func (in *injector) cutMariaDB(ft fault) {
	t := in.t
	defer in.lockAll("controller:c1", "controller:c2", "mariadb")()
	db := in.f.svcs["mariadb"]
	db.ns.cut(t, true)
	began := time.Now()
	time.Sleep(min(4*time.Second, ft.Hold/2)) // queries in flight now hang
	var wg sync.WaitGroup
	for _, id := range []string{"c1", "c2"} {
		c := in.f.svcs["controller:"+id]
		for _, probe := range []struct {
			path, want string
			code       int
			timeout    time.Duration
			worst      *time.Duration
		}{
			{"/-/healthy", "Healthy", 200, 5 * time.Second, &in.dbAnswer},
			{"/-/ready", "database unreachable", 503, 5 * time.Second, &in.dbAnswer},
			// Within the shipped 10 s scrape timeout.
			{"/metrics", "\nboxfleet_store_up 0\n", 200, 10 * time.Second, &in.dbMetrics},
		} {
			wg.Go(func() {
				code, body, took, err := in.f.timedGet(c.url+probe.path, probe.timeout)
				switch {
				case err != nil:
					t.Errorf("%s, its database cut off, did not answer %s within %s: %v", id, probe.path, probe.timeout, err)
				case code != probe.code || !strings.Contains(body, probe.want):
					t.Errorf("%s, its database cut off, answered %s with %d, want %d %q", id, probe.path, code, probe.code, probe.want)
				default:
					in.worst(probe.worst, took)
				}
			})
		}
	}
	wg.Wait()
	time.Sleep(ft.Hold - time.Since(began))
	db.ns.cut(t, false)
	healed := time.Now()
	db.waitReady(60 * time.Second)
	for _, id := range []string{"c1", "c2"} {
		in.f.svcs["controller:"+id].waitReady(90 * time.Second)
	}
	in.worst(&in.dbRecover, time.Since(healed))
	t.Logf("cut mariadb: controllers answered within %s while it was cut (/metrics within %s), ready %s after the link healed",
		in.dbAnswer.Round(100*time.Millisecond), in.dbMetrics.Round(100*time.Millisecond), time.Since(healed).Round(100*time.Millisecond))
	in.count("cut mariadb")
}

// cutLeader takes the lease holder off the network while it runs, for
// several leases: the other controller must take the lease, and the cut
// one, which can reach neither the database nor anyone else, must stop
// acting as leader once its lease has run out (it says so in its log; its
// /metrics cannot be read without the database). When the link heals it
// must rejoin: ready again, and both controllers' boxfleet_leader agree
// with the lease. Everything else that stops a controller or MariaDB
// waits for it.
func (in *injector) cutLeader(ft fault) {
	t := in.t
	defer in.lockAll("controller:c1", "controller:c2", "mariadb")()
	var x string
	testsupport.Until(t, "a controller holds the lease", 60*time.Second, func() bool { x = in.f.holder(); return x != "" })
	y := map[string]string{"c1": "c2", "c2": "c1"}[x]
	cx := in.f.svcs["controller:"+x]
	logFrom := fileSize(cx.proc.Log)
	cx.ns.cut(t, true)
	began := time.Now()
	tookOver := time.Duration(-1)
	for time.Since(began) < ft.Hold {
		if tookOver < 0 && in.f.holder() == y {
			tookOver = time.Since(began)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Read before the link heals: a renewal that hung on the cut would
	// finish then and say so.
	stepped, ok := steppedDown(cx.proc.Log, logFrom)
	cx.ns.cut(t, false)
	if tookOver < 0 {
		t.Errorf("cut controller: %s was cut off for %s, five leases, and %s never took the lease", x, ft.Hold, y)
	} else {
		in.worst(&in.takeover, tookOver)
	}
	// The log's time is whole seconds, cut down: a step-down logged in a
	// later second than the takeover surely came after it.
	switch took := began.Add(tookOver); {
	case !ok:
		t.Errorf("cut controller: %s, cut off for %s past a 3 s lease that %s took, never logged that it stopped leading", x, ft.Hold, y)
	case tookOver >= 0 && stepped.After(took):
		t.Errorf("cut controller: %s, cut off, stopped leading at %s, after %s took the lease at %s", x,
			stepped.Format(time.TimeOnly), y, took.Format("15:04:05.0"))
	}
	cx.waitReady(90 * time.Second)
	healed := time.Now()
	testsupport.Until(t, x+" rejoined after its cut (both controllers' boxfleet_leader agree with the lease)", 60*time.Second, func() bool {
		h := in.f.holder()
		if h == "" {
			return false
		}
		for _, id := range []string{"c1", "c2"} {
			_, body, _, err := in.f.timedGet(in.f.svcs["controller:"+id].url+"/metrics", 12*time.Second)
			v, ok := metricValue(body, "boxfleet_leader")
			if err != nil || !ok || (v == 1) != (h == id) {
				return false
			}
		}
		return true
	})
	t.Logf("cut controller: %s cut for %s at %s; it stopped leading at %s; %s took the lease after %s; rejoined %s after it was ready again",
		x, ft.Hold, began.Format("15:04:05.0"), stepped.Format(time.TimeOnly), y, tookOver.Round(100*time.Millisecond),
		time.Since(healed).Round(100*time.Millisecond))
	in.count("cut controller")
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// steppedDown finds when a controller's log, from offset on, first says
// it no longer holds the lease (logfmt, as the soak runs it; its time is
// in whole seconds).
func steppedDown(path string, offset int64) (time.Time, bool) {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return time.Time{}, false
	}
	for line := range strings.SplitSeq(string(b[offset:]), "\n") {
		if !strings.Contains(line, "lease changed hands") || !strings.Contains(line, "leader=false") {
			continue
		}
		_, rest, _ := strings.Cut(line, `time="`)
		stamp, _, _ := strings.Cut(rest, `"`)
		at, err := time.Parse(time.RFC3339, stamp)
		return at, err == nil
	}
	return time.Time{}, false
}
