package testsupport

import (
	"database/sql"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	_ "github.com/go-sql-driver/mysql"
)

// TestSyncBufferConcurrent: writers and a reader at once lose nothing (and,
// under -race, race on nothing).
func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Fatalf("%d bytes, want 800", len(got))
	}
}

// TestMySQLProxyShowsCommands: a query through the proxy reaches MariaDB
// and answers, and the hook saw it as a COM_QUERY beginning a command.
func TestMySQLProxyShowsCommands(t *testing.T) {
	dsn := os.Getenv("BOXFLEET_TEST_MYSQL_DSN")
	if testing.Short() || dsn == "" {
		t.Skip("needs MariaDB (BOXFLEET_TEST_MYSQL_DSN)")
	}
	var mu sync.Mutex
	var seen []string
	p := StartMySQLProxy(t, dsn, func() PacketHooks {
		return PacketHooks{FromClient: func(hdr, payload []byte) {
			if hdr[3] == 0 && len(payload) > 0 && payload[0] == 0x03 {
				mu.Lock()
				seen = append(seen, string(payload[1:]))
				mu.Unlock()
			}
		}}
	})
	db, err := sql.Open("mysql", p.DSN(dsn))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT 40 + 2").Scan(&n); err != nil || n != 42 {
		t.Fatalf("through the proxy: %d, %v", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(seen, "SELECT 40 + 2") {
		t.Fatalf("hook saw %q", seen)
	}
}
