package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// A MariaDB cut off by its link answers nothing and resets nothing: a
// statement called without a deadline of its own (as the hook deliveries,
// the reconcile loop and the sweeps call them) must still fail after the
// store's I/O timeout instead of waiting for TCP to give up, and the store
// must serve again once the link mends.
func TestStatementsEndOnACutLink(t *testing.T) {
	db := storetest.NewMySQLDB(t)
	old := store.SetMySQLIOTimeout(2 * time.Second)
	t.Cleanup(func() { store.SetMySQLIOTimeout(old) })
	l := testsupport.NewLink()
	proxy := testsupport.StartMySQLProxy(t, db.DSN, l.Hooks)
	st, err := store.Open(context.Background(), proxy.DSN(db.DSN), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t.Cleanup(l.Mend) // first: nothing stays blocked on the link
	if _, err := st.ListNodes(context.Background()); err != nil {
		t.Fatal(err)
	}

	l.Cut()
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		_, err := st.ListNodes(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a statement over a cut link succeeded")
		}
		t.Logf("over the cut link: %v after %s", err, time.Since(began).Round(100*time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("a statement over a cut link still waits after 20 s: no I/O timeout")
	}

	l.Mend()
	testsupport.Until(t, "the store serves again", 30*time.Second, func() bool {
		_, err := st.ListNodes(context.Background())
		return err == nil
	})
}
