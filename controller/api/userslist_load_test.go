package api_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// mixedUsers inserts total users with the spread a real fleet has: most
// active, some limited, expired or suspended; a fifth unlimited; usage up
// to past the limit; expiries from two months ago to two months ahead;
// ten plans and groups; a note on every fifth. The seed is fixed, so the
// runs before and after a change see the same data.
func mixedUsers(tb testing.TB, db storetest.DB, total int) {
	tb.Helper()
	var raw *sql.DB
	var err error
	if db.Backend == "mysql" {
		raw, err = sql.Open("mysql", db.DSN)
	} else {
		raw, err = sql.Open("sqlite", "file:"+filepath.Join(db.Dir, "boxfleet.db")+"?_pragma=busy_timeout(10000)")
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().Unix()
	const cols, chunk = 19, 400
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	for start := 0; start < total; start += chunk {
		end := min(start+chunk, total)
		args := make([]any, 0, cols*(end-start))
		for u := start; u < end; u++ {
			status := store.StatusActive
			switch x := rng.IntN(100); {
			case x < 10:
				status = store.StatusLimited
			case x < 15:
				status = store.StatusExpired
			case x < 20:
				status = store.StatusDisabled
			}
			var limit, used, expire int64
			if rng.IntN(5) > 0 {
				limit = (10 + rng.Int64N(90)) << 30
				used = rng.Int64N(limit + limit/10)
			} else {
				used = rng.Int64N(200 << 30)
			}
			if rng.IntN(10) >= 3 {
				expire = now + rng.Int64N(120*86400) - 60*86400
			}
			note := ""
			if u%5 == 0 {
				note = fmt.Sprintf("customer %d via shop", u)
			}
			name := fmt.Sprintf("user%06d", u)
			args = append(args, name, fmt.Sprintf("00000000-0000-4000-8000-%012d", u), "pw"+name, "k16"+name, "k32"+name,
				"tok"+name, status, limit, used/2, used-used/2, "month", expire, 0, fmt.Sprintf("g%d", u%10),
				note, fmt.Sprintf("p%d", u%10), now-int64(total-u)*60, now, int64(rng.IntN(4)))
		}
		if _, err := tx.Exec(`INSERT INTO users (name, uuid, password, ss_key_16, ss_key_32, sub_token,
		  status, traffic_limit, used_up, used_down, reset_strategy, expire_at, period_start, groups_csv,
		  note, plan, created_at, updated_at, device_limit) VALUES `+
			strings.TrimSuffix(strings.Repeat(row+",", end-start), ","), args...); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	if db.Backend == "mysql" {
		// Fresh statistics, as a server that has run for a while has them.
		if _, err := raw.Exec(`ANALYZE TABLE users`); err != nil {
			tb.Fatal(err)
		}
	} else if _, err := raw.Exec(`ANALYZE`); err != nil {
		tb.Fatal(err)
	}
}

// usersListQueries are the list views the UI offers: a filter and a sort,
// first page of 100.
var usersListQueries = []string{
	"status=active&sort=-used",
	"status=limited&sort=expire",
	"filter=over90&sort=-used",
	"filter=expiring3d&sort=expire",
	"plan=p3&sort=name",
	"group=g4&sort=-limit",
	"search=customer%2012&sort=-created",
	"search=user0999&sort=name",
	"status=active&filter=over90&sort=expire",
	"sort=-used",
	"sort=name&offset=50000",
}

// TestUsersListLoad times GET /api/v1/users for each of usersListQueries
// on 100,000 users (BOXFLEET_LOAD_USERS) on SQLite and MySQL, one client,
// BOXFLEET_LOAD_REQUESTS (default 100) requests per query after a warm-up,
// and logs p50/p95/max (BOXFLEET_LOAD_BACKEND=sqlite or mysql runs one;
// BOXFLEET_LOAD_VIEWS adds views, BOXFLEET_LOAD_SETTLE=30s waits after the
// set-up). The target is a p95 under 50 ms. Latencies are
// logged, not asserted: the machine is shared; each page's order is
// checked, so a fast wrong answer does not pass.
//
//	BOXFLEET_LOAD=1 BOXFLEET_TEST_MYSQL_DSN=... go test ./controller/api -run TestUsersListLoad -v
func TestUsersListLoad(t *testing.T) {
	if os.Getenv("BOXFLEET_LOAD") != "1" {
		t.Skip("load test: set BOXFLEET_LOAD=1")
	}
	total, requests := 100_000, 100
	if v, err := strconv.Atoi(os.Getenv("BOXFLEET_LOAD_USERS")); err == nil && v > 0 {
		total = v
	}
	if v, err := strconv.Atoi(os.Getenv("BOXFLEET_LOAD_REQUESTS")); err == nil && v > 0 {
		requests = v
	}
	backends := []string{"sqlite", "mysql"}
	if b := os.Getenv("BOXFLEET_LOAD_BACKEND"); b != "" {
		backends = []string{b}
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			db := newDB(t, backend)
			s := db.Open(t)
			if err := s.EnsureAdminToken(t.Context(), "test", adminToken); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			mixedUsers(t, db, total)
			t.Logf("%s: %d users inserted in %s", backend, total, time.Since(start).Round(time.Millisecond))
			// The rows went in with SQL, around the store: index them for
			// the search and the group filter as the store does for the
			// users it writes (and the migrations for the users there are).
			start = time.Now()
			if err := s.RebuildUserSearch(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: search and group indexes built in %s", backend, time.Since(start).Round(time.Millisecond))
			if d, err := time.ParseDuration(os.Getenv("BOXFLEET_LOAD_SETTLE")); err == nil {
				// Let the database write out what the set-up wrote before
				// timing (MySQL flushes its pages in the background).
				time.Sleep(d)
			}
			log := logrus.New()
			log.SetOutput(io.Discard)
			srv := httptest.NewServer(api.New(api.Options{Store: s, Log: log, Registry: prometheus.NewRegistry()}))
			defer srv.Close()
			c := &http.Client{}
			queries := usersListQueries
			if extra := os.Getenv("BOXFLEET_LOAD_VIEWS"); extra != "" {
				// More views to time, separated by spaces, e.g. a search
				// too common for the trigram index: "search=shop&sort=name".
				queries = append(slices.Clone(queries), strings.Fields(extra)...)
			}
			for _, q := range queries {
				get := func() (int, []store.User) {
					req, _ := http.NewRequest("GET", srv.URL+"/api/v1/users?limit=100&"+q, nil)
					req.Header.Set("Authorization", "Bearer "+adminToken)
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					var page struct {
						Users []store.User `json:"users"`
						Total int          `json:"total"`
					}
					if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&page) != nil {
						t.Fatalf("%s: %s", q, resp.Status)
					}
					return page.Total, page.Users
				}
				n, users := get()
				checkOrder(t, q, users)
				checkSearch(t, q, total, n, users)
				for range 5 {
					get()
				}
				lat := make([]time.Duration, 0, requests)
				for range requests {
					t0 := time.Now()
					get()
					lat = append(lat, time.Since(t0))
				}
				slices.Sort(lat)
				p := func(x float64) float64 { return lat[int(x*float64(len(lat)-1))].Seconds() * 1000 }
				verdict := "ok"
				if p(.95) > 50 {
					verdict = "OVER 50 ms"
				}
				t.Logf("%-8s %-42s total %6d  p50 %6.1f ms  p95 %6.1f ms  max %6.1f ms  %s", backend, q, n, p(.5), p(.95), p(1), verdict)
			}
		})
	}
}

