package store_test

import (
	"context"
	"sync/atomic"
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
	st, err := store.Open(context.Background(), proxy.DSN(db.DSN), "", 0)
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

// TestTakeoverFromALeaderCutMidTransaction: every ledger commit locks the
// lease row until it ends. A leader whose link is cut while such a
// transaction is open (here: its COMMIT never arrives) leaves the
// transaction, and the lock, on the server, which keeps them until it
// notices the client is gone: wait_timeout, 8 hours by default. Until then
// no other controller can take the lease, however long it has expired. The
// soak found it by cutting the lease holder. Opened with the lease TTL as
// its idle-transaction limit, the store has the server end such a
// transaction, so that the other controller takes over about a TTL later.
func TestTakeoverFromALeaderCutMidTransaction(t *testing.T) {
	const ttl = 2 * time.Second
	db := storetest.NewMySQLDB(t)
	l := testsupport.NewLink()
	var cutAtCommit atomic.Bool
	hooks := func() testsupport.PacketHooks {
		h := l.Hooks()
		return testsupport.PacketHooks{
			FromClient: func(hdr, p []byte) {
				// COM_QUERY "COMMIT": the transaction's statements have run.
				if len(p) > 0 && p[0] == 0x03 && string(p[1:]) == "COMMIT" && cutAtCommit.CompareAndSwap(true, false) {
					l.Cut()
				}
				h.FromClient(hdr, p)
			},
			FromServer: h.FromServer,
		}
	}
	proxy := testsupport.StartMySQLProxy(t, db.DSN, hooks)
	t.Cleanup(l.Mend)
	open := func(dsn string) *store.Store {
		s, err := store.Open(context.Background(), dsn, "", ttl)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(proxy.DSN(db.DSN)), open(db.DSN)
	if ok, err := a.TryLease(context.Background(), "accounting", "a", ttl.Milliseconds()); !ok || err != nil {
		t.Fatalf("a could not take a free lease: %v, %v", ok, err)
	}

	cutAtCommit.Store(true)
	committed := make(chan error, 1)
	go func() {
		_, err := a.CommitNode(context.Background(), "accounting", "a", "n1", 1,
			[]store.Sample{{User: "ghost", Direction: "upload", Value: 5}}, time.Now())
		committed <- err
	}()
	testsupport.Until(t, "a's commit reaches its COMMIT", 10*time.Second, func() bool { return !cutAtCommit.Load() })
	cutAt := time.Now()

	// Well past the lease and the idle limit, but far below the server's
	// own defaults (50 s lock wait, 8 h wait_timeout).
	limit := 2*ttl + 4*time.Second
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok, err := b.TryLease(ctx, "accounting", "b", ttl.Milliseconds())
		cancel()
		if ok {
			t.Logf("b took the lease %s after a was cut mid-transaction (%v)", time.Since(cutAt).Round(100*time.Millisecond), err)
			break
		}
		if time.Since(cutAt) > limit {
			t.Fatalf("b could not take the lease within %s of a being cut off mid-transaction (last: %v)", limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.Mend()
	select {
	case err := <-committed:
		if err == nil {
			t.Error("a's commit, cut off and its transaction ended by the server, reported success")
		}
	case <-time.After(90 * time.Second):
		t.Error("a's commit still waits 90 s after the link mended")
	}
}
