package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
		s, err := store.Open(ctx, db.DSN, db.Dir)
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
			s, err := store.Open(ctx, db.DSN, "")
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
	s, err := store.Open(bg, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createUser(t, s, "alice", store.UserSpec{})
	if _, err := os.Stat(filepath.Join(dir, "boxfleet.db")); err != nil {
		t.Errorf("database not where asked: %v", err)
	}
}
