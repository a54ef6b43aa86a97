package hooks_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/hooks"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

var bg = context.Background()

const secret = "shared-secret-0123456789"

// clock is the store's clock, which the deliverer also signs with.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// receiver checks every request the way the package documentation tells
// operators to, with its own copy of the secret, and answers with what
// reply says for the n-th request (from 1).
type receiver struct {
	t      *testing.T
	secret string
	clock  *clock
	reply  func(n int) int
	srv    *httptest.Server

	mu       sync.Mutex
	got      []delivered
	rejected int
}

type delivered struct {
	id     string
	action string
	event  store.Event
}

func newReceiver(t *testing.T, secret string, clk *clock, reply func(n int) int) *receiver {
	r := &receiver{t: t, secret: secret, clock: clk, reply: reply}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Error(err)
		return
	}
	h := req.Header
	if req.Method != http.MethodPost || h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "boxfleet" {
		r.t.Errorf("request %s %s %q %q", req.Method, req.URL, h.Get("Content-Type"), h.Get("User-Agent"))
	}
	ts, err := strconv.ParseInt(h.Get("X-Boxfleet-Timestamp"), 10, 64)
	if err != nil || r.clock.now().Sub(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		r.t.Errorf("timestamp %q outside the replay window", h.Get("X-Boxfleet-Timestamp"))
	}
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write([]byte(h.Get("X-Boxfleet-Timestamp") + "."))
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !hmac.Equal([]byte(want), []byte(h.Get("X-Boxfleet-Signature"))) {
		r.rejected++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev store.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		r.t.Errorf("body %s: %v", body, err)
	}
	if ev.Action != h.Get("X-Boxfleet-Event") {
		r.t.Errorf("X-Boxfleet-Event %q for a %s event", h.Get("X-Boxfleet-Event"), ev.Action)
	}
	r.got = append(r.got, delivered{id: h.Get("X-Boxfleet-Delivery"), action: ev.Action, event: ev})
	w.WriteHeader(r.reply(len(r.got)))
}

func (r *receiver) requests() []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivered(nil), r.got...)
}

func always(code int) func(int) int { return func(int) int { return code } }

type env struct {
	t      *testing.T
	store  *store.Store
	clock  *clock
	d      *hooks.Deliverer
	reg    *prometheus.Registry
	logs   *bytes.Buffer
	leader atomic.Bool
}

func newEnv(t *testing.T, s *store.Store) *env {
	e := &env{t: t, store: s, clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	s.Now = e.clock.now
	log := logrus.New()
	log.SetOutput(e.logs)
	log.SetLevel(logrus.DebugLevel)
	e.leader.Store(true)
	e.d = hooks.New(s, e.leader.Load, log, e.reg)
	e.d.Jitter = func(time.Duration) time.Duration { return 0 }
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the hook secret is in the log:\n%s", e.logs)
		}
	})
	return e
}

func eachEnv(t *testing.T, fn func(t *testing.T, e *env)) {
	storetest.Each(t, func(t *testing.T, s *store.Store) { fn(t, newEnv(t, s)) })
}

