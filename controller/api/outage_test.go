package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// eachOutage runs fn on a store whose database can be taken away: an
// SQLite store that is closed, and a MariaDB store behind a link that is
// cut (its packets held, its connections left open).
func eachOutage(t *testing.T, fn func(t *testing.T, s *store.Store, cut func())) {
	t.Run("sqlite", func(t *testing.T) {
		s := storetest.SQLite(t)
		fn(t, s, func() { s.Close() })
	})
	t.Run("mysql", func(t *testing.T) {
		db := storetest.NewMySQLDB(t)
		l := testsupport.NewLink()
		proxy := testsupport.StartMySQLProxy(t, db.DSN, func() testsupport.PacketHooks {
			return l.Hooks()
		})
		s, err := store.Open(context.Background(), proxy.DSN(db.DSN), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		t.Cleanup(l.Mend) // first: nothing stays blocked on the link
		fn(t, s, l.Cut)
	})
}

// TestTokensOutliveADatabaseOutage: while the database does not answer,
// a token it vouched for before keeps its access (Prometheus goes on
// scraping /metrics, whose boxfleet_store_up says what is wrong), within
// a few seconds even when the link is cut; every other token is refused
// with 503, never let in: one nobody issued, one deleted through this API
// before the outage, one a reseller account's change took away, and one
// deleted through another replica and looked up here since. A token the
// database vouched for is honoured from memory for at most the TTL.
//
// Before, every bearer token was looked up in the database on every
// request: the scrape failed with a 500 (SQLite) or hung with the link
// (MariaDB), and Prometheus saw the controller down.
func TestTokensOutliveADatabaseOutage(t *testing.T) {
	eachOutage(t, func(t *testing.T, s *store.Store, cut func()) {
		ctx := context.Background()
		var skew atomic.Int64
		clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		e := newEnvWith(t, s, func(o *api.Options) {
			// The registry without the store's collector: this test is
			// about who may scrape, the server's own test about what the
			// scrape holds.
			o.Registry = prometheus.NewRegistry()
			o.Registry.MustRegister(collectors.NewGoCollector())
			o.Now = clock
		})
		token := func(name, role, admin string) string {
			_, secret, err := s.CreateAPIToken(ctx, "test", name, store.APITokenSpec{Role: role, Admin: admin})
			if err != nil {
				t.Fatal(err)
			}
			return secret
		}
		reseller := store.RoleReseller
		if _, err := s.CreateAdmin(ctx, "test", "shop", "a long enough password 1", store.AdminSpec{Role: &reseller}); err != nil {
			t.Fatal(err)
		}
		prom := token("prom", store.RoleViewer, "")
		gone := token("gone", store.RoleViewer, "")
		elsewhere := token("elsewhere", store.RoleViewer, "")
		shop := token("shop", store.RoleReseller, "shop")

		// Each is verified while the database answers, so each is in the
		// memory before it is revoked.
		for _, tok := range []string{adminToken, prom, gone, elsewhere} {
			if r := e.call(http.MethodGet, "/metrics", tok, nil); r.code != http.StatusOK {
				t.Fatalf("/metrics before the outage: %d %s", r.code, r.body)
			}
		}
		if r := e.call(http.MethodGet, "/api/v1/openapi.json", shop, nil); r.code != http.StatusOK {
			t.Fatalf("the reseller's token before the outage: %d", r.code)
		}
		e.admin(http.MethodDelete, "/api/v1/tokens/gone", nil, http.StatusNoContent, nil)
		e.admin(http.MethodPatch, "/api/v1/admins/shop", map[string]any{"disabled": true}, http.StatusOK, nil)
		// Another replica deletes a token; this one hears of it at the
		// token's next lookup.
		if err := s.DeleteAPIToken(ctx, "replica-2", "elsewhere"); err != nil {
			t.Fatal(err)
		}
		wantError(t, "the token deleted elsewhere, looked up here", e.call(http.MethodGet, "/metrics", elsewhere, nil),
			http.StatusUnauthorized, "unauthorized")

		cut()
		timed := func(what, path, tok string, want int) response {
			t.Helper()
			start := time.Now()
			r, err := callWithin(e.url+path, tok, 10*time.Second)
			took := time.Since(start)
			if err != nil {
				t.Errorf("%s during the outage: %v after %s", what, err, took)
				return r
			}
			if r.code != want {
				t.Errorf("%s during the outage: %d, want %d: %.200s", what, r.code, want, r.body)
			}
			// The lookup's deadline is 2 s; Prometheus's scrape timeout
			// is 10 s by default.
			if took > 4*time.Second {
				t.Errorf("%s during the outage took %s, want under 4s", what, took)
			}
			t.Logf("%s during the outage: %d in %s", what, r.code, took.Round(time.Millisecond))
			return r
		}
		r := timed("the scrape with a token verified before", "/metrics", prom, http.StatusOK)
		if !strings.Contains(string(r.body), "go_goroutines") {
			t.Errorf("the scrape during the outage has no Go metrics:\n%.500s", r.body)
		}
		timed("the scrape with the token file's admin token", "/metrics", adminToken, http.StatusOK)
		for _, c := range []struct{ what, path, tok string }{
			{"a token nobody issued", "/metrics", "no-such-token-0123456789abcdef"},
			{"a token deleted through this API before the outage", "/metrics", gone},
			{"a token deleted through another replica and looked up here since", "/metrics", elsewhere},
			{"the token of a reseller account disabled through this API", "/api/v1/openapi.json", shop},
		} {
			r := timed(c.what, c.path, c.tok, http.StatusServiceUnavailable)
			if !strings.Contains(string(r.body), `"unavailable"`) {
				t.Errorf("%s during the outage: %.200s, want the error unavailable", c.what, r.body)
			}
		}

		// The memory is bounded in time: past the TTL, even the scraper's
		// token is refused until the database answers again.
		skew.Store(int64(6 * time.Minute))
		timed("the scrape past the memory's TTL", "/metrics", prom, http.StatusServiceUnavailable)
		if strings.Contains(e.logs.String(), prom) || strings.Contains(e.logs.String(), adminToken) {
			t.Errorf("a token is in the log")
		}
	})
}

// callWithin is a GET that gives up after d, as Prometheus gives up a
// scrape: a request stuck on the cut link must fail the test, not hang it.
func callWithin(url, tok string, d time.Duration) (response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: d}).Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: body}, err
}