// checkSearch fails when a search view's total is not the number of
// mixedUsers whose name or note holds the search, or a user on its page
// does not hold it: the trigram index must change no answer.
func checkSearch(t *testing.T, q string, total, n int, users []store.User) {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil || v.Get("search") == "" {
		return
	}
	s := strings.ToLower(v.Get("search"))
	want := 0
	for u := range total {
		if strings.Contains(fmt.Sprintf("user%06d", u), s) || (u%5 == 0 && strings.Contains(fmt.Sprintf("customer %d via shop", u), s)) {
			want++
		}
	}
	if n != want {
		t.Fatalf("%s: total %d, want %d", q, n, want)
	}
	for _, u := range users {
		if !strings.Contains(strings.ToLower(u.Name), s) && !strings.Contains(strings.ToLower(u.Note), s) {
			t.Fatalf("%s: %s (note %q) does not match", q, u.Name, u.Note)
		}
	}
}

// checkOrder fails when a page is not in the order its sort asks for.
func checkOrder(t *testing.T, q string, users []store.User) {
	t.Helper()
	if len(users) == 0 {
		t.Fatalf("%s: empty page", q)
	}
	for i := 1; i < len(users); i++ {
		a, b := users[i-1], users[i]
		var ok bool
		switch {
		case strings.Contains(q, "sort=-used"):
			ok = a.Used() >= b.Used()
		case strings.Contains(q, "sort=expire"):
			ok = b.ExpireAt == nil || (a.ExpireAt != nil && !a.ExpireAt.After(*b.ExpireAt))
		case strings.Contains(q, "sort=-limit"):
			ok = a.TrafficLimit == 0 || (b.TrafficLimit != 0 && a.TrafficLimit >= b.TrafficLimit)
		case strings.Contains(q, "sort=-created"):
			ok = !a.CreatedAt.Before(b.CreatedAt)
		default:
			ok = a.Name < b.Name
		}
		if !ok {
			t.Fatalf("%s: %s before %s breaks the order", q, a.Name, b.Name)
		}
	}
}
