package store_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

func TestMigrationsApplyAndAreIdempotent(t *testing.T) {
	ctx := context.Background()
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		v, err := s.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v < 1 {
			t.Fatalf("schema version %d after migrating an empty database", v)
		}
		if _, err := s.CreateUser(ctx, "admin", "alice", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		rev, _ := s.UsersRevision(ctx)
		s.Close()

		s = db.Open(t)
		again, err := s.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if again != v {
			t.Errorf("reopening moved the schema from %d to %d", v, again)
		}
		var n int
		if err := s.DB().Get(&n, `SELECT COUNT(*) FROM schema_migrations`); err != nil {
			t.Fatal(err)
		}
		if n != v {
			t.Errorf("%d migrations recorded for schema version %d: one applied twice or skipped", n, v)
		}
		// Reopening must not re-run data migrations (the revision seed).
		if got, _ := s.UsersRevision(ctx); got != rev {
			t.Errorf("users revision %d after reopen, want %d", got, rev)
		}
		if _, err := s.GetUser(ctx, "alice"); err != nil {
			t.Errorf("user lost across reopen: %v", err)
		}
	})
}

func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		v, _ := s.SchemaVersion(ctx)
		if _, err := s.DB().Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, v+1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err := store.Open(ctx, db.DSN, db.Dir, 0)
		if err == nil {
			s.Close()
			t.Fatal("a database migrated by a newer binary was opened")
		}
		if !strings.Contains(err.Error(), "newer") {
			t.Errorf("error does not say the schema is newer: %v", err)
		}
	})
}

// Several controllers starting together on one MySQL database must not
// race each other's CREATE TABLEs.
func TestConcurrentOpenMySQL(t *testing.T) {
	db := storetest.NewMySQLDB(t)
	ctx := context.Background()
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := store.Open(ctx, db.DSN, "", 0)
			errs[i] = err
			if err == nil {
				s.Close()
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("controller %d: %v", i, err)
		}
	}
	s := db.Open(t)
	var n2 int
	if err := s.DB().Get(&n2, `SELECT COUNT(*) FROM meta WHERE name = 'users_revision'`); err != nil || n2 != 1 {
		t.Errorf("users_revision seeded %d times (%v)", n2, err)
	}
}

// The data directory is the operator's: any name the file system allows
// must work, including characters that mean something in a URI.
func TestSQLiteDataDirWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data 100% ?#x")
	s, err := store.Open(bg, "", dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createUser(t, s, "alice", store.UserSpec{})
	if _, err := os.Stat(filepath.Join(dir, "boxfleet.db")); err != nil {
		t.Errorf("database not where asked: %v", err)
	}
}

// A database from before migration 61 keeps its ledger: the rows of the
// old usage_daily (keyed by user first) move to usage_days, and a user's
// history, the ledger total and the commits after it go on from them.
func TestLedgerRekeyedKeepsHistory(t *testing.T) {
	ctx := context.Background()
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		for _, q := range []string{
			`DROP TABLE usage_days`,
			`CREATE TABLE usage_daily (user_name VARCHAR(64) NOT NULL, node VARCHAR(64) NOT NULL, day INTEGER NOT NULL,
			  upload BIGINT NOT NULL DEFAULT 0, download BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (user_name, day, node))`,
			`INSERT INTO usage_daily (user_name, node, day, upload, download) VALUES
			  ('alice', 'n1', 20250601, 10, 20), ('alice', 'n2', 20250601, 1, 2), ('alice', 'n1', 20250602, 100, 200), ('bob', 'n1', 20250601, 5, 6)`,
			`DELETE FROM schema_migrations WHERE version BETWEEN 61 AND 64`,
		} {
			if _, err := s.DB().Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		s.Close()

		s = db.Open(t)
		rows, err := s.Usage(ctx, "alice", 20250601, 20250602)
		if err != nil {
			t.Fatal(err)
		}
		want := []store.UsageRow{
			{User: "alice", Node: "n1", Day: 20250601, Upload: 10, Download: 20},
			{User: "alice", Node: "n2", Day: 20250601, Upload: 1, Download: 2},
			{User: "alice", Node: "n1", Day: 20250602, Upload: 100, Download: 200},
		}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("alice's ledger after the migration:\n got %+v\nwant %+v", rows, want)
		}
		var old int
		if err := s.DB().Get(&old, `SELECT COUNT(*) FROM schema_migrations WHERE version = 64`); err != nil || old != 1 {
			t.Errorf("migration 64 recorded %d times (%v)", old, err)
		}
		// A commit of the same day adds to the moved row.
		if _, err := s.CreateUser(ctx, "admin", "bob", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		for _, v := range []int64{1000, 1500} {
			if _, err := s.CommitNode(ctx, "", "", "n1", 1, []store.Sample{{User: "bob", Direction: "upload", Value: v}}, at); err != nil {
				t.Fatal(err)
			}
		}
		up, down, err := s.LedgerTotal(ctx, "bob")
		if err != nil || up != 5+1500 || down != 6 {
			t.Errorf("bob's ledger total %d/%d (%v), want %d/6", up, down, err, 5+1500)
		}
	})
}