func (e *env) hook(name, url string, events ...string) {
	e.t.Helper()
	if _, err := e.store.PutHook(bg, "admin", name, store.HookSpec{URL: url, Secret: secret, Events: events}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) user(name string) {
	e.t.Helper()
	if _, err := e.store.CreateUser(bg, "admin", name, "", store.UserSpec{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) suspend(name string) {
	e.t.Helper()
	if _, err := e.store.SuspendUser(bg, "admin", name, "test"); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) cycle() {
	e.t.Helper()
	if err := e.d.Cycle(bg); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deliveries(hook string) []*store.Delivery {
	e.t.Helper()
	ds, err := e.store.HookDeliveries(bg, hook, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

func (e *env) only(hook string) *store.Delivery {
	e.t.Helper()
	ds := e.deliveries(hook)
	if len(ds) != 1 {
		e.t.Fatalf("%s has %d deliveries, want 1", hook, len(ds))
	}
	return ds[0]
}

func (e *env) counter(result string) float64 {
	e.t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "boxfleet_hook_deliveries_total" {
			continue
		}
		for _, m := range f.Metric {
			if m.Label[0].GetValue() == result {
				return m.Counter.GetValue()
			}
		}
	}
	e.t.Fatalf("no boxfleet_hook_deliveries_total{result=%q}", result)
	return 0
}

func TestSignedDelivery(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		good := newReceiver(t, secret, e.clock, always(http.StatusOK))
		// This receiver was given another secret: it must refuse.
		other := newReceiver(t, "not-the-shared-secret-000", e.clock, always(http.StatusOK))
		e.hook("good", good.srv.URL+"/in", "user.suspend")
		e.hook("other", other.srv.URL+"/in", "user.suspend")
		e.user("alice")
		e.suspend("alice")
		e.cycle()

		got := good.requests()
		if len(got) != 1 {
			t.Fatalf("receiver got %d requests, want 1", len(got))
		}
		ev := got[0].event
		events, _ := e.store.Events(bg, store.EventFilter{Action: "user.suspend"})
		if ev.ID != events[0].ID || ev.ObjectName != "alice" || ev.ObjectType != "user" || ev.Detail != "test" {
			t.Errorf("delivered event %+v, logged %+v", ev, events[0])
		}
		d := e.only("good")
		if got[0].id != strconv.FormatInt(d.ID, 10) || d.Status != store.DeliveryDelivered || d.Attempts != 1 || d.LastStatus != 200 {
			t.Errorf("delivery %+v (header id %s)", d, got[0].id)
		}
		if other.rejected != 1 || len(other.requests()) != 0 {
			t.Errorf("a receiver with another secret accepted the signature (rejected %d)", other.rejected)
		}
		if o := e.only("other"); o.Status != store.DeliveryPending || o.Attempts != 1 || o.LastStatus != 401 {
			t.Errorf("refused delivery %+v", o)
		}
		if e.counter("delivered") != 1 || e.counter("retry") != 1 || e.counter("failed") != 0 {
			t.Errorf("counters delivered %v retry %v failed %v", e.counter("delivered"), e.counter("retry"), e.counter("failed"))
		}
		e.cycle()
		if n := len(good.requests()); n != 1 {
			t.Errorf("a delivered event went out again: %d requests", n)
		}
	})
}

func TestRetryAfterBackoff(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		r := newReceiver(t, secret, e.clock, func(n int) int {
			if n < 3 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		e.d.Jitter = func(d time.Duration) time.Duration { return d / 5 } // the most it adds
		e.hook("h", r.srv.URL, "user.suspend")
		e.user("alice")
		e.suspend("alice")

		for _, step := range []struct {
			wait     time.Duration
			requests int
		}{
			{0, 1},                // first attempt at once: 503
			{11 * time.Second, 1}, // backoff 10 s + 2 s jitter not over
			{time.Second, 2},      // second attempt: 503
			{23 * time.Second, 2}, // 20 s + 4 s not over
			{time.Second, 3},      // third attempt: accepted
			{time.Hour, 3},        // and never again
		} {
			e.clock.add(step.wait)
			e.cycle()
			if n := len(r.requests()); n != step.requests {
				t.Fatalf("after waiting %v: %d requests, want %d", step.wait, n, step.requests)
			}
		}
		got := r.requests()
		if got[0].id != got[2].id {
			t.Errorf("retries carry another delivery id: %s, %s", got[0].id, got[2].id)
		}
		if d := e.only("h"); d.Status != store.DeliveryDelivered || d.Attempts != 3 || d.LastStatus != 204 || d.LastError != "" {
			t.Errorf("delivery %+v", d)
		}
		if e.counter("retry") != 2 || e.counter("delivered") != 1 {
			t.Errorf("counters retry %v delivered %v", e.counter("retry"), e.counter("delivered"))
		}
	})
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		r := newReceiver(t, secret, e.clock, always(http.StatusInternalServerError))
		e.hook("h", r.srv.URL, "user.suspend")
		e.user("alice")
		e.suspend("alice")
		for range 15 {
			e.cycle()
			e.clock.add(2 * time.Hour)
		}
		if n := len(r.requests()); n != hooks.DefaultMaxAttempts {
			t.Errorf("%d attempts, want %d", n, hooks.DefaultMaxAttempts)
		}
		d := e.only("h")
		if d.Status != store.DeliveryFailed || d.Attempts != hooks.DefaultMaxAttempts || d.LastStatus != 500 ||
			d.LastError != "receiver answered 500 Internal Server Error" || d.NextAttemptAt != nil {
			t.Errorf("delivery %+v", d)
		}
		if e.counter("failed") != 1 || e.counter("retry") != hooks.DefaultMaxAttempts-1 {
			t.Errorf("counters failed %v retry %v", e.counter("failed"), e.counter("retry"))
		}
	})
}

func TestOnlyTheLeaderDelivers(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		r := newReceiver(t, secret, e.clock, always(http.StatusOK))
		e.hook("h", r.srv.URL, "user.suspend")
		e.user("alice")
		e.suspend("alice")
		e.leader.Store(false)
		e.cycle()
		if n := len(r.requests()); n != 0 {
			t.Fatalf("a controller without the lease sent %d requests", n)
		}
		if d := e.only("h"); d.Status != store.DeliveryPending || !d.NextAttemptAt.Equal(e.clock.now()) {
			t.Fatalf("a controller without the lease touched the delivery: %+v", d)
		}
		e.leader.Store(true)
		e.cycle()
		if n := len(r.requests()); n != 1 {
			t.Fatalf("the new leader sent %d requests, want 1", n)
		}
	})
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		target := newReceiver(t, secret, e.clock, always(http.StatusOK))
		redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect))
		t.Cleanup(redirect.Close)
		e.hook("h", redirect.URL, "user.suspend")
		e.user("alice")
		e.suspend("alice")
		e.cycle()
		if n := len(target.requests()); n != 0 {
			t.Fatalf("the redirect was followed")
		}
		if d := e.only("h"); d.Status != store.DeliveryPending || d.LastStatus != 307 || !strings.Contains(d.LastError, "redirect") {
			t.Errorf("delivery %+v", d)
		}
	})
}

