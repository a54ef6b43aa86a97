package accounting

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestLeaderStepsDownWhenCutOff: a leader cut off from the database (its
// packets vanish, its connections stay open) must stop saying it leads
// once its lease can have run out, before another controller takes it
// over, and must not take it back when the link mends. Before, its renewal
// waited on the dead connection for as long as TCP takes to give up (about
// 15 minutes on Linux; here, until the link mended) and it went on
// leading, its accounting, hook deliveries and reconciliation included,
// beside the new leader. The soak found it by cutting the lease holder's
// link.
func TestLeaderStepsDownWhenCutOff(t *testing.T) {
	db := storetest.NewMySQLDB(t)
	l := testsupport.NewLink()
	proxy := testsupport.StartMySQLProxy(t, db.DSN, l.Hooks)
	t.Cleanup(l.Mend) // before the proxy closes: nothing stays blocked
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(dsn string) *store.Store {
		s, err := store.Open(ctx, dsn, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	const ttl = 1500 * time.Millisecond
	a := &Leader{Store: open(proxy.DSN(db.DSN)), Log: log, Holder: "a", TTL: ttl}
	b := &Leader{Store: open(db.DSN), Log: log, Holder: "b", TTL: ttl}
	var renewing sync.WaitGroup
	defer renewing.Wait()
	defer cancel()
	renewing.Go(func() { a.renew(ctx) })
	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, d)
			}
		}
	}
	waitFor("a leads", 5*time.Second, a.IsLeader)
	renewing.Go(func() { b.renew(ctx) })

	// Work a leader does under its lease, stuck on the cut connection,
	// must end when the lease is lost, not when TCP gives up.
	lctx, lcancel := a.leading(ctx)
	defer lcancel()
	stuck := make(chan error, 1)
	l.Cut()
	cutAt := time.Now()
	go func() {
		_, err := a.Store.NodeCursors(lctx)
		stuck <- err
	}()
	// b takes over once a's lease has run out; a must have stepped down
	// by then.
	waitFor("b takes the lease of a, cut off", 3*ttl, b.IsLeader)
	if tookOver := time.Since(cutAt); a.IsLeader() {
		t.Errorf("a, cut off from the database, still said it led when b took the lease %s after the cut", tookOver)
		waitFor("a, cut off, steps down", 2*ttl, func() bool { return !a.IsLeader() })
	}
	select {
	case err := <-stuck:
		if err == nil {
			t.Errorf("a query through the cut link answered")
		}
	case <-time.After(2 * ttl):
		t.Errorf("a query under a's lease, stuck on the cut link, was not abandoned within %s of the takeover", 2*ttl)
	}
	l.Mend()
	// Mended: b keeps the lease, a follows it.
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if a.IsLeader() {
			t.Fatalf("a took the lease back from b after the link mended")
		}
	}
	if !b.IsLeader() {
		t.Errorf("b lost the lease after a's link mended")
	}
}
