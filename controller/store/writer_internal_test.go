package store

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// TestSQLiteWriteWaitsBehindALongWrite: on SQLite a write that arrives
// while another write holds the lock for longer than busy_timeout (10 s;
// a fold of every user's usage at the turn of a busy minute on a slow
// disk, say) waits its turn instead of failing with "database is
// locked", which is what it did when writes were spread over the pool.
func TestSQLiteWriteWaitsBehindALongWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("holds SQLite's write lock for 10.5 s")
	}
	ctx := context.Background()
	s, err := Open(ctx, "", t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held, long := make(chan struct{}), make(chan error, 1)
	go func() {
		long <- s.tx(ctx, func(tx *sqlx.Tx) error {
			// The transaction is immediate: it holds the write lock
			// from its start.
			close(held)
			time.Sleep(10*time.Second + 500*time.Millisecond)
			return nil
		})
	}()
	<-held
	start := time.Now()
	if ok, err := s.TryLease(ctx, "accounting", "c1", time.Minute.Milliseconds()); err != nil || !ok {
		t.Fatalf("a lease taken behind a write of 10.5 s: %v %v, want it taken once the write ended", ok, err)
	}
	if waited := time.Since(start); waited < 10*time.Second {
		t.Errorf("the lease was taken after %s, while the other write held the lock for 10.5 s", waited)
	}
	if err := <-long; err != nil {
		t.Fatal(err)
	}
}