// TestTokenMemoryEndsWithTheDatabasesWord: the memory is a fallback, not a
// cache: with the database answering, a token it no longer knows is
// refused at once (401), even one answered from memory during an outage.
func TestTokenMemoryEndsWithTheDatabasesWord(t *testing.T) {
	l := testsupport.NewLink()
	db := storetest.NewMySQLDB(t)
	proxy := testsupport.StartMySQLProxy(t, db.DSN, func() testsupport.PacketHooks {
		return l.Hooks()
	})
	s, err := store.Open(context.Background(), proxy.DSN(db.DSN), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(l.Mend)
	e := newEnvWith(t, s, func(o *api.Options) { o.Registry = prometheus.NewRegistry() })
	_, tok, err := s.CreateAPIToken(context.Background(), "test", "prom", store.APITokenSpec{Role: store.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.call(http.MethodGet, "/metrics", tok, nil); r.code != http.StatusOK {
		t.Fatalf("before the outage: %d", r.code)
	}
	l.Cut()
	if r, err := callWithin(e.url+"/metrics", tok, 10*time.Second); err != nil || r.code != http.StatusOK {
		t.Fatalf("during the outage: %d %v", r.code, err)
	}
	l.Mend()
	// Deleted through a second controller on the same database.
	other, err := store.Open(context.Background(), db.DSN, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.DeleteAPIToken(context.Background(), "replica-2", "prom"); err != nil {
		t.Fatal(err)
	}
	wantError(t, "a deleted token, the database answering", e.call(http.MethodGet, "/metrics", tok, nil), http.StatusUnauthorized, "unauthorized")
	l.Cut()
	r, err := callWithin(e.url+"/metrics", tok, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, "a deleted token, looked up since, in a second outage", r, http.StatusServiceUnavailable, "unavailable")
}
