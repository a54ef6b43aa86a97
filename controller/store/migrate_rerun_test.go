package store_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// On MySQL a migration's DDL commits by itself, so a controller that dies
// between a statement and recording its version leaves the schema ahead of
// schema_migrations. The next start must record it and go on.
func TestMigrationInterruptedOnMySQL(t *testing.T) {
	db := storetest.NewMySQLDB(t)
	db.Open(t).Close()
	raw, err := sql.Open("mysql", db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Forget that the last three migrations (a table, an index, a seed
	// row's table...) were recorded, as if the process died after each.
	if _, err := raw.Exec(`DELETE FROM schema_migrations WHERE version IN (6, 8, 11)`); err != nil {
		t.Fatal(err)
	}
	s := db.Open(t)
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v < 11 {
		t.Fatalf("schema version after the re-run: %d, %v", v, err)
	}
	var n int
	if err := raw.QueryRow(`SELECT COUNT(*) FROM schema_migrations WHERE version IN (6, 8, 11)`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("re-recorded %d of 3 migrations (%v)", n, err)
	}
}