// A database from before migration 65 keeps its checkpoints: the rows of
// the counters table become each node's blob, so the next commit bills
// only what came after them, and a direction never seen stays unseen.
func TestCheckpointsPackedKeepTheirValues(t *testing.T) {
	ctx := context.Background()
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		for _, name := range []string{"alice", "bob"} {
			if _, err := s.CreateUser(ctx, "admin", name, "", store.UserSpec{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []string{
			`DROP TABLE node_checkpoints`,
			`CREATE TABLE counters (node VARCHAR(64) NOT NULL, user_name VARCHAR(64) NOT NULL, up BIGINT NOT NULL, down BIGINT NOT NULL,
			  PRIMARY KEY (node, user_name))`,
			`INSERT INTO counters (node, user_name, up, down) VALUES ('n1', 'alice', 1000, 2000), ('n1', 'bob', 50, -1), ('n2', 'alice', 7, 8)`,
			`INSERT INTO node_epochs (node, since, scraped_ms) VALUES ('n1', 1, 0), ('n2', 1, 0)`,
			`DELETE FROM schema_migrations WHERE version >= 65 AND version <= 68`,
		} {
			if _, err := s.DB().Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		s.Close()

		s = db.Open(t)
		at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		commit := func(node string, samples ...store.Sample) store.CommitResult {
			t.Helper()
			res, err := s.CommitNode(ctx, "", "", node, 1, samples, at)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		// n1: alice +500 up, +0 down; bob +25 up and his first download
		// value (never seen: all of it is new).
		res := commit("n1", store.Sample{User: "alice", Direction: "upload", Value: 1500}, store.Sample{User: "alice", Direction: "download", Value: 2000},
			store.Sample{User: "bob", Direction: "upload", Value: 75}, store.Sample{User: "bob", Direction: "download", Value: 30})
		if res.Bytes != 500+25+30 || res.Resets != 0 || res.Older != 0 {
			t.Errorf("first commit after the migration: %+v, want %d bytes", res, 500+25+30)
		}
		// n2 was packed on its own: alice's values there are hers there.
		if res := commit("n2", store.Sample{User: "alice", Direction: "upload", Value: 9}); res.Bytes != 2 {
			t.Errorf("n2 commit added %d bytes, want 2", res.Bytes)
		}
		var n int
		if err := s.DB().Get(&n, `SELECT COUNT(*) FROM node_checkpoints`); err != nil || n != 2 {
			t.Errorf("%d nodes' checkpoints (%v), want 2", n, err)
		}
	})
}

// A database from before migration 69 keeps the period usage its commits
// left pending, one row per user and commit: they are packed into one row
// per commit time and fold as they would have, the on-hold clock starting
// at the earliest commit.
func TestPendingPackedKeepsUsage(t *testing.T) {
	ctx := context.Background()
	storetest.EachDB(t, func(t *testing.T, db storetest.DB) {
		s := db.Open(t)
		if _, err := s.CreateUser(ctx, "admin", "alice", "", store.UserSpec{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateUser(ctx, "admin", "hold", "", store.UserSpec{OnHoldSeconds: new(int64(3600))}); err != nil {
			t.Fatal(err)
		}
		id := "INTEGER PRIMARY KEY AUTOINCREMENT"
		if db.Backend == "mysql" {
			id = "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
		}
		for _, q := range []string{
			`DROP TABLE usage_pending_nodes`,
			`CREATE TABLE usage_pending (id ` + id + `, user_name VARCHAR(64) NOT NULL, up BIGINT NOT NULL, down BIGINT NOT NULL, at BIGINT NOT NULL)`,
			`INSERT INTO usage_pending (user_name, up, down, at) VALUES ('alice', 10, 20, 1700000000), ('alice', 5, 0, 1700000000),
			  ('hold', 1, 0, 1700000500), ('alice', 1, 1, 1700000500), ('hold', 2, 3, 1700000900)`,
			`DELETE FROM schema_migrations WHERE version BETWEEN 69 AND 72`,
		} {
			if _, err := s.DB().Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		s.Close()

		s = db.Open(t)
		// 1700000000: alice (two rows added up); 1700000500: hold, alice;
		// 1700000900: hold.
		if n, err := s.FoldUsage(ctx); err != nil || n != 4 {
			t.Errorf("folded %d entries (%v), want 4", n, err)
		}
		for _, want := range []struct {
			name     string
			up, down int64
		}{{"alice", 16, 21}, {"hold", 3, 3}} {
			u, err := s.GetUser(ctx, want.name)
			if err != nil {
				t.Fatal(err)
			}
			if u.UsedUp != want.up || u.UsedDown != want.down {
				t.Errorf("%s used %d/%d, want %d/%d", want.name, u.UsedUp, u.UsedDown, want.up, want.down)
			}
		}
		h, err := s.GetUser(ctx, "hold")
		if err != nil {
			t.Fatal(err)
		}
		if first := time.Unix(1700000500, 0); h.FirstUsedAt == nil || !h.FirstUsedAt.Equal(first) || h.ExpireAt == nil || !h.ExpireAt.Equal(first.Add(time.Hour)) {
			t.Errorf("on-hold user: first used %v, expires %v; want %v and an hour later", h.FirstUsedAt, h.ExpireAt, first)
		}
		var n int
		if err := s.DB().Get(&n, `SELECT COUNT(*) FROM usage_pending_nodes`); err != nil || n != 0 {
			t.Errorf("%d pending rows after the fold (%v)", n, err)
		}
	})
}
