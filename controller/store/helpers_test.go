package store_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
)

var bg = context.Background()

// clock replaces a store's time so tests cross period boundaries and lease
// expiries without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func setClock(s *store.Store, t time.Time) *clock {
	c := &clock{t: t}
	s.Now = c.now
	return c
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func date(y int, m time.Month, d, hh, mm, ss int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
}

// dump returns every row of every table as text, rows sorted, keyed by
// table: what a thief of the database file would see, and a snapshot that
// shows whether an operation wrote anything.
func dump(t *testing.T, s *store.Store) map[string][]string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if s.Backend() == "mysql" {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	}
	var tables []string
	if err := s.DB().Select(&tables, q); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		out[table] = dumpTable(t, s, table)
	}
	return out
}

func dumpTable(t *testing.T, s *store.Store, table string) []string {
	t.Helper()
	rows, err := s.DB().Query(`SELECT * FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		cells := make([]string, len(cols))
		for i, v := range vals {
			cells[i] = cols[i] + "=" + v.String
		}
		out = append(out, strings.Join(cells, " | "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// assertNotStored fails when any secret appears anywhere in the database.
func assertNotStored(t *testing.T, s *store.Store, what string, secrets ...string) {
	t.Helper()
	for table, rows := range dump(t, s) {
		for _, row := range rows {
			for _, sec := range secrets {
				if sec != "" && strings.Contains(row, sec) {
					t.Errorf("%s %q stored in table %s: %s", what, sec, table, row)
				}
			}
		}
	}
}

func createUser(t *testing.T, s *store.Store, name string, spec store.UserSpec) *store.User {
	t.Helper()
	u, err := s.CreateUser(bg, "admin", name, "", spec)
	if err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	return u
}

func getUser(t *testing.T, s *store.Store, name string) *store.User {
	t.Helper()
	u, err := s.GetUser(bg, name)
	if err != nil {
		t.Fatalf("get user %s: %v", name, err)
	}
	return u
}

func revision(t *testing.T, s *store.Store) int64 {
	t.Helper()
	r, err := s.UsersRevision(bg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func events(t *testing.T, s *store.Store, f store.EventFilter) []*store.Event {
	t.Helper()
	ev, err := s.Events(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// use commits traffic for a user outside any lease, as if node n reported
// counters up and down.
func use(t *testing.T, s *store.Store, node, user string, up, down int64) {
	t.Helper()
	_, err := s.CommitNode(bg, "", "", node, 0, []store.Sample{
		{User: user, Direction: "upload", Value: up},
		{User: user, Direction: "download", Value: down},
	}, s.Now())
	if err != nil {
		t.Fatal(err)
	}
}

func names(us []*store.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Name
	}
	return out
}