// A receiver that is down costs one attempt per cycle, and the other
// hooks' deliveries go out regardless.
func TestDeadReceiverHoldsUpOnlyItsHook(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		live := newReceiver(t, secret, e.clock, always(http.StatusOK))
		gone := httptest.NewServer(http.NotFoundHandler())
		deadURL := gone.URL + "/in?token=querytoken"
		gone.Close()
		e.hook("live", live.srv.URL, "user.suspend")
		e.hook("dead", deadURL, "user.suspend")
		for _, u := range []string{"a", "b", "c"} {
			e.user(u)
			e.suspend(u)
		}
		e.cycle()
		got := live.requests()
		if len(got) != 3 || got[0].event.ObjectName != "a" || got[2].event.ObjectName != "c" {
			t.Fatalf("live receiver got %v, want a, b, c in order", got)
		}
		ds := e.deliveries("dead") // newest first
		if ds[2].Attempts != 1 || ds[2].LastError == "" || ds[1].Attempts != 0 || ds[0].Attempts != 0 {
			t.Errorf("dead hook: attempts %d %d %d, want 1 then none", ds[2].Attempts, ds[1].Attempts, ds[0].Attempts)
		}
		if strings.Contains(ds[2].LastError, "querytoken") {
			t.Errorf("the reason keeps the URL's query: %q", ds[2].LastError)
		}
		// The two not attempted were released, not left claimed.
		for _, d := range ds[:2] {
			if !d.NextAttemptAt.Equal(e.clock.now()) {
				t.Errorf("unattempted delivery %d due %v, want now", d.ID, d.NextAttemptAt)
			}
		}
	})
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600}
	for i, w := range want {
		if got := hooks.Backoff(i + 1); got != w*time.Second {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := hooks.Backoff(1000); got != time.Hour {
		t.Errorf("Backoff(1000) = %v", got)
	}
}

// A fixed vector, computed with
// printf '%s' '1767225600.{"action":"user.suspend"}' | openssl dgst -sha256 -hmac "It's a Secret to Everybody"
// so that the format cannot drift along with the code.
func TestSign(t *testing.T) {
	got := hooks.Sign("It's a Secret to Everybody", 1767225600, []byte(`{"action":"user.suspend"}`))
	if want := "sha256=5ba21ea1cdfccd9b71c2c055c8e8f739eed62ded254cb11e6de149d4d53583f7"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}
